//! Stand-in LinkedIn: a local server that behaves like linkedin.com as the tools that
//! keep accounts alive meet it (tomquirk/linkedin-api, beeper's `linkedingo`,
//! Unipile's published behaviour), for tests and the bench. It is built from how the
//! real site behaves, not from our driver's contract:
//!
//! - **Voyager API** under `/voyager/api`: every call needs the `li_at` and
//!   `JSESSIONID` cookies and a `csrf-token` header equal to JSESSIONID without its
//!   quotes (else 403 "CSRF check failed"); a missing or revoked `li_at` is 401.
//!   `GET /me`; messaging through GraphQL
//!   (`voyagerMessagingGraphQL/graphql?queryId=messengerConversations.<hash>` by
//!   `syncToken`, `messengerMessages.<hash>` by conversation) whose hashes belong to
//!   the current build: they are in the app's JS bundle and change on demand
//!   ([`LinkedInStandin::new_build`]); an old one is a 400. Sends by
//!   `voyagerMessagingDashMessengerMessages?action=createMessage`; invitations by
//!   `voyagerRelationshipsDashMemberRelationships?action=verifyQuotaAndCreateV2` (note
//!   ≤ 300 characters; a second one to the same person is 400 `CANT_RESEND_YET`);
//!   received invitations at `relationships/invitationViews?q=receivedInvitation`,
//!   accepted with their `sharedSecret`; profiles at
//!   `identity/dash/profiles?q=memberIdentity&memberIdentity=<public id>`.
//! - **Realtime**: `GET /realtime/connect?rc=1` (`accept: text/event-stream`, an
//!   `x-li-realtime-session` id) streams `ClientConnection`, a `Heartbeat` every few
//!   seconds and `DecoratedEvent`s on `messagesTopic` and `invitationsTopic`. A
//!   stalled stream ([`LinkedInStandin::stall`]) stays open and says nothing; what
//!   happens meanwhile is only in the sync-token catch-up.
//! - **Login** in the browser: `GET /login` (a form with `loginCsrfParam` bound to
//!   the `bcookie` cookie) → `POST /checkpoint/lg/login-submit` → either `li_at` and
//!   the feed, or a checkpoint at `/checkpoint/challenge/<id>`: a PIN form posted to
//!   `/checkpoint/challenge/verify` (e-mail, SMS, authenticator), an in-app approval
//!   page that polls until the member approves on their phone, or a captcha. PINs
//!   lapse ([`StandinConfig::challenge_ttl`]).
//! - **Trouble**: `li_at` is bound to the user agent that got it; a request with
//!   another one revokes it (`li_at=delete me`) and answers 401, as LinkedIn
//!   disconnects cookies used from another browser. A `HeadlessChrome` user agent or
//!   a page that reports `navigator.webdriver` (the app's tracking call) flags the
//!   account, and flagged accounts get HTTP 999. Hidden per-account thresholds (API
//!   requests per minute → 429, invitations per day → 999) are passed by robots.
//!
//! Control endpoints (JSON), what a test or a person with the account would do:
//! - `POST /_standin/accounts {"username","password","first","last","public_id"?,"challenge"?}`
//!   makes an account (`challenge`: `email`, `sms`, `two_factor`, `app`, `captcha`).
//! - `POST /_standin/cookies {"username","user_agent"}` logs the member in from their
//!   own browser and returns `{"li_at","jsessionid"}` (bound to that user agent).
//! - `GET /_standin/code?username=` the PIN sent; `POST /_standin/approve {"username"}`
//!   approves an in-app challenge.
//! - `POST /_standin/inbound {"username","from","text","first"?,"last"?}` a member
//!   (public id `from`) writes to the account.
//! - `POST /_standin/invite {"username","from","message"?}` a member invites the account;
//!   `POST /_standin/accept {"username","invitee"}` a member accepts its invitation.
//! - `POST /_standin/stall {"username","seconds"}`, `POST /_standin/build` (new query ids),
//!   `POST /_standin/throttle {"username","status":999|429,"seconds"}`,
//!   `POST /_standin/thresholds {"username","requests_per_minute"?,"invitations_per_day"?}`.
//! - `GET /_standin/sent?username=`, `GET /_standin/invitations?username=`, `GET /_standin/state`.

use futures::StreamExt;
use http::{Method, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Stand-in settings.
#[derive(Debug, Clone)]
pub struct StandinConfig {
    /// How often a realtime stream says `Heartbeat`.
    pub heartbeat: Duration,
    /// How long a checkpoint PIN stays valid.
    pub challenge_ttl: Duration,
    /// How often the in-app approval page asks whether the member approved.
    pub approval_poll: Duration,
    /// API requests per minute past which an account gets 429.
    pub requests_per_minute: u32,
    /// Invitations per day past which an account gets 999 (seen as a robot).
    pub invitations_per_day: u32,
    /// Turn headless browsers away (999), as LinkedIn does.
    pub refuse_robots: bool,
}

impl Default for StandinConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(5),
            challenge_ttl: Duration::from_secs(600),
            approval_poll: Duration::from_secs(5),
            requests_per_minute: 300,
            invitations_per_day: 25,
            refuse_robots: true,
        }
    }
}

/// A message sent from one of the account's sessions.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct Sent {
    pub urn: String,
    pub conversation: String,
    /// The recipient's public id.
    pub to: String,
    pub text: String,
    pub origin_token: String,
    pub at_ms: i64,
}

/// An invitation the account sent.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct SentInvitation {
    pub urn: String,
    /// The invitee's public id.
    pub to: String,
    pub note: Option<String>,
    pub at_ms: i64,
    pub accepted: bool,
}

#[derive(Debug, Clone)]
struct Member {
    id: String,
    public_id: String,
    first: String,
    last: String,
    headline: String,
}

#[derive(Debug, Clone)]
struct Msg {
    urn: String,
    from_me: bool,
    /// The sender's member id.
    sender: String,
    text: String,
    at_ms: i64,
    origin_token: Option<String>,
}

#[derive(Debug, Clone)]
struct Conversation {
    id: String,
    /// The other member's id.
    peer: String,
    messages: Vec<Msg>,
    /// The account's change counter when it last changed.
    changed: u64,
}

#[derive(Debug, Clone)]
struct Received {
    id: String,
    secret: String,
    from: String,
    message: Option<String>,
    at_ms: i64,
    accepted: bool,
}

#[derive(Debug, Default)]
struct Account {
    password: String,
    member: String,
    challenge: Option<String>,
    conversations: Vec<Conversation>,
    sent: Vec<Sent>,
    invitations: Vec<SentInvitation>,
    received: Vec<Received>,
    /// Changes so far (sync tokens count them).
    seq: u64,
    streams: Vec<mpsc::Sender<Bytes>>,
    stall_until: Option<Instant>,
    forced: Option<(u16, Instant)>,
    flagged: bool,
    requests: VecDeque<Instant>,
    requests_per_minute: Option<u32>,
    invitations_per_day: Option<u32>,
    denied: u64,
}

#[derive(Debug)]
struct Flow {
    username: String,
    kind: String,
    code: String,
    issued: Instant,
    approved: bool,
}

#[derive(Debug, Clone)]
struct Cookie {
    username: String,
    user_agent: String,
}

#[derive(Debug, Default)]
struct World {
    accounts: HashMap<String, Account>,
    members: HashMap<String, Member>,
    /// li_at → who and from which browser.
    cookies: HashMap<String, Cookie>,
    flows: HashMap<String, Flow>,
    build: u64,
    counter: u64,
    refused: Vec<String>,
}

