//! Chunking: documents cut into passages of at most `max_tokens`, on paragraph and
//! sentence boundaries, with `overlap_tokens` of trailing context carried into the
//! next passage of the same section.
//!
//! Markdown: headings start a new section and are kept at the top of each of its
//! passages (so "Opening hours" stays attached to what it heads); fenced code blocks
//! are never cut into sentences. Token counts come from the caller (the embedder's
//! own tokenizer), so "size in tokens" means what the model sees.

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkConfig {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        // The model reads 256 tokens; leave room for the heading.
        Self {
            max_tokens: 200,
            overlap_tokens: 40,
        }
    }
}

/// A passage of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position in the document (0-based).
    pub index: usize,
    /// The section heading it belongs to (Markdown), if any.
    pub heading: Option<String>,
    /// The passage (with its heading on the first line, when it has one).
    pub text: String,
}

/// A unit that is never split further unless it alone is too long.
#[derive(Debug, Clone)]
struct Piece {
    text: String,
    /// Starts a new paragraph (a preferred cut).
    paragraph_start: bool,
}

struct Section {
    heading: Option<String>,
    pieces: Vec<Piece>,
}

/// Cuts `text` into chunks; `count` gives a string's length in tokens.
pub fn chunk(
    text: &str,
    format: Format,
    config: &ChunkConfig,
    count: &dyn Fn(&str) -> usize,
) -> Vec<Chunk> {
    let max = config.max_tokens.max(8);
    let overlap = config.overlap_tokens.min(max / 2);
    let mut out = Vec::new();
    for section in sections(text, format) {
        let heading_cost = section.heading.as_deref().map_or(0, count);
        let budget = max.saturating_sub(heading_cost).max(max / 2);
        let mut pieces = Vec::new();
        for p in section.pieces {
            if count(&p.text) <= budget {
                pieces.push(p);
            } else {
                pieces.extend(split_long(&p, budget, count));
            }
        }
        let mut current: Vec<(String, usize)> = Vec::new();
        let mut used = 0;
        let emit = |current: &[(String, usize)], out: &mut Vec<Chunk>| {
            let body = current
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            let text = match &section.heading {
                Some(h) => format!("{h}\n{body}"),
                None => body,
            };
            out.push(Chunk {
                index: out.len(),
                heading: section.heading.clone(),
                text,
            });
        };
        let mut fresh = 0; // pieces in `current` not yet emitted
        for p in pieces {
            let cost = count(&p.text);
            // Cut before a new paragraph once the chunk is reasonably full, or when full.
            let full = used + cost > budget;
            let good_cut = p.paragraph_start && used >= budget * 3 / 4;
            if fresh > 0 && (full || good_cut) {
                emit(&current, &mut out);
                // Carry trailing pieces as overlap.
                let mut carried = Vec::new();
                let mut carried_tokens = 0;
                for (t, c) in current.iter().rev() {
                    if carried_tokens + c > overlap || carried_tokens + c + cost > budget {
                        break;
                    }
                    carried_tokens += c;
                    carried.push((t.clone(), *c));
                }
                carried.reverse();
                current = carried;
                used = carried_tokens;
                fresh = 0;
            }
            used += cost;
            current.push((p.text, cost));
            fresh += 1;
        }
        if fresh > 0 {
            emit(&current, &mut out);
        }
    }
    out
}

/// Splits into sections (by Markdown heading) of paragraph-marked sentences.
fn sections(text: &str, format: Format) -> Vec<Section> {
    let mut sections = vec![Section {
        heading: None,
        pieces: Vec::new(),
    }];
    let mut paragraph: Vec<&str> = Vec::new();
    let mut in_code = false;
    let mut code: Vec<&str> = Vec::new();
    let flush = |paragraph: &mut Vec<&str>, sections: &mut Vec<Section>| {
        if paragraph.is_empty() {
            return;
        }
        let joined = paragraph.join(" ");
        paragraph.clear();
        let section = sections.last_mut().expect("one section at least");
        for (i, s) in sentences(&joined).into_iter().enumerate() {
            section.pieces.push(Piece {
                text: s,
                paragraph_start: i == 0,
            });
        }
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if format == Format::Markdown {
            if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                if in_code {
                    code.push(line);
                    let block = code.join("\n");
                    code.clear();
                    in_code = false;
                    if let Some(s) = sections.last_mut() {
                        s.pieces.push(Piece {
                            text: block,
                            paragraph_start: true,
                        });
                    }
                } else {
                    flush(&mut paragraph, &mut sections);
                    in_code = true;
                    code.push(line);
                }
                continue;
            }
            if in_code {
                code.push(line);
                continue;
            }
            if let Some(h) = heading(trimmed) {
                flush(&mut paragraph, &mut sections);
                sections.push(Section {
                    heading: Some(h),
                    pieces: Vec::new(),
                });
                continue;
            }
            // List items and quotes are their own lines (bullet markers dropped).
            if is_list_item(trimmed) {
                flush(&mut paragraph, &mut sections);
                let item = ["- ", "* ", "+ ", "> "]
                    .iter()
                    .find_map(|m| trimmed.strip_prefix(m))
                    .unwrap_or(trimmed);
                paragraph.push(item.trim());
                continue;
            }
        }
        if trimmed.is_empty() {
            flush(&mut paragraph, &mut sections);
        } else {
            paragraph.push(trimmed);
        }
    }
    if !code.is_empty() {
        paragraph.extend(code);
    }
    flush(&mut paragraph, &mut sections);
    sections
        .into_iter()
        .filter(|s| !s.pieces.is_empty())
        .collect()
}

