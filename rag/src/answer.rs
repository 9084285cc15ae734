//! Answering one inbound message: classify its intent, retrieve from the tenant's
//! knowledge base, draft a reply.
//!
//! With an LLM configured, one chat completion returns `{"intent","reply"}` as JSON
//! (retrieval-augmented: the passages are in the prompt). Without one, or when the
//! LLM fails after its retries, the answer is retrieval-only: the best passage,
//! labelled as such, with the intent from simple rules. Every answer says which
//! (`source`), so nobody mistakes a quoted passage for a written reply.

use crate::kb::{KbError, KnowledgeBase};
use crate::openai::{ChatRequest, LlmClient};
use crate::store::Hit;
use serde::{Deserialize, Serialize};

/// Passages retrieved per question.
pub const PASSAGES: usize = 4;
/// Below this cosine similarity the best passage is not an answer (MiniLM scale).
pub const MIN_SCORE: f32 = 0.35;
/// Longest reply kept from an LLM, in characters.
pub const MAX_REPLY_CHARS: usize = 4_000;

pub const DEFAULT_SYSTEM_PROMPT: &str = "You answer customer messages for a business, \
using only the knowledge-base passages you are given. Be brief and friendly. If the \
passages do not answer the question, or the customer asks for a person, hand off.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// A question the knowledge base can answer.
    Response,
    /// The customer wants something done (book, cancel, change…).
    Task,
    /// A person must answer.
    HumanHandoff,
}

/// Who wrote the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Llm,
    /// The best passage, quoted.
    Retrieval,
}

/// Per-answer knobs (from the session's reply settings).
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerSettings {
    pub system_prompt: Option<String>,
    pub model: Option<String>,
    pub temperature: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub intent: Intent,
    /// The reply; `None` for a hand-off.
    pub text: Option<String>,
    pub source: Source,
    /// What was retrieved, best first.
    pub passages: Vec<Hit>,
    /// Why the LLM was not used, when one is configured but failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LlmAnswer {
    intent: Intent,
    #[serde(default)]
    reply: String,
}

const HANDOFF_PHRASES: &[&str] = &[
    "human",
    "real person",
    "a person",
    "someone",
    "agent",
    "representative",
    "operator",
    "speak to",
    "talk to",
    "call me",
    "complaint",
];

const TASK_PHRASES: &[&str] = &[
    "book",
    "reserve",
    "schedule",
    "cancel",
    "reschedule",
    "change my",
    "update my",
    "order",
    "refund",
    "return my",
    "send me",
    "sign me up",
];