impl World {
    fn token(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{:x}{:016x}", self.counter, rand_u64())
    }

    fn member_by_public(&self, public_id: &str) -> Option<&Member> {
        self.members.values().find(|m| m.public_id == public_id)
    }

    /// A member (made up on first sight) with this public id.
    fn member(&mut self, public_id: &str, first: Option<&str>, last: Option<&str>) -> String {
        if let Some(m) = self.member_by_public(public_id) {
            return m.id.clone();
        }
        let id = member_id(public_id);
        let mut words = public_id.split('-');
        let cap = |w: &str| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        };
        let first = first.map_or_else(|| cap(words.next().unwrap_or("Member")), str::to_owned);
        let last = last.map_or_else(|| cap(words.next().unwrap_or("")), str::to_owned);
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                public_id: public_id.to_owned(),
                first,
                last,
                headline: "Member of the stand-in network".into(),
            },
        );
        id
    }

    fn query_ids(&self) -> (String, String) {
        let h = |name: &str| {
            let mut x: u64 = 0xcbf2_9ce4_8422_2325 ^ self.build;
            for b in name.bytes() {
                x ^= u64::from(b);
                x = x.wrapping_mul(0x0100_0000_01b3);
            }
            format!("{x:016x}{:016x}", x.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15)
        };
        (
            format!("messengerConversations.{}", h("conversations")),
            format!("messengerMessages.{}", h("messages")),
        )
    }
}

/// The member id LinkedIn gives a public id here (`ACoAA…`, deterministic).
pub fn member_id(public_id: &str) -> String {
    let mut h: u64 = 0x8422_2325_cbf2_9ce4;
    for b in public_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("ACoAA{:016X}", h)
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("system randomness");
    u64::from_le_bytes(b)
}

fn now_ms() -> i64 {
    crate::clock::now_ms()
}

fn profile_urn(id: &str) -> String {
    format!("urn:li:fsd_profile:{id}")
}

fn conversation_urn(me: &str, id: &str) -> String {
    format!("urn:li:msg_conversation:({},{id})", profile_urn(me))
}

/// A running stand-in.
#[derive(Debug, Clone)]
pub struct LinkedInStandin {
    addr: SocketAddr,
    world: Arc<Mutex<World>>,
    config: StandinConfig,
}