fn heading(line: &str) -> Option<String> {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
        let h = line[hashes..].trim().trim_end_matches('#').trim();
        return (!h.is_empty()).then(|| h.to_owned());
    }
    None
}

fn is_list_item(line: &str) -> bool {
    line.starts_with("- ")
        || line.starts_with("* ")
        || line.starts_with("+ ")
        || line.starts_with("> ")
        || line
            .split_once(". ")
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Sentences of a paragraph: cut after `.`, `!`, `?` (and their CJK forms) followed
/// by a space and a capital, digit or quote; common abbreviations do not end one.
fn sentences(paragraph: &str) -> Vec<String> {
    const ABBREVIATIONS: &[&str] = &[
        "e.g.", "i.e.", "etc.", "vs.", "mr.", "mrs.", "ms.", "dr.", "st.", "no.", "approx.",
        "z.b.", "bzw.", "ca.",
    ];
    let chars: Vec<char> = paragraph.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let ends = matches!(c, '.' | '!' | '?' | '。' | '！' | '？');
        if ends {
            let cjk = matches!(c, '。' | '！' | '？');
            let next = chars.get(i + 1).copied();
            let after = chars.get(i + 2).copied();
            let boundary = cjk
                || (next == Some(' ')
                    && after.is_some_and(|a| {
                        a.is_uppercase()
                            || a.is_ascii_digit()
                            || a == '"'
                            || a == '“'
                            || !a.is_alphabetic()
                    }));
            if boundary {
                let candidate: String = chars[start..=i].iter().collect();
                let last_word = candidate
                    .split_whitespace()
                    .last()
                    .unwrap_or_default()
                    .to_lowercase();
                if !ABBREVIATIONS.contains(&last_word.as_str()) {
                    let s = candidate.trim();
                    if !s.is_empty() {
                        out.push(s.to_owned());
                    }
                    start = i + 1;
                }
            }
        }
        i += 1;
    }
    let rest: String = chars[start..].iter().collect();
    if !rest.trim().is_empty() {
        out.push(rest.trim().to_owned());
    }
    out
}

/// Cuts a piece longer than `budget` tokens at word boundaries.
fn split_long(p: &Piece, budget: usize, count: &dyn Fn(&str) -> usize) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut current = String::new();
    for word in p.text.split_whitespace() {
        let candidate = if current.is_empty() {
            word.to_owned()
        } else {
            format!("{current} {word}")
        };
        if !current.is_empty() && count(&candidate) > budget {
            out.push(Piece {
                text: std::mem::take(&mut current),
                paragraph_start: out.is_empty() && p.paragraph_start,
            });
            current = word.to_owned();
        } else {
            current = candidate;
        }
    }
    if !current.is_empty() {
        out.push(Piece {
            text: current,
            paragraph_start: out.is_empty() && p.paragraph_start,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    #[test]
    fn sentences_respect_abbreviations_and_decimals() {
        let s =
            sentences("We open at 9.30 on weekdays, e.g. Monday. Closed on Sundays! Why? Because.");
        assert_eq!(
            s,
            vec![
                "We open at 9.30 on weekdays, e.g. Monday.",
                "Closed on Sundays!",
                "Why?",
                "Because."
            ]
        );
    }

    #[test]
    fn chunks_fit_the_budget_and_overlap() {
        let text = (0..60)
            .map(|i| format!("Sentence number {i} has six words."))
            .collect::<Vec<_>>()
            .join(" ");
        let cfg = ChunkConfig {
            max_tokens: 40,
            overlap_tokens: 12,
        };
        let chunks = chunk(&text, Format::Text, &cfg, &words);
        assert!(chunks.len() > 5);
        for c in &chunks {
            assert!(words(&c.text) <= 40, "{}", c.text);
        }
        // Each chunk starts with the tail of the previous one.
        for pair in chunks.windows(2) {
            let first_sentence = pair[1].text.split('.').next().unwrap();
            assert!(pair[0].text.contains(first_sentence), "overlap missing");
        }
        // Nothing is lost.
        for i in 0..60 {
            assert!(
                chunks
                    .iter()
                    .any(|c| c.text.contains(&format!("number {i} ")))
            );
        }
    }

    #[test]
    fn markdown_headings_head_their_passages_and_code_stays_whole() {
        let md = "# Opening hours\n\nWe are open Monday to Friday.\nWeekends closed.\n\n## Returns\n\n- Keep the receipt.\n- Return within 30 days.\n\n```\nlet x = 1. Let y = 2.\n```\n";
        let chunks = chunk(md, Format::Markdown, &ChunkConfig::default(), &words);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].heading.as_deref(), Some("Opening hours"));
        assert!(chunks[0].text.starts_with("Opening hours\nWe are open"));
        assert_eq!(chunks[1].heading.as_deref(), Some("Returns"));
        assert!(
            chunks[1]
                .text
                .contains("Keep the receipt. Return within 30 days.")
        );
        assert!(chunks[1].text.contains("```\nlet x = 1. Let y = 2.\n```"));
    }

    #[test]
    fn an_overlong_sentence_is_cut_at_words() {
        let text = "word ".repeat(100);
        let cfg = ChunkConfig {
            max_tokens: 30,
            overlap_tokens: 0,
        };
        let chunks = chunk(&text, Format::Text, &cfg, &words);
        assert_eq!(chunks.len(), 4);
        assert!(chunks.iter().all(|c| words(&c.text) <= 30));
        assert_eq!(chunks.iter().map(|c| words(&c.text)).sum::<usize>(), 100);
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(chunk("  \n\n ", Format::Markdown, &ChunkConfig::default(), &words).is_empty());
    }
}
