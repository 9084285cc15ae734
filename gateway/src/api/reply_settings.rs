//! `GET|PUT /v1/sessions/{id}/reply-settings`: how the RAG actor answers a session's
//! inbound messages — mode `off`/`draft`/`auto`, allowed contacts, groups on/off,
//! system prompt, model, temperature. `writer` says who writes the replies (an LLM,
//! or the best passage quoted when none is configured).

use super::auth::Caller;
use super::body::read_json;
use super::{ApiError, ApiResult, Ctx, json};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use switchboard_rag::actor::{Mode, ReplySettings};

const MAX_PROMPT_CHARS: usize = 8_000;
const MAX_CONTACTS: usize = 1_000;

fn settings_view(ctx: &Ctx<'_>, s: &ReplySettings) -> serde_json::Value {
    let mut v = serde_json::json!(s);
    v["writer"] = serde_json::Value::from(if ctx.app.llm_configured {
        "llm"
    } else {
        "retrieval"
    });
    v
}

pub async fn get(ctx: &Ctx<'_>, caller: &Caller) -> ApiResult {
    let session = super::sessions::load(ctx, caller).await?;
    let settings = match ctx
        .app
        .store
        .reply_settings(&caller.tenant.id, &session.id)
        .await?
    {
        Some(text) => serde_json::from_str(&text).map_err(ApiError::internal)?,
        None => ReplySettings::default(),
    };
    json(StatusCode::OK, &settings_view(ctx, &settings))
}

pub async fn put(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let session = super::sessions::load(ctx, caller).await?;
    let s: ReplySettings = read_json(req, ctx.app.config.max_body_bytes, false).await?;
    if !(0.0..=2.0).contains(&s.temperature) {
        return Err(ApiError::validation(
            "`temperature` must be between 0 and 2",
        ));
    }
    if s.system_prompt
        .as_ref()
        .is_some_and(|p| p.chars().count() > MAX_PROMPT_CHARS)
    {
        return Err(ApiError::validation(format!(
            "`system_prompt` must be at most {MAX_PROMPT_CHARS} characters"
        )));
    }
    if s.model
        .as_ref()
        .is_some_and(|m| m.trim().is_empty() || m.len() > 200)
    {
        return Err(ApiError::validation("`model` must be 1 to 200 characters"));
    }
    if s.allowed_contacts.len() > MAX_CONTACTS
        || s.allowed_contacts
            .iter()
            .any(|c| c.trim().is_empty() || c.len() > 256)
    {
        return Err(ApiError::validation(format!(
            "`allowed_contacts` holds at most {MAX_CONTACTS} non-empty ids of up to 256 characters"
        )));
    }
    let text = serde_json::to_string(&s).map_err(ApiError::internal)?;
    ctx.app
        .store
        .put_reply_settings(&caller.tenant.id, &session.id, s.mode.as_str(), &text)
        .await?;
    if s.mode != Mode::Off {
        // Opening the knowledge base now makes the first answer quick (and surfaces
        // a missing model in the log at once).
        let knowledge = ctx.app.knowledge.clone();
        tokio::spawn(async move {
            let _ = knowledge.get().await;
        });
    }
    json(StatusCode::OK, &settings_view(ctx, &s))
}