fn contains_word(text: &str, phrase: &str) -> bool {
    text.match_indices(phrase).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + phrase.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// The rules used without an LLM.
pub fn classify(question: &str, best_score: Option<f32>) -> Intent {
    let q = question.to_lowercase();
    if HANDOFF_PHRASES.iter().any(|p| contains_word(&q, p)) {
        return Intent::HumanHandoff;
    }
    if TASK_PHRASES.iter().any(|p| contains_word(&q, p)) {
        return Intent::Task;
    }
    match best_score {
        Some(s) if s >= MIN_SCORE => Intent::Response,
        _ => Intent::HumanHandoff,
    }
}

/// The retrieval-only reply: the best passage, labelled.
pub fn quote(hit: &Hit) -> String {
    format!(
        "{}\n\n(Automatic answer quoted from our knowledge base: \"{}\".)",
        hit.text.trim(),
        hit.title
    )
}

fn prompt(question: &str, passages: &[Hit]) -> String {
    let mut user = String::from("Knowledge-base passages:\n");
    for (i, p) in passages.iter().enumerate() {
        user.push_str(&format!("[{}] {} — {}\n", i + 1, p.title, p.text.trim()));
    }
    if passages.is_empty() {
        user.push_str("(none)\n");
    }
    user.push_str(&format!(
        "\nCustomer message:\n{question}\n\nAnswer with a JSON object: \
         {{\"intent\": \"response\" | \"task\" | \"human_handoff\", \"reply\": \"the message to send \
         (empty for human_handoff)\"}}. Use \"task\" when the customer asks for something to be \
         done, \"human_handoff\" when a person must answer."
    ));
    user
}

fn retrieval_only(question: &str, passages: Vec<Hit>, fallback: Option<String>) -> Answer {
    let best = passages.first().filter(|h| h.score >= MIN_SCORE);
    let mut intent = classify(question, passages.first().map(|h| h.score));
    let text = match (intent, best) {
        (Intent::HumanHandoff, _) => None,
        (_, Some(hit)) => Some(quote(hit)),
        // A task with nothing relevant to quote: a person takes it.
        (_, None) => {
            intent = Intent::HumanHandoff;
            None
        }
    };
    Answer {
        intent,
        text,
        source: Source::Retrieval,
        passages,
        fallback,
    }
}

/// Answers `question` from `tenant`'s knowledge base.
pub async fn answer(
    kb: &KnowledgeBase,
    llm: Option<&LlmClient>,
    tenant: &str,
    question: &str,
    settings: &AnswerSettings,
) -> Result<Answer, KbError> {
    let passages = kb.search(tenant, question, PASSAGES).await?;
    let Some(llm) = llm else {
        return Ok(retrieval_only(question, passages, None));
    };
    let request = ChatRequest {
        model: settings.model.clone(),
        system: settings
            .system_prompt
            .clone()
            .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_owned()),
        user: prompt(question, &passages),
        temperature: settings.temperature,
        max_tokens: 512,
    };
    match llm.complete_json::<LlmAnswer>(&request).await {
        Ok(a) => {
            let reply: String = a.reply.trim().chars().take(MAX_REPLY_CHARS).collect();
            let (intent, text) = match a.intent {
                Intent::HumanHandoff => (Intent::HumanHandoff, None),
                _ if reply.is_empty() => (Intent::HumanHandoff, None),
                other => (other, Some(reply)),
            };
            Ok(Answer {
                intent,
                text,
                source: Source::Llm,
                passages,
                fallback: None,
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "LLM failed; answering from retrieval only");
            metrics::counter!("switchboard_rag_llm_failures_total").increment(1);
            Ok(retrieval_only(question, passages, Some(e.to_string())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(score: f32) -> Hit {
        Hit {
            document_id: "doc_1".into(),
            title: "Opening hours".into(),
            chunk_index: 0,
            text: "We are open 9 to 5.".into(),
            score,
        }
    }

    #[test]
    fn rules_classify_handoff_task_and_response() {
        assert_eq!(
            classify("Can I talk to a human please?", Some(0.9)),
            Intent::HumanHandoff
        );
        assert_eq!(
            classify("I want to book a table for two", Some(0.6)),
            Intent::Task
        );
        assert_eq!(classify("When are you open?", Some(0.6)), Intent::Response);
        assert_eq!(
            classify("When are you open?", Some(0.1)),
            Intent::HumanHandoff
        );
        assert_eq!(classify("When are you open?", None), Intent::HumanHandoff);
        // Words, not substrings: "bookshelf" is not a booking.
        assert_eq!(
            classify("Do you sell a bookshelf?", Some(0.6)),
            Intent::Response
        );
    }

    #[test]
    fn retrieval_only_quotes_the_best_passage_with_a_label() {
        let a = retrieval_only("When are you open?", vec![hit(0.7), hit(0.5)], None);
        assert_eq!(a.intent, Intent::Response);
        assert_eq!(a.source, Source::Retrieval);
        let text = a.text.unwrap();
        assert!(text.starts_with("We are open 9 to 5."));
        assert!(text.contains("knowledge base"));

        let none = retrieval_only("Book me in", vec![hit(0.1)], None);
        assert_eq!(none.intent, Intent::HumanHandoff);
        assert_eq!(none.text, None);
    }
}