impl LinkedInStandin {
    /// Starts on `addr` (port 0 for any).
    pub async fn start(addr: SocketAddr, config: StandinConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let me = Self {
            addr: listener.local_addr()?,
            world: Arc::default(),
            config,
        };
        let server = me.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = server.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(s.handle(req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        let beats = me.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(beats.config.heartbeat);
            loop {
                tick.tick().await;
                beats.broadcast_all(&json!({ "com.linkedin.realtimefrontend.Heartbeat": {} }));
            }
        });
        Ok(me)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address to give the gateway (`SWITCHBOARD_LINKEDIN_URL`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn profile_url(&self, public_id: &str) -> String {
        format!("{}in/{public_id}/", self.url())
    }

    /// Makes an account; `challenge` is the checkpoint a password login meets.
    pub fn add_account(
        &self,
        username: &str,
        password: &str,
        public_id: &str,
        challenge: Option<&str>,
    ) -> String {
        let mut w = self.world();
        let member = w.member(public_id, None, None);
        w.accounts.insert(
            username.to_owned(),
            Account {
                password: password.to_owned(),
                member: member.clone(),
                challenge: challenge.map(str::to_owned),
                ..Default::default()
            },
        );
        member
    }

    /// A member of the network (not an account here) with this public id; its id.
    pub fn add_member(&self, public_id: &str, first: &str, last: &str) -> String {
        self.world().member(public_id, Some(first), Some(last))
    }

    /// Logs the member in from their own browser (`user_agent`): `(li_at, JSESSIONID)`.
    pub fn cookies(&self, username: &str, user_agent: &str) -> Option<(String, String)> {
        let mut w = self.world();
        w.accounts.get(username)?;
        let li_at = w.token("AQEDA");
        w.cookies.insert(
            li_at.clone(),
            Cookie {
                username: username.to_owned(),
                user_agent: user_agent.to_owned(),
            },
        );
        let jsessionid = format!("\"ajax:{:019}\"", rand_u64() % 10_000_000_000_000_000_000);
        Some((li_at, jsessionid))
    }

    /// The PIN the account's open checkpoint sent.
    pub fn code(&self, username: &str) -> Option<String> {
        self.world()
            .flows
            .values()
            .filter(|f| f.username == username)
            .max_by_key(|f| f.issued)
            .map(|f| f.code.clone())
    }

    /// The member approves the login on their phone.
    pub fn approve(&self, username: &str) -> bool {
        let mut w = self.world();
        let mut any = false;
        for f in w.flows.values_mut().filter(|f| f.username == username) {
            f.approved = true;
            any = true;
        }
        any
    }

    /// Member `from` (public id) writes `text` to the account; the message's URN.
    pub fn inbound(&self, username: &str, from: &str, text: &str) -> Option<String> {
        self.deliver(username, from, text, None, None)
    }

    fn deliver(
        &self,
        username: &str,
        from: &str,
        text: &str,
        first: Option<&str>,
        last: Option<&str>,
    ) -> Option<String> {
        let mut w = self.world();
        let sender = w.member(from, first, last);
        let msg_id = w.token("2-");
        let conv_id = w.token("2-");
        let account = w.accounts.get_mut(username)?;
        account.seq += 1;
        let seq = account.seq;
        let me = account.member.clone();
        let conv = match account
            .conversations
            .iter_mut()
            .position(|c| c.peer == sender)
        {
            Some(i) => &mut account.conversations[i],
            None => {
                account.conversations.push(Conversation {
                    id: conv_id,
                    peer: sender.clone(),
                    messages: Vec::new(),
                    changed: seq,
                });
                account.conversations.last_mut().expect("just pushed")
            }
        };
        let urn = format!("urn:li:msg_message:({},{msg_id})", profile_urn(&me));
        let m = Msg {
            urn: urn.clone(),
            from_me: false,
            sender,
            text: text.to_owned(),
            at_ms: now_ms(),
            origin_token: None,
        };
        conv.messages.push(m.clone());
        conv.changed = seq;
        let conv = conv.clone();
        let event = self.message_event(&w, &me, &conv, &m);
        drop(w);
        self.broadcast(username, &event);
        Some(urn)
    }

    /// Member `from` invites the account; the invitation's URN.
    pub fn invite(&self, username: &str, from: &str, message: Option<&str>) -> Option<String> {
        let mut w = self.world();
        let from_id = w.member(from, None, None);
        let id = format!(
            "{}",
            7_000_000_000_000_000_000u64 + rand_u64() % 1_000_000_000_000_000_000
        );
        let secret = w.token("");
        let account = w.accounts.get_mut(username)?;
        let r = Received {
            id: id.clone(),
            secret,
            from: from_id,
            message: message.map(str::to_owned),
            at_ms: now_ms(),
            accepted: false,
        };
        account.received.push(r.clone());
        let view = invitation_view(&w, &r, &self.url());
        drop(w);
        let event = realtime_event(
            "invitationsTopic",
            json!({ "action": "INVITATION_RECEIVED", "invitation": view }),
        );
        self.broadcast(username, &event);
        Some(format!("urn:li:fsd_invitation:{id}"))
    }

    /// Member `invitee` (public id) accepts the account's invitation.
    pub fn accept(&self, username: &str, invitee: &str) -> bool {
        let mut w = self.world();
        let Some(member) = w.member_by_public(invitee).cloned() else {
            return false;
        };
        let Some(account) = w.accounts.get_mut(username) else {
            return false;
        };
        let Some(inv) = account
            .invitations
            .iter_mut()
            .find(|i| i.to == invitee && !i.accepted)
        else {
            return false;
        };
        inv.accepted = true;
        let urn = inv.urn.clone();
        drop(w);
        let event = realtime_event(
            "invitationsTopic",
            json!({
                "action": "INVITATION_ACCEPTED",
                "invitation": {
                    "entityUrn": urn,
                    "invitee": self.member_json(&member),
                },
            }),
        );
        self.broadcast(username, &event);
        true
    }

    /// The account's realtime streams say nothing (not even heartbeats) for `for_`.
    pub fn stall(&self, username: &str, for_: Duration) {
        if let Some(a) = self.world().accounts.get_mut(username) {
            a.stall_until = Some(Instant::now() + for_);
        }
    }

    /// A new build of the web app: new GraphQL query ids; the old ones are refused.
    pub fn new_build(&self) -> (String, String) {
        let mut w = self.world();
        w.build += 1;
        w.query_ids()
    }

    /// The current query ids (messengerConversations, messengerMessages).
    pub fn query_ids(&self) -> (String, String) {
        self.world().query_ids()
    }

    /// Every API call of the account answers `status` (999 or 429) for `for_`.
    pub fn throttle(&self, username: &str, status: u16, for_: Duration) {
        if let Some(a) = self.world().accounts.get_mut(username) {
            a.forced = Some((status, Instant::now() + for_));
        }
    }

    /// Lowers (or raises) the account's hidden thresholds.
    pub fn thresholds(&self, username: &str, per_minute: Option<u32>, invitations: Option<u32>) {
        if let Some(a) = self.world().accounts.get_mut(username) {
            if per_minute.is_some() {
                a.requests_per_minute = per_minute;
            }
            if invitations.is_some() {
                a.invitations_per_day = invitations;
            }
        }
    }

    /// What the account's sessions sent.
    pub fn sent(&self, username: &str) -> Vec<Sent> {
        self.world()
            .accounts
            .get(username)
            .map(|a| a.sent.clone())
            .unwrap_or_default()
    }

    /// The invitations the account sent.
    pub fn invitations(&self, username: &str) -> Vec<SentInvitation> {
        self.world()
            .accounts
            .get(username)
            .map(|a| a.invitations.clone())
            .unwrap_or_default()
    }

    /// Whether received invitation `urn` was accepted by the account.
    pub fn accepted_by_account(&self, username: &str, id: &str) -> bool {
        self.world()
            .accounts
            .get(username)
            .is_some_and(|a| a.received.iter().any(|r| r.accepted && id.ends_with(&r.id)))
    }

    /// How many API calls of the account were denied (999 or 429).
    pub fn denied(&self, username: &str) -> u64 {
        self.world().accounts.get(username).map_or(0, |a| a.denied)
    }

    /// Why robots were turned away.
    pub fn refused(&self) -> Vec<String> {
        self.world().refused.clone()
    }

    /// Open realtime streams of the account.
    pub fn streams(&self, username: &str) -> usize {
        let mut w = self.world();
        w.accounts.get_mut(username).map_or(0, |a| {
            a.streams.retain(|s| !s.is_closed());
            a.streams.len()
        })
    }

    fn member_json(&self, m: &Member) -> Value {
        json!({
            "entityUrn": profile_urn(&m.id),
            "publicIdentifier": m.public_id,
            "firstName": m.first,
            "lastName": m.last,
            "headline": m.headline,
            "profileUrl": self.profile_url(&m.public_id),
        })
    }

    fn participant(&self, w: &World, id: &str) -> Value {
        let m = w.members.get(id).cloned().unwrap_or(Member {
            id: id.to_owned(),
            public_id: id.to_owned(),
            first: String::new(),
            last: String::new(),
            headline: String::new(),
        });
        json!({
            "_type": "com.linkedin.messenger.MessagingParticipant",
            "entityUrn": format!("urn:li:msg_messagingParticipant:{}", profile_urn(id)),
            "hostIdentityUrn": profile_urn(id),
            "participantType": { "member": {
                "firstName": { "text": m.first },
                "lastName": { "text": m.last },
                "headline": { "text": m.headline },
                "profileUrl": self.profile_url(&m.public_id),
                "distance": "DISTANCE_1",
            }},
        })
    }

    fn message_json(&self, w: &World, me: &str, conv: &Conversation, m: &Msg) -> Value {
        json!({
            "_type": "com.linkedin.messenger.Message",
            "entityUrn": m.urn,
            "backendUrn": format!("urn:li:messagingMessage:{}", m.urn.rsplit(',').next().unwrap_or_default().trim_end_matches(')')),
            "deliveredAt": m.at_ms,
            "originToken": m.origin_token,
            "body": { "_type": "com.linkedin.pemberly.text.AttributedText", "text": m.text, "attributes": [] },
            "sender": self.participant(w, if m.from_me { me } else { &m.sender }),
            "conversation": { "entityUrn": conversation_urn(me, &conv.id), "groupChat": false },
            "renderContentUnions": [],
        })
    }

    fn message_event(&self, w: &World, me: &str, conv: &Conversation, m: &Msg) -> Value {
        realtime_event(
            "messagesTopic",
            json!({
                "_type": "com.linkedin.messenger.RealtimeDecoratedMessage",
                "doDecorateMessageMessengerRealtimeDecoration": { "result": self.message_json(w, me, conv, m) },
            }),
        )
    }

    fn conversation_json(&self, w: &World, me: &str, c: &Conversation) -> Value {
        let last: Vec<Value> = c
            .messages
            .iter()
            .rev()
            .take(1)
            .map(|m| self.message_json(w, me, c, m))
            .collect();
        json!({
            "_type": "com.linkedin.messenger.Conversation",
            "entityUrn": conversation_urn(me, &c.id),
            "backendUrn": format!("urn:li:messagingThread:{}", c.id),
            "groupChat": false,
            "lastActivityAt": c.messages.last().map_or(0, |m| m.at_ms),
            "conversationParticipants": [self.participant(w, me), self.participant(w, &c.peer)],
            "messages": { "elements": last },
            "read": false,
        })
    }

    fn broadcast(&self, username: &str, ev: &Value) {
        let line = Bytes::from(format!("data: {ev}\n\n"));
        let mut w = self.world();
        let Some(a) = w.accounts.get_mut(username) else {
            return;
        };
        if a.stall_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        a.streams
            .retain(|s| s.try_send(line.clone()).is_ok() || !s.is_closed());
    }

    fn broadcast_all(&self, ev: &Value) {
        let names: Vec<String> = self.world().accounts.keys().cloned().collect();
        for n in names {
            self.broadcast(&n, ev);
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let raw_query = req.uri().query().unwrap_or_default().to_owned();
        let method = req.method().clone();
        let headers = req.headers().clone();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return reply(StatusCode::BAD_REQUEST, json!({"error": "unreadable body"})),
        };
        let call = Call {
            cookies: parse_cookies(&headers),
            user_agent: header(&headers, "user-agent"),
            headers,
            query,
            raw_query,
            body,
        };
        if let Some(rest) = path.strip_prefix("/_standin/") {
            return self.control(&method, rest, &call);
        }
        if let Some(api) = path.strip_prefix("/voyager/api/") {
            return self.api(&method, api, &call);
        }
        match (method, path.as_str()) {
            (Method::GET, "/realtime/connect") => self.realtime(&call),
            (Method::GET, "/login") => self.login_page(&call, None),
            (Method::POST, "/checkpoint/lg/login-submit") => self.login_submit(&call),
            (Method::POST, "/checkpoint/challenge/verify") => self.verify(&call),
            (Method::POST, "/li/track") => self.track(&call),
            (Method::GET, p) if p.starts_with("/checkpoint/challenge/") => {
                self.challenge_page(&p["/checkpoint/challenge/".len()..], None)
            }
            (Method::POST, p) if p.starts_with("/checkpoint/challengesV2/poll/") => {
                self.approval_poll(&p["/checkpoint/challengesV2/poll/".len()..])
            }
            (Method::POST, "/checkpoint/challenge/verifyV2") => self.verify_in_app(&call),
            (Method::GET, p) if p.starts_with("/static/app.") => self.bundle(),
            (Method::GET, "/" | "/feed/" | "/messaging/") => self.app_page(&call, &path),
            (Method::GET, "/authwall") => html(
                StatusCode::OK,
                "<!doctype html><title>Sign Up | LinkedIn</title><h1>Join LinkedIn</h1><a href=\"/login\">Sign in</a>",
                &[],
            ),
            _ => reply(StatusCode::NOT_FOUND, json!({"status": 404})),
        }
    }

    /// Who the `li_at` cookie belongs to, checked against the user agent it was
    /// given to; a cookie used from another browser is revoked.
    #[allow(clippy::result_large_err)]
    fn session_of(&self, call: &Call) -> Result<String, Response<Body>> {
        let unauthorized = |revoke: bool| {
            let mut cookies = Vec::new();
            if revoke {
                cookies.push("li_at=delete me; Path=/; Max-Age=0".to_owned());
            }
            with_cookies(
                reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"status": 401, "message": "unauthorized"}),
                ),
                &cookies,
            )
        };
        let Some(li_at) = call.cookies.get("li_at") else {
            return Err(unauthorized(false));
        };
        let mut w = self.world();
        let Some(c) = w.cookies.get(li_at).cloned() else {
            return Err(unauthorized(false));
        };
        if c.user_agent != call.user_agent {
            w.cookies.remove(li_at);
            w.refused.push(format!(
                "li_at used from another browser ({})",
                call.user_agent
            ));
            return Err(unauthorized(true));
        }
        Ok(c.username)
    }

    /// Limits, robots and forced answers for one API call of `username`.
    fn gate(&self, username: &str, call: &Call) -> Option<Response<Body>> {
        let mut w = self.world();
        let robot = self.config.refuse_robots && call.user_agent.contains("HeadlessChrome");
        let per_minute = self.config.requests_per_minute;
        let a = w.accounts.get_mut(username)?;
        if robot {
            a.flagged = true;
        }
        let now = Instant::now();
        a.requests.push_back(now);
        while a
            .requests
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            a.requests.pop_front();
        }
        let status = match a.forced {
            Some((s, until)) if now < until => Some(s),
            _ if a.flagged => Some(999),
            _ if a.requests.len() > a.requests_per_minute.unwrap_or(per_minute) as usize => {
                Some(429)
            }
            _ => None,
        }?;
        a.denied += 1;
        Some(denied(status))
    }

    fn api(&self, method: &Method, api: &str, call: &Call) -> Response<Body> {
        let username = match self.session_of(call) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let jsession = call
            .cookies
            .get("JSESSIONID")
            .map(|v| v.trim_matches('"').to_owned());
        let csrf = header(&call.headers, "csrf-token");
        if jsession.as_deref() != Some(csrf.as_str()) || csrf.is_empty() {
            return reply(
                StatusCode::FORBIDDEN,
                json!({"status": 403, "message": "CSRF check failed"}),
            );
        }
        if let Some(r) = self.gate(&username, call) {
            return r;
        }
        match (method.clone(), api) {
            (Method::GET, "me") => self.me(&username),
            (Method::GET, "voyagerMessagingGraphQL/graphql") => self.graphql(&username, call),
            (Method::POST, "voyagerMessagingDashMessengerMessages") => {
                self.create_message(&username, call)
            }
            (Method::POST, "voyagerRelationshipsDashMemberRelationships") => {
                self.create_invitation(&username, call)
            }
            (Method::GET, "relationships/invitationViews") => self.invitation_views(&username),
            (Method::POST, p) if p.starts_with("relationships/invitations/") => {
                self.accept_invitation(&username, &p["relationships/invitations/".len()..], call)
            }
            (Method::GET, "identity/dash/profiles") => self.profile(call),
            _ => reply(StatusCode::NOT_FOUND, json!({"status": 404})),
        }
    }

    fn me(&self, username: &str) -> Response<Body> {
        let w = self.world();
        let Some(a) = w.accounts.get(username) else {
            return reply(StatusCode::UNAUTHORIZED, json!({"status": 401}));
        };
        let Some(m) = w.members.get(&a.member) else {
            return reply(StatusCode::INTERNAL_SERVER_ERROR, json!({"status": 500}));
        };
        reply(
            StatusCode::OK,
            json!({
                "plainId": u64::from_str_radix(&m.id[5..13], 16).unwrap_or(1),
                "miniProfile": {
                    "entityUrn": format!("urn:li:fs_miniProfile:{}", m.id),
                    "dashEntityUrn": profile_urn(&m.id),
                    "publicIdentifier": m.public_id,
                    "firstName": m.first,
                    "lastName": m.last,
                    "occupation": m.headline,
                },
            }),
        )
    }

    fn graphql(&self, username: &str, call: &Call) -> Response<Body> {
        let qid = call.query.get("queryId").cloned().unwrap_or_default();
        // Rest.li reads `variables` from the raw query: its structure is literal, its
        // values are encoded inside it.
        let vars = call
            .raw_query
            .split('&')
            .find_map(|kv| kv.strip_prefix("variables="))
            .unwrap_or_default()
            .to_owned();
        let w = self.world();
        let (conversations_id, messages_id) = w.query_ids();
        let Some(a) = w.accounts.get(username) else {
            return reply(StatusCode::UNAUTHORIZED, json!({"status": 401}));
        };
        let var = |name: &str| restli_var(&vars, name);
        if qid == conversations_id {
            let since: u64 = var("syncToken")
                .and_then(|t| t.strip_prefix("st").and_then(|n| n.parse().ok()))
                .unwrap_or(0);
            let by_token = var("syncToken").is_some();
            let elements: Vec<Value> = a
                .conversations
                .iter()
                .filter(|c| !by_token || c.changed > since)
                .map(|c| self.conversation_json(&w, &a.member, c))
                .collect();
            let key = if by_token {
                "messengerConversationsBySyncToken"
            } else {
                "messengerConversationsByCategory"
            };
            return reply(
                StatusCode::OK,
                json!({ "data": { key: {
                    "elements": elements,
                    "metadata": { "newSyncToken": format!("st{}", a.seq), "deletedUrns": [] },
                }}}),
            );
        }
        if qid == messages_id {
            let Some(urn) = var("conversationUrn") else {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({"status": 400, "message": "conversationUrn is required"}),
                );
            };
            let Some(c) = a
                .conversations
                .iter()
                .find(|c| conversation_urn(&a.member, &c.id) == urn)
            else {
                return reply(
                    StatusCode::OK,
                    json!({ "data": { "messengerMessagesByConversation": { "elements": [] } } }),
                );
            };
            let elements: Vec<Value> = c
                .messages
                .iter()
                .rev()
                .take(20)
                .map(|m| self.message_json(&w, &a.member, c, m))
                .collect();
            return reply(
                StatusCode::OK,
                json!({ "data": { "messengerMessagesByConversation": { "elements": elements } } }),
            );
        }
        reply(
            StatusCode::BAD_REQUEST,
            json!({"status": 400, "message": format!("Unknown persisted query: {qid}")}),
        )
    }

    fn create_message(&self, username: &str, call: &Call) -> Response<Body> {
        if call.query.get("action").map(String::as_str) != Some("createMessage") {
            return reply(StatusCode::BAD_REQUEST, json!({"status": 400}));
        }
        let Ok(v) = serde_json::from_slice::<Value>(&call.body) else {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"status": 400, "message": "bad JSON"}),
            );
        };
        let text = v["message"]["body"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let origin = v["message"]["originToken"].as_str().map(str::to_owned);
        let tracking = v["trackingId"].as_str().unwrap_or_default();
        if text.is_empty() || tracking.is_empty() || v["mailboxUrn"].as_str().is_none() {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"status": 400, "message": "message.body.text, trackingId and mailboxUrn are required"}),
            );
        }
        let mut w = self.world();
        let msg_id = w.token("2-");
        let conv_id = w.token("2-");
        let World {
            accounts, members, ..
        } = &mut *w;
        let Some(a) = accounts.get_mut(username) else {
            return reply(StatusCode::UNAUTHORIZED, json!({"status": 401}));
        };
        if v["mailboxUrn"].as_str() != Some(profile_urn(&a.member).as_str()) {
            return reply(
                StatusCode::FORBIDDEN,
                json!({"status": 403, "message": "not your mailbox"}),
            );
        }
        let me = a.member.clone();
        let index = if let Some(urn) = v["message"]["conversationUrn"].as_str() {
            match a
                .conversations
                .iter()
                .position(|c| conversation_urn(&me, &c.id) == urn)
            {
                Some(i) => i,
                None => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        json!({"status": 400, "message": "no such conversation"}),
                    );
                }
            }
        } else if let Some(recipient) = v["hostRecipientUrns"][0].as_str() {
            let Some(peer) = recipient
                .strip_prefix("urn:li:fsd_profile:")
                .filter(|p| members.contains_key(*p))
            else {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({"status": 400, "message": "unknown recipient"}),
                );
            };
            match a.conversations.iter().position(|c| c.peer == peer) {
                Some(i) => i,
                None => {
                    a.conversations.push(Conversation {
                        id: conv_id,
                        peer: peer.to_owned(),
                        messages: Vec::new(),
                        changed: a.seq,
                    });
                    a.conversations.len() - 1
                }
            }
        } else {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"status": 400, "message": "conversationUrn or hostRecipientUrns is required"}),
            );
        };
        a.seq += 1;
        let seq = a.seq;
        let conv = &mut a.conversations[index];
        let m = Msg {
            urn: format!("urn:li:msg_message:({},{msg_id})", profile_urn(&me)),
            from_me: true,
            sender: me.clone(),
            text: text.clone(),
            at_ms: now_ms(),
            origin_token: origin.clone(),
        };
        conv.messages.push(m.clone());
        conv.changed = seq;
        let conv = conv.clone();
        let to = members
            .get(&conv.peer)
            .map(|p| p.public_id.clone())
            .unwrap_or_default();
        a.sent.push(Sent {
            urn: m.urn.clone(),
            conversation: conversation_urn(&me, &conv.id),
            to,
            text,
            origin_token: origin.unwrap_or_default(),
            at_ms: m.at_ms,
        });
        let event = self.message_event(&w, &me, &conv, &m);
        let value = json!({ "value": {
            "entityUrn": m.urn,
            "conversationUrn": conversation_urn(&me, &conv.id),
            "deliveredAt": m.at_ms,
            "originToken": m.origin_token,
        }});
        drop(w);
        self.broadcast(username, &event);
        reply(StatusCode::OK, value)
    }

    fn create_invitation(&self, username: &str, call: &Call) -> Response<Body> {
        if call.query.get("action").map(String::as_str) != Some("verifyQuotaAndCreateV2") {
            return reply(StatusCode::BAD_REQUEST, json!({"status": 400}));
        }
        let Ok(v) = serde_json::from_slice::<Value>(&call.body) else {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"status": 400, "message": "bad JSON"}),
            );
        };
        let invitee = v["invitee"]["inviteeUnion"]["memberProfile"]
            .as_str()
            .unwrap_or_default();
        let note = v["customMessage"].as_str().map(str::to_owned);
        if note.as_ref().is_some_and(|n| n.chars().count() > 300) {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"status": 400, "data": {"code": "INVALID_CUSTOM_MESSAGE"}}),
            );
        }
        let mut w = self.world();
        let urn = w.token("urn:li:fsd_invitation:");
        let per_day = self.config.invitations_per_day;
        let World {
            accounts, members, ..
        } = &mut *w;
        let Some(member) = invitee
            .strip_prefix("urn:li:fsd_profile:")
            .and_then(|id| members.get(id))
        else {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"status": 400, "data": {"code": "INVALID_INVITEE"}}),
            );
        };
        let Some(a) = accounts.get_mut(username) else {
            return reply(StatusCode::UNAUTHORIZED, json!({"status": 401}));
        };
        if a.invitations.iter().any(|i| i.to == member.public_id) {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"status": 400, "data": {"code": "CANT_RESEND_YET", "status": 400}}),
            );
        }
        let day_ago = now_ms() - 24 * 3600 * 1000;
        let today = a.invitations.iter().filter(|i| i.at_ms > day_ago).count();
        if today >= a.invitations_per_day.unwrap_or(per_day) as usize {
            a.flagged = true;
            a.denied += 1;
            return denied(999);
        }
        a.invitations.push(SentInvitation {
            urn: urn.clone(),
            to: member.public_id.clone(),
            note,
            at_ms: now_ms(),
            accepted: false,
        });
        reply(StatusCode::OK, json!({ "value": { "invitationUrn": urn } }))
    }

    fn invitation_views(&self, username: &str) -> Response<Body> {
        let w = self.world();
        let Some(a) = w.accounts.get(username) else {
            return reply(StatusCode::UNAUTHORIZED, json!({"status": 401}));
        };
        let elements: Vec<Value> = a
            .received
            .iter()
            .filter(|r| !r.accepted)
            .map(|r| json!({ "invitation": invitation_view(&w, r, &self.url()) }))
            .collect();
        reply(
            StatusCode::OK,
            json!({ "elements": elements, "paging": { "start": 0, "count": elements.len() } }),
        )
    }

    fn accept_invitation(&self, username: &str, id: &str, call: &Call) -> Response<Body> {
        let Ok(v) = serde_json::from_slice::<Value>(&call.body) else {
            return reply(StatusCode::BAD_REQUEST, json!({"status": 400}));
        };
        if call.query.get("action").map(String::as_str) != Some("accept") {
            return reply(StatusCode::BAD_REQUEST, json!({"status": 400}));
        }
        let mut w = self.world();
        let Some(a) = w.accounts.get_mut(username) else {
            return reply(StatusCode::UNAUTHORIZED, json!({"status": 401}));
        };
        let Some(r) = a.received.iter_mut().find(|r| r.id == id) else {
            return reply(StatusCode::NOT_FOUND, json!({"status": 404}));
        };
        if v["invitationSharedSecret"].as_str() != Some(r.secret.as_str()) {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"status": 400, "message": "bad shared secret"}),
            );
        }
        r.accepted = true;
        reply(StatusCode::OK, json!({}))
    }

    fn profile(&self, call: &Call) -> Response<Body> {
        let id = call
            .query
            .get("memberIdentity")
            .cloned()
            .unwrap_or_default();
        let w = self.world();
        let found = w
            .member_by_public(&id)
            .or_else(|| w.members.get(id.trim_start_matches("urn:li:fsd_profile:")));
        let elements: Vec<Value> = found.map(|m| self.member_json(m)).into_iter().collect();
        reply(StatusCode::OK, json!({ "elements": elements }))
    }

    fn realtime(&self, call: &Call) -> Response<Body> {
        let username = match self.session_of(call) {
            Ok(u) => u,
            Err(r) => return r,
        };
        if !header(&call.headers, "accept").contains("text/event-stream")
            || header(&call.headers, "x-li-realtime-session").is_empty()
        {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"status": 400, "message": "not a realtime request"}),
            );
        }
        if let Some(r) = self.gate(&username, call) {
            return r;
        }
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        let hello = json!({ "com.linkedin.realtimefrontend.ClientConnection": {
            "id": format!("{:016x}", rand_u64()),
            "personalTopics": ["messagesTopic", "conversationsTopic", "invitationsTopic"],
        }});
        {
            let mut w = self.world();
            if let Some(a) = w.accounts.get_mut(&username) {
                if a.stall_until.is_none_or(|t| Instant::now() >= t) {
                    let _ = tx.try_send(Bytes::from(format!("data: {hello}\n\n")));
                }
                a.streams.push(tx);
            }
        }
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(BodyExt::boxed_unsync(StreamBody::new(stream.boxed())))
            .unwrap_or_default()
    }

    fn track(&self, call: &Call) -> Response<Body> {
        let v: Value = serde_json::from_slice(&call.body).unwrap_or_default();
        if self.config.refuse_robots && v["webdriver"].as_bool() == Some(true) {
            let who = self.session_of(call).ok();
            let mut w = self.world();
            w.refused.push("navigator.webdriver".into());
            if let Some(a) = who.and_then(|u| w.accounts.get_mut(&u)) {
                a.flagged = true;
            }
        }
        reply(StatusCode::OK, json!({}))
    }

    fn app_page(&self, call: &Call, path: &str) -> Response<Body> {
        if self.session_of(call).is_err() {
            return redirect(&format!("/authwall?sessionRedirect={path}"), &[]);
        }
        let build = self.world().build;
        let page = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Messaging | LinkedIn</title>\
             <script src=\"/static/app.{build}.js\" defer></script></head>\
             <body class=\"render-mode-BIGPIPE\"><header class=\"global-nav\"><a class=\"global-nav__me\" href=\"/in/me/\">Me</a></header>\
             <main class=\"scaffold-layout\" id=\"main\"><h2 class=\"msg-overlay-bubble-header\">Messaging</h2></main>\
             <script>fetch('/li/track',{{method:'POST',credentials:'include',headers:{{'content-type':'application/json'}},\
             body:JSON.stringify({{webdriver:navigator.webdriver===true,ua:navigator.userAgent}})}});</script></body></html>"
        );
        html(StatusCode::OK, &page, &[])
    }

    fn bundle(&self) -> Response<Body> {
        let (conversations, messages) = self.world().query_ids();
        let js = format!(
            "(self.webpackChunk=self.webpackChunk||[]).push([[4711],{{9021:function(e,t,n){{\"use strict\";\
             const r={{conversations:{{queryId:\"{conversations}\",name:\"messengerConversations\"}},\
             messages:{{queryId:\"{messages}\",name:\"messengerMessages\"}}}};n.d(t,{{Z:()=>r}})}}}}]);"
        );
        Response::builder()
            .header("content-type", "application/javascript")
            .body(Full::new(Bytes::from(js)).boxed_unsync())
            .unwrap_or_default()
    }

    fn login_page(&self, call: &Call, error: Option<&str>) -> Response<Body> {
        let bcookie = call
            .cookies
            .get("bcookie")
            .cloned()
            .unwrap_or_else(|| format!("v=2&{:016x}", rand_u64()));
        let jsession =
            call.cookies.get("JSESSIONID").cloned().unwrap_or_else(|| {
                format!("\"ajax:{:019}\"", rand_u64() % 10_000_000_000_000_000_000)
            });
        let error = error.map_or(String::new(), |e| {
            format!("<div id=\"error-for-password\" class=\"form__label--error\" role=\"alert\">{e}</div>")
        });
        let page = format!(
            "<!doctype html><html><head><title>LinkedIn Login, Sign in | LinkedIn</title></head><body>\
             <main class=\"app__content\"><h1 class=\"header__content__heading\">Sign in</h1>\
             <form class=\"login__form\" action=\"/checkpoint/lg/login-submit\" method=\"post\" novalidate>\
             <input name=\"loginCsrfParam\" value=\"{csrf}\" type=\"hidden\">\
             <input id=\"username\" name=\"session_key\" type=\"email\" autocomplete=\"username\" aria-label=\"Email or phone\">\
             <input id=\"password\" name=\"session_password\" type=\"password\" autocomplete=\"current-password\" aria-label=\"Password\">\
             {error}<button class=\"btn__primary--large from__button--floating\" type=\"submit\" aria-label=\"Sign in\">Sign in</button>\
             </form></main></body></html>",
            csrf = html_escape(bcookie.trim_start_matches("v=2&")),
        );
        html(
            StatusCode::OK,
            &page,
            &[
                format!("bcookie={bcookie}; Path=/"),
                format!("JSESSIONID={jsession}; Path=/"),
            ],
        )
    }

    fn login_submit(&self, call: &Call) -> Response<Body> {
        let form: HashMap<String, String> =
            form_urlencoded::parse(&call.body).into_owned().collect();
        let expected = call
            .cookies
            .get("bcookie")
            .map(|b| b.trim_start_matches("v=2&").to_owned());
        if expected.is_none() || form.get("loginCsrfParam") != expected.as_ref() {
            return html(
                StatusCode::FORBIDDEN,
                "<!doctype html><title>LinkedIn</title><p>Something went wrong (CSRF).</p>",
                &[],
            );
        }
        if self.config.refuse_robots && call.user_agent.contains("HeadlessChrome") {
            self.world().refused.push("user agent header".into());
            return denied(999);
        }
        let user = form.get("session_key").cloned().unwrap_or_default();
        let pass = form.get("session_password").cloned().unwrap_or_default();
        let mut w = self.world();
        let Some(a) = w.accounts.get(&user) else {
            drop(w);
            return self.login_page(call, Some("Couldn’t find a LinkedIn account associated with this email. Please try again."));
        };
        if a.password != pass {
            drop(w);
            return self.login_page(
                call,
                Some("That’s not the right password. Try again or sign in with a one-time link."),
            );
        }
        match a.challenge.clone() {
            None => {
                let li_at = w.token("AQEDA");
                w.cookies.insert(
                    li_at.clone(),
                    Cookie {
                        username: user,
                        user_agent: call.user_agent.clone(),
                    },
                );
                redirect("/feed/", &[format!("li_at={li_at}; Path=/; HttpOnly")])
            }
            Some(kind) => {
                let flow = w.token("AQH");
                let code = format!("{:06}", rand_u64() % 1_000_000);
                w.flows.insert(
                    flow.clone(),
                    Flow {
                        username: user,
                        kind,
                        code,
                        issued: Instant::now(),
                        approved: false,
                    },
                );
                redirect(&format!("/checkpoint/challenge/{flow}"), &[])
            }
        }
    }

    fn challenge_page(&self, flow_id: &str, error: Option<&str>) -> Response<Body> {
        let w = self.world();
        let Some(flow) = w.flows.get(flow_id) else {
            return redirect("/login", &[]);
        };
        let masked = |s: &str| {
            let (name, domain) = s.split_once('@').unwrap_or((s, "example.com"));
            format!("{}•••••@{domain}", name.chars().next().unwrap_or('x'))
        };
        let error = error.map_or(String::new(), |e| {
            format!("<div class=\"body__banner--error\" role=\"alert\"><span>{e}</span></div>")
        });
        let hidden = |ty: &str| {
            format!(
                "<input type=\"hidden\" name=\"challengeId\" value=\"{flow_id}\">\
                 <input type=\"hidden\" name=\"challengeType\" value=\"{ty}\">\
                 <input type=\"hidden\" name=\"csrfToken\" value=\"ajax:{:019}\">",
                rand_u64() % 10_000_000_000_000_000_000
            )
        };
        let pin_form = |form_id: &str, ty: &str, input_id: &str, heading: &str, subtitle: &str| {
            format!(
                "<main class=\"app__content\"><h1>{heading}</h1><p class=\"form__subtitle\">{subtitle}</p>{error}\
                 <form id=\"{form_id}\" class=\"pin-verification-form\" action=\"/checkpoint/challenge/verify\" method=\"post\">{}\
                 <input id=\"{input_id}\" name=\"pin\" class=\"form__input--text\" type=\"text\" maxlength=\"6\" inputmode=\"numeric\" autocomplete=\"one-time-code\">\
                 <button id=\"{}-submit-button\" class=\"form__submit\" type=\"submit\">Submit</button></form></main>",
                hidden(ty),
                form_id.trim_end_matches("-challenge")
            )
        };
        let body = match flow.kind.as_str() {
            "email" => pin_form(
                "email-pin-challenge",
                "EMAIL_PIN",
                "input__email_verification_pin",
                "Let’s do a quick security check",
                &format!(
                    "The verification code was sent to {}",
                    masked(&flow.username)
                ),
            ),
            "sms" => pin_form(
                "phone-pin-challenge",
                "SMS_PIN",
                "input__phone_verification_pin",
                "Enter the code we’ve sent to your phone",
                "We’ve sent a 6-digit code to +33 •• •• •• 12",
            ),
            "two_factor" => pin_form(
                "two-step-challenge",
                "AUTHENTICATOR_APP",
                "input__phone_verification_pin",
                "Enter the code from your authenticator app",
                "Two-step verification is on for this account",
            ),
            "app" => format!(
                "<main class=\"app__content\"><h1 class=\"header__content__heading\">Check your LinkedIn app</h1>\
                 <p class=\"form__subtitle\">We sent a notification to your signed-in devices. Open your LinkedIn app and tap Yes to confirm your sign-in attempt.</p>\
                 <code id=\"flavour\" style=\"display:none\">CONSUMER_LOGIN</code>\
                 <code id=\"pollingFrequencyInSeconds\" style=\"display:none\">{poll}</code>\
                 <code id=\"totalPollingTimeInSeconds\" style=\"display:none\">{total}</code>\
                 <form id=\"in-app-challenge\" action=\"/checkpoint/challenge/verifyV2\" method=\"post\">{}\
                 <input type=\"hidden\" name=\"userResponse\" value=\"\"><input type=\"hidden\" name=\"recognizedDevice\" value=\"\"></form>\
                 <script>(function poll(){{fetch('/checkpoint/challengesV2/poll/{flow_id}',{{method:'POST',credentials:'include',headers:{{'X-Requested-With':'XMLHttpRequest'}}}})\
                 .then(r=>r.json()).then(s=>{{if(s.pollingResponseChallengeStateV2==='SOLVED'){{const f=document.getElementById('in-app-challenge');\
                 f.recognizedDevice.value='true';f.submit()}}else{{setTimeout(poll,{poll}*1000)}}}}).catch(()=>setTimeout(poll,{poll}*1000))}})();</script></main>",
                hidden("IN_APP_VALIDATION"),
                poll = self.config.approval_poll.as_secs().max(1),
                total = self.config.challenge_ttl.as_secs(),
            ),
            _ => format!(
                "<main class=\"app__content\"><h1>Let’s do a quick security check</h1>\
                 <form id=\"captcha-challenge\" action=\"/checkpoint/challenge/verify\" method=\"post\">{}\
                 <iframe id=\"captcha-internal\" title=\"Captcha\" src=\"about:blank\"></iframe></form></main>",
                hidden("CAPTCHA")
            ),
        };
        let expired = flow.issued.elapsed() > self.config.challenge_ttl;
        let body = if expired && error.is_empty() {
            "<main class=\"app__content\"><h1>This verification has expired</h1>\
             <p class=\"form__subtitle\" id=\"challenge-expired\">The code you were sent is no longer valid. Please sign in again.</p>\
             <a href=\"/login\">Sign in</a></main>"
                .to_owned()
        } else {
            body
        };
        html(
            StatusCode::OK,
            &format!(
                "<!doctype html><html><head><title>Security Verification | LinkedIn</title></head><body>{body}</body></html>"
            ),
            &[],
        )
    }

    fn approval_poll(&self, flow_id: &str) -> Response<Body> {
        let w = self.world();
        let state = match w.flows.get(flow_id) {
            Some(f) if f.issued.elapsed() > self.config.challenge_ttl => "EXPIRED",
            Some(f) if f.approved => "SOLVED",
            Some(_) => "SHOWN",
            None => "EXPIRED",
        };
        reply(
            StatusCode::OK,
            json!({ "pollingResponseChallengeStateV2": state }),
        )
    }

    /// The in-app challenge's form, sent once the member approved.
    fn verify_in_app(&self, call: &Call) -> Response<Body> {
        let form: HashMap<String, String> =
            form_urlencoded::parse(&call.body).into_owned().collect();
        let flow_id = form.get("challengeId").cloned().unwrap_or_default();
        let mut w = self.world();
        let approved = w
            .flows
            .get(&flow_id)
            .is_some_and(|f| f.approved && f.issued.elapsed() <= self.config.challenge_ttl);
        if !approved {
            drop(w);
            return self.challenge_page(&flow_id, None);
        }
        let flow = w.flows.remove(&flow_id).expect("looked up above");
        let li_at = w.token("AQEDA");
        w.cookies.insert(
            li_at.clone(),
            Cookie {
                username: flow.username,
                user_agent: call.user_agent.clone(),
            },
        );
        redirect("/feed/", &[format!("li_at={li_at}; Path=/; HttpOnly")])
    }

    fn verify(&self, call: &Call) -> Response<Body> {
        let form: HashMap<String, String> =
            form_urlencoded::parse(&call.body).into_owned().collect();
        let flow_id = form.get("challengeId").cloned().unwrap_or_default();
        let mut w = self.world();
        let Some(flow) = w.flows.get(&flow_id) else {
            return redirect("/login", &[]);
        };
        if flow.issued.elapsed() > self.config.challenge_ttl {
            drop(w);
            return self.challenge_page(&flow_id, None);
        }
        if form.get("pin").map(|p| p.trim()) != Some(flow.code.as_str()) {
            drop(w);
            return self.challenge_page(&flow_id, Some("The verification code you entered isn’t valid. Please check the code and try again."));
        }
        let flow = w.flows.remove(&flow_id).expect("looked up above");
        let li_at = w.token("AQEDA");
        w.cookies.insert(
            li_at.clone(),
            Cookie {
                username: flow.username,
                user_agent: call.user_agent.clone(),
            },
        );
        redirect("/feed/", &[format!("li_at={li_at}; Path=/; HttpOnly")])
    }

    fn control(&self, method: &Method, path: &str, call: &Call) -> Response<Body> {
        let v: Value = if call.body.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(&call.body) {
                Ok(v) => v,
                Err(e) => return reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
            }
        };
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let user = if method == Method::GET {
            call.query.get("username").cloned().unwrap_or_default()
        } else {
            s("username")
        };
        let found = |ok: bool| {
            if ok {
                reply(StatusCode::OK, json!({}))
            } else {
                reply(
                    StatusCode::NOT_FOUND,
                    json!({"error": "no such account, member or invitation"}),
                )
            }
        };
        let secs = |k: &str| Duration::from_secs(v.get(k).and_then(Value::as_u64).unwrap_or(30));
        match (method.clone(), path) {
            (Method::POST, "accounts") => {
                let public = v.get("public_id").and_then(Value::as_str).map_or_else(
                    || format!("{}-{}", s("first"), s("last")).to_lowercase(),
                    str::to_owned,
                );
                let challenge = v.get("challenge").and_then(Value::as_str);
                let member = self.add_account(&user, &s("password"), &public, challenge);
                {
                    let mut w = self.world();
                    if let Some(m) = w.members.get_mut(&member) {
                        if !s("first").is_empty() {
                            m.first = s("first");
                        }
                        if !s("last").is_empty() {
                            m.last = s("last");
                        }
                    }
                }
                reply(
                    StatusCode::OK,
                    json!({"member_urn": profile_urn(&member), "public_id": public}),
                )
            }
            (Method::POST, "cookies") => match self.cookies(&user, &s("user_agent")) {
                Some((li_at, jsessionid)) => reply(
                    StatusCode::OK,
                    json!({"li_at": li_at, "jsessionid": jsessionid}),
                ),
                None => found(false),
            },
            (Method::GET, "code") => match self.code(&user) {
                Some(code) => reply(StatusCode::OK, json!({"code": code})),
                None => found(false),
            },
            (Method::POST, "approve") => found(self.approve(&user)),
            (Method::POST, "inbound") => {
                let first = v.get("first").and_then(Value::as_str);
                let last = v.get("last").and_then(Value::as_str);
                match self.deliver(&user, &s("from"), &s("text"), first, last) {
                    Some(urn) => reply(StatusCode::OK, json!({"urn": urn})),
                    None => found(false),
                }
            }
            (Method::POST, "invite") => {
                match self.invite(&user, &s("from"), v.get("message").and_then(Value::as_str)) {
                    Some(urn) => reply(StatusCode::OK, json!({"urn": urn})),
                    None => found(false),
                }
            }
            (Method::POST, "accept") => found(self.accept(&user, &s("invitee"))),
            (Method::POST, "stall") => {
                self.stall(&user, secs("seconds"));
                found(true)
            }
            (Method::POST, "build") => {
                let (c, m) = self.new_build();
                reply(StatusCode::OK, json!({"conversations": c, "messages": m}))
            }
            (Method::POST, "throttle") => {
                let status = v.get("status").and_then(Value::as_u64).unwrap_or(999) as u16;
                self.throttle(&user, status, secs("seconds"));
                found(true)
            }
            (Method::POST, "thresholds") => {
                let n = |k: &str| v.get(k).and_then(Value::as_u64).map(|n| n as u32);
                self.thresholds(&user, n("requests_per_minute"), n("invitations_per_day"));
                found(true)
            }
            (Method::GET, "sent") => reply(StatusCode::OK, json!(self.sent(&user))),
            (Method::GET, "invitations") => reply(StatusCode::OK, json!(self.invitations(&user))),
            (Method::GET, "state") => {
                let w = self.world();
                let (c, m) = w.query_ids();
                reply(
                    StatusCode::OK,
                    json!({
                        "accounts": w.accounts.keys().collect::<Vec<_>>(),
                        "sessions": w.cookies.len(),
                        "refused": w.refused,
                        "query_ids": [c, m],
                    }),
                )
            }
            _ => reply(StatusCode::NOT_FOUND, json!({"error": "not found"})),
        }
    }
}

