//! A small XML well-formedness check for the HTML report (which is written as XHTML so
//! that it can be checked): balanced tags, quoted attributes, known entities only, no
//! raw `<` in text. Used by the tests; no dependency needed.

/// Checks that `s` is well-formed XML, as far as the report needs: balanced tags,
/// quoted attributes, only the five escapes (or numeric ones), no raw `<` in text.
pub fn well_formed(s: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(['<', '&']) {
        let at = s.len() - rest.len() + i;
        rest = &rest[i..];
        if rest.starts_with('&') {
            entity(rest).map_err(|e| format!("{e} at byte {at}"))?;
            rest = &rest[1..];
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = &r[r.find("-->").ok_or(format!("unclosed comment at {at}"))? + 3..];
        } else if rest.starts_with("<!DOCTYPE") {
            rest = &rest[rest.find('>').ok_or("unclosed doctype")? + 1..];
        } else {
            let end = rest.find('>').ok_or(format!("unclosed tag at {at}"))?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name.trim_end() => {}
                    open => return Err(format!("</{name}> closes {open:?} at byte {at}")),
                }
                continue;
            }
            let (tag, empty) = tag.strip_suffix('/').map_or((tag, false), |t| (t, true));
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let name = &tag[..name_end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("bad tag <{tag}> at byte {at}"));
            }
            attributes(&tag[name_end..]).map_err(|e| format!("{e} in <{name}> at byte {at}"))?;
            if !empty {
                stack.push(name);
            }
        }
    }
    stack
        .last()
        .map_or(Ok(()), |open| Err(format!("<{open}> never closed")))
}

/// `s` starts with `&` and one of the entities XML knows without a DTD.
fn entity(s: &str) -> Result<(), String> {
    let end = s
        .find(';')
        .filter(|&i| i <= 12)
        .ok_or_else(|| format!("bare & before {:?}", &s[..s.len().min(12)]))?;
    let body = &s[1..end];
    let numeric = body
        .strip_prefix('#')
        .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
    if numeric || matches!(body, "amp" | "lt" | "gt" | "quot") {
        Ok(())
    } else {
        Err(format!("unknown entity &{body};"))
    }
}

/// ` name="value" …`: every value quoted, without `<`, with valid entities.
fn attributes(mut s: &str) -> Result<(), String> {
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(());
        }
        let eq = s
            .find('=')
            .ok_or(format!("attribute without a value: {s}"))?;
        let name = &s[..eq];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-:_".contains(c))
        {
            return Err(format!("bad attribute name {name:?}"));
        }
        let v = &s[eq + 1..];
        let quote = v
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '\''))
            .ok_or(format!("unquoted {name}"))?;
        let close = v[1..].find(quote).ok_or(format!("unterminated {name}"))?;
        let value = &v[1..1 + close];
        if value.contains('<') {
            return Err(format!("< in {name}"));
        }
        value
            .match_indices('&')
            .try_for_each(|(i, _)| entity(&value[i..]))?;
        s = &v[close + 2..];
    }
}
