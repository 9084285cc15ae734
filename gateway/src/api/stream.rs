//! `GET /v1/sessions/{id}/events`: the session's events as Server-Sent Events.
//!
//! Each event is sent as `id: evt_…`, `event: <type>`, `data: <envelope JSON>`, in
//! commit order. A client that reconnects with `Last-Event-ID` gets everything
//! after that event, so it misses nothing; without it the stream starts at the
//! newest event (only what happens from now on). A `: keep-alive` comment goes out
//! every 15 s so proxies keep the connection open. The stream ends when the client
//! goes away or the gateway shuts down. On Postgres, where replicas write a
//! session's events concurrently, an event committed late (after one with a higher
//! `seq`) is still sent, within two seconds of the ones after it.

use super::auth::Caller;
use super::{ApiError, ApiResult, Ctx, ResBody};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming};
use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use switchboard_actors::events::body_binding;
use switchboard_actors::ids;
use tokio::sync::mpsc;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
const PAGE: u32 = 200;
/// How long after sending an event a stream on Postgres still looks for events
/// committed late before it (see `session_events`).
const LATE_WINDOW: Duration = Duration::from_secs(2);

/// A response body fed by a channel.
pub(crate) struct ChannelBody(pub(crate) mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

pub async fn session_events(ctx: &Ctx<'_>, caller: &Caller, req: Request<Incoming>) -> ApiResult {
    let id = ctx.params[0].as_str();
    if !ids::is_valid(super::sessions::SESSION_PREFIX, id) {
        return Err(ApiError::not_found("session"));
    }
    let app = ctx.app;
    if app
        .store
        .get_session(&caller.tenant.id, id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("session"));
    }
    let last = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let cursor = match last {
        // Resume after a known event; an unknown one replays the session from the start.
        Some(l) => match app.store.get_event(&caller.tenant.id, &l).await? {
            Some(e) if e.session_id.as_deref() == Some(id) => Some(l),
            _ => None,
        },
        None => {
            app.store
                .last_session_event_id(&caller.tenant.id, id)
                .await?
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let store = app.store.clone();
    let keyring = app.keyring.clone();
    let mut commits = app.commits.clone();
    let shutdown = app.shutdown.clone();
    let (tenant, session) = (caller.tenant.id.clone(), id.to_owned());
    // Replicas write a session's events concurrently (the owner, and whichever
    // replica queued a send), so on Postgres an event can become visible after one
    // with a higher `seq`: the stream reads again from before its last
    // `LATE_WINDOW` of events and sends what it had not, so a late commit is not
    // skipped.
    let late = app.store.backend() == switchboard_actors::storage::Backend::Postgres;
    tokio::spawn(async move {
        let mut cursor = cursor;
        let mut window: VecDeque<(String, Instant)> = VecDeque::new();
        let mut in_window: HashSet<String> = HashSet::new();
        if tx
            .send(Bytes::from_static(b"retry: 2000\n\n"))
            .await
            .is_err()
        {
            return;
        }
        loop {
            commits.borrow_and_update();
            while let Some((id, at)) = window.front() {
                if at.elapsed() < LATE_WINDOW {
                    break;
                }
                in_window.remove(id);
                cursor = Some(id.clone());
                window.pop_front();
            }
            let rows = match store
                .session_events_after(&tenant, &session, cursor.as_deref(), PAGE)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream: reading events failed; closing");
                    return;
                }
            };
            let mut fresh = 0;
            for e in &rows {
                if in_window.contains(&e.id) {
                    continue;
                }
                fresh += 1;
                let Ok(body) =
                    keyring.open(&e.body_key_id, &e.body, body_binding(&e.tenant_id, &e.id))
                else {
                    tracing::error!(event_id = %e.id, "event stream: cannot decrypt event; closing");
                    return;
                };
                let frame = format!(
                    "id: {}\nevent: {}\ndata: {}\n\n",
                    e.id,
                    e.event_type,
                    String::from_utf8_lossy(&body)
                );
                if tx.send(Bytes::from(frame)).await.is_err() {
                    return;
                }
                if late {
                    window.push_back((e.id.clone(), Instant::now()));
                    in_window.insert(e.id.clone());
                } else {
                    cursor = Some(e.id.clone());
                }
            }
            if rows.len() == PAGE as usize {
                if fresh == 0 {
                    // A whole page sent already (a burst): read on after it.
                    cursor = rows.last().map(|e| e.id.clone());
                    window.clear();
                    in_window.clear();
                }
                continue;
            }
            tokio::select! {
                changed = commits.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(KEEP_ALIVE) => {
                    if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        return;
                    }
                }
                () = tx.closed() => return,
                () = shutdown.cancelled() => return,
            }
        }
    });
    let body: ResBody = ChannelBody(rx).boxed();
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}