/// What a request brought, read once.
struct Call {
    cookies: HashMap<String, String>,
    user_agent: String,
    headers: http::HeaderMap,
    query: HashMap<String, String>,
    raw_query: String,
    body: Bytes,
}

fn header(h: &http::HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn parse_cookies(h: &http::HeaderMap) -> HashMap<String, String> {
    h.get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// One variable of a Rest.li `variables=(a:x,b:y)` list (values URL-encoded inside).
fn restli_var(vars: &str, name: &str) -> Option<String> {
    let inner = vars.strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').find_map(|kv| {
        let (k, v) = kv.split_once(':')?;
        (k == name).then(|| {
            form_urlencoded::parse(format!("v={}", v.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
    })
}

fn realtime_event(topic: &str, data: Value) -> Value {
    json!({ "com.linkedin.realtimefrontend.DecoratedEvent": {
        "topic": format!("urn:li-realtime:{topic}:urn:li-realtime:myself"),
        "id": format!("{:016x}", rand_u64()),
        "leftServerAt": now_ms(),
        "payload": { "data": data, "$type": "com.linkedin.realtimefrontend.DecoratedEventPayload" },
    }})
}

fn invitation_view(w: &World, r: &Received, base: &str) -> Value {
    let from = w.members.get(&r.from);
    json!({
        "entityUrn": format!("urn:li:fsd_invitation:{}", r.id),
        "invitationId": r.id,
        "sharedSecret": r.secret,
        "invitationType": "CONNECTION",
        "sentTime": r.at_ms,
        "message": r.message,
        "fromMember": from.map(|m| json!({
            "entityUrn": profile_urn(&m.id),
            "publicIdentifier": m.public_id,
            "firstName": m.first,
            "lastName": m.last,
            "profileUrl": format!("{base}in/{}/", m.public_id),
        })),
    })
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

fn with_cookies(mut r: Response<Body>, cookies: &[String]) -> Response<Body> {
    for c in cookies {
        if let Ok(v) = http::HeaderValue::from_str(c) {
            r.headers_mut().append(http::header::SET_COOKIE, v);
        }
    }
    r
}

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body.to_string())).boxed_unsync())
        .unwrap_or_default()
}

fn html(status: StatusCode, page: &str, cookies: &[String]) -> Response<Body> {
    let r = Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(page.to_owned())).boxed_unsync())
        .unwrap_or_default();
    with_cookies(r, cookies)
}

fn redirect(to: &str, cookies: &[String]) -> Response<Body> {
    let r = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header("location", to)
        .body(Full::new(Bytes::new()).boxed_unsync())
        .unwrap_or_default();
    with_cookies(r, cookies)
}

/// LinkedIn's refusals: 999 ("request denied", seen as a robot) and 429.
fn denied(status: u16) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    Response::builder()
        .status(code)
        .header("content-type", "text/html")
        .body(
            Full::new(Bytes::from_static(
                b"<html><body>Request denied</body></html>",
            ))
            .boxed_unsync(),
        )
        .unwrap_or_default()
}
