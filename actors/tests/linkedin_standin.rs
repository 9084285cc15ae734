//! The stand-in LinkedIn over plain HTTP: that it keeps the real site's rules (csrf,
//! cookies bound to a browser, checkpoints, query ids of the current build, the
//! realtime stream, invitation errors, 999 for robots) before any driver meets it.
#![cfg(feature = "testkit")]

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use std::collections::HashMap;
use std::time::Duration;
use switchboard_actors::testkit::linkedin::{LinkedInStandin, StandinConfig};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

struct Browser {
    http: reqwest::Client,
    base: String,
    jar: HashMap<String, String>,
    ua: String,
}

impl Browser {
    fn new(standin: &LinkedInStandin, ua: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: standin.url(),
            jar: HashMap::new(),
            ua: ua.to_owned(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (kv, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_owned(), v.to_owned());
            }
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> reqwest::Response {
        let csrf = self
            .jar
            .get("JSESSIONID")
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        let r = req
            .header("user-agent", &self.ua)
            .header("cookie", self.cookie_header())
            .header("csrf-token", csrf)
            .header("x-restli-protocol-version", "2.0.0")
            .send()
            .await
            .unwrap();
        self.keep(&r);
        r
    }

    async fn get(&mut self, path: &str) -> reqwest::Response {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    async fn form(&mut self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(req).await
    }

    async fn json(&mut self, path: &str, body: serde_json::Value) -> reqwest::Response {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body.to_string());
        self.send(req).await
    }
}

fn hidden(page: &str, name: &str) -> String {
    let at = page.find(&format!("name=\"{name}\" value=\"")).unwrap();
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

async fn standin(config: StandinConfig) -> LinkedInStandin {
    LinkedInStandin::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

#[tokio::test]
async fn password_login_meets_an_email_checkpoint_and_a_wrong_pin_is_refused() {
    let s = standin(StandinConfig::default()).await;
    s.add_account("jane@example.com", "pw", "jane-doe", Some("email"));
    let mut b = Browser::new(&s, UA);
    let page = b.get("login").await.text().await.unwrap();
    let csrf = hidden(&page, "loginCsrfParam");
    let wrong = b
        .form(
            "checkpoint/lg/login-submit",
            &[
                ("loginCsrfParam", &csrf),
                ("session_key", "jane@example.com"),
                ("session_password", "nope"),
            ],
        )
        .await;
    assert!(wrong.text().await.unwrap().contains("error-for-password"));
    let r = b
        .form(
            "checkpoint/lg/login-submit",
            &[
                ("loginCsrfParam", &csrf),
                ("session_key", "jane@example.com"),
                ("session_password", "pw"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let challenge = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        challenge.starts_with("/checkpoint/challenge/"),
        "{challenge}"
    );
    let page = b.get(&challenge[1..]).await.text().await.unwrap();
    assert!(
        page.contains("id=\"email-pin-challenge\"")
            && page.contains("input__email_verification_pin")
    );
    assert!(page.contains("j•••••@example.com"), "{page}");
    let id = hidden(&page, "challengeId");
    let bad = b
        .form(
            "checkpoint/challenge/verify",
            &[("challengeId", &id), ("pin", "000000x")],
        )
        .await;
    assert!(bad.text().await.unwrap().contains("isn’t valid"));
    assert!(!b.jar.contains_key("li_at"));
    let code = s.code("jane@example.com").unwrap();
    let ok = b
        .form(
            "checkpoint/challenge/verify",
            &[("challengeId", &id), ("pin", &code)],
        )
        .await;
    assert_eq!(ok.headers()["location"], "/feed/");
    assert!(b.jar.contains_key("li_at"));
    let me: serde_json::Value = b
        .get("voyager/api/me")
        .await
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(me["miniProfile"]["publicIdentifier"], "jane-doe");
}

#[tokio::test]
async fn in_app_approval_is_polled_and_an_expired_pin_cannot_be_used() {
    let s = standin(StandinConfig {
        challenge_ttl: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    s.add_account("app@example.com", "pw", "app-user", Some("app"));
    s.add_account("late@example.com", "pw", "late-user", Some("sms"));
    let mut b = Browser::new(&s, UA);
    let csrf = hidden(
        &b.get("login").await.text().await.unwrap(),
        "loginCsrfParam",
    );
    let r = b
        .form(
            "checkpoint/lg/login-submit",
            &[
                ("loginCsrfParam", &csrf),
                ("session_key", "app@example.com"),
                ("session_password", "pw"),
            ],
        )
        .await;
    let page = b
        .get(&r.headers()["location"].to_str().unwrap()[1..])
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"in-app-challenge\"") && page.contains("pollingFrequencyInSeconds"));
    let id = hidden(&page, "challengeId");
    let poll = format!("checkpoint/challengesV2/poll/{id}");
    let state: serde_json::Value = b
        .json(&poll, serde_json::json!({}))
        .await
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(state["pollingResponseChallengeStateV2"], "SHOWN");
    assert!(s.approve("app@example.com"));
    let state: serde_json::Value = b
        .json(&poll, serde_json::json!({}))
        .await
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(state["pollingResponseChallengeStateV2"], "SOLVED");
    let done = b
        .form(
            "checkpoint/challenge/verifyV2",
            &[("challengeId", &id), ("recognizedDevice", "true")],
        )
        .await;
    assert_eq!(done.headers()["location"], "/feed/");

    let mut late = Browser::new(&s, UA);
    let csrf = hidden(
        &late.get("login").await.text().await.unwrap(),
        "loginCsrfParam",
    );
    let r = late
        .form(
            "checkpoint/lg/login-submit",
            &[
                ("loginCsrfParam", &csrf),
                ("session_key", "late@example.com"),
                ("session_password", "pw"),
            ],
        )
        .await;
    let page = late
        .get(&r.headers()["location"].to_str().unwrap()[1..])
        .await
        .text()
        .await
        .unwrap();
    let id = hidden(&page, "challengeId");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let code = s.code("late@example.com").unwrap();
    let expired = late
        .form(
            "checkpoint/challenge/verify",
            &[("challengeId", &id), ("pin", &code)],
        )
        .await;
    assert!(expired.text().await.unwrap().contains("challenge-expired"));
    assert!(!late.jar.contains_key("li_at"));
}

#[tokio::test]
async fn the_api_checks_csrf_and_revokes_a_cookie_used_from_another_browser() {
    let s = standin(StandinConfig::default()).await;
    s.add_account("jane@example.com", "pw", "jane-doe", None);
    let (li_at, jsessionid) = s.cookies("jane@example.com", UA).unwrap();
    let mut b = Browser::new(&s, UA);
    b.jar.insert("li_at".into(), li_at.clone());
    b.jar.insert("JSESSIONID".into(), jsessionid.clone());
    assert_eq!(b.get("voyager/api/me").await.status(), StatusCode::OK);
    let no_csrf = b
        .http
        .get(format!("{}voyager/api/me", s.url()))
        .header("user-agent", UA)
        .header("cookie", b.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    let mut other = Browser::new(
        &s,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/140.0",
    );
    other.jar.insert("li_at".into(), li_at);
    other.jar.insert("JSESSIONID".into(), jsessionid);
    let r = other.get("voyager/api/me").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(!other.jar.contains_key("li_at"), "li_at=delete me");
    // Revoked for the browser that had it too.
    assert_eq!(
        b.get("voyager/api/me").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A headless user agent is a robot: 999.
    let (li_at, jsessionid) = s.cookies("jane@example.com", "HeadlessChrome/156").unwrap();
    let mut robot = Browser::new(&s, "HeadlessChrome/156");
    robot.jar.insert("li_at".into(), li_at);
    robot.jar.insert("JSESSIONID".into(), jsessionid);
    assert_eq!(robot.get("voyager/api/me").await.status().as_u16(), 999);
}

#[tokio::test]
async fn messaging_uses_the_current_builds_query_ids_and_a_sync_token() {
    let s = standin(StandinConfig::default()).await;
    let me = s.add_account("jane@example.com", "pw", "jane-doe", None);
    let (li_at, jsessionid) = s.cookies("jane@example.com", UA).unwrap();
    let mut b = Browser::new(&s, UA);
    b.jar.insert("li_at".into(), li_at);
    b.jar.insert("JSESSIONID".into(), jsessionid);
    let page = b.get("messaging/").await.text().await.unwrap();
    let bundle = &page[page.find("/static/app.").unwrap() + 1..];
    let bundle = &bundle[..bundle.find('"').unwrap()];
    let js = b.get(bundle).await.text().await.unwrap();
    let (conversations, _) = s.query_ids();
    assert!(js.contains(&conversations));
    let mailbox = format!("urn%3Ali%3Afsd_profile%3A{me}");
    let list = |qid: &str, vars: String| {
        format!("voyager/api/voyagerMessagingGraphQL/graphql?queryId={qid}&variables={vars}")
    };
    let first: serde_json::Value = b
        .get(&list(&conversations, format!("(mailboxUrn:{mailbox})")))
        .await
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    let token = first["data"]["messengerConversationsByCategory"]["metadata"]["newSyncToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let urn = s
        .inbound("jane@example.com", "ann-lee", "hello there")
        .unwrap();
    let changed: serde_json::Value = b
        .get(&list(
            &conversations,
            format!("(mailboxUrn:{mailbox},syncToken:{token})"),
        ))
        .await
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    let convs = &changed["data"]["messengerConversationsBySyncToken"]["elements"];
    assert_eq!(convs.as_array().unwrap().len(), 1);
    assert_eq!(
        convs[0]["messages"]["elements"][0]["entityUrn"],
        urn.as_str()
    );
    assert_eq!(
        convs[0]["messages"]["elements"][0]["sender"]["participantType"]["member"]["firstName"]["text"],
        "Ann"
    );
    // A new build: the old query id is refused.
    let (new_conversations, _) = s.new_build();
    assert_ne!(new_conversations, conversations);
    let old = b
        .get(&list(&conversations, format!("(mailboxUrn:{mailbox})")))
        .await;
    assert_eq!(old.status(), StatusCode::BAD_REQUEST);
    // Sending into the conversation; the answer names the message.
    let conv = convs[0]["entityUrn"].as_str().unwrap().to_owned();
    let sent: serde_json::Value = b
        .json(
            "voyager/api/voyagerMessagingDashMessengerMessages?action=createMessage",
            serde_json::json!({
                "message": { "body": { "text": "hi Ann", "attributes": [] }, "renderContentUnions": [],
                             "conversationUrn": conv, "originToken": "6a1f0c1e-0000-4000-8000-000000000001" },
                "mailboxUrn": format!("urn:li:fsd_profile:{me}"),
                "trackingId": "abcdefghijklmnop",
                "dedupeByClientGeneratedToken": false,
            }),
        )
        .await
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        sent["value"]["entityUrn"]
            .as_str()
            .unwrap()
            .starts_with("urn:li:msg_message:")
    );
    assert_eq!(s.sent("jane@example.com")[0].to, "ann-lee");
}

#[tokio::test]
async fn realtime_streams_events_and_a_stalled_stream_goes_silent() {
    let s = standin(StandinConfig {
        heartbeat: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    s.add_account("jane@example.com", "pw", "jane-doe", None);
    let (li_at, jsessionid) = s.cookies("jane@example.com", UA).unwrap();
    let mut b = Browser::new(&s, UA);
    b.jar.insert("li_at".into(), li_at);
    b.jar.insert("JSESSIONID".into(), jsessionid);
    let refused = b.get("realtime/connect?rc=1").await;
    assert_eq!(
        refused.status(),
        StatusCode::BAD_REQUEST,
        "no realtime session id"
    );
    let req = b
        .http
        .get(format!("{}realtime/connect?rc=1", s.url()))
        .header("accept", "text/event-stream")
        .header(
            "x-li-realtime-session",
            "3f1e6a52-0000-4000-8000-000000000001",
        );
    let mut stream = b.send(req).await;
    assert_eq!(stream.status(), StatusCode::OK);
    let mut seen = String::new();
    let read_until =
        async |stream: &mut reqwest::Response, want: &str, seen: &mut String, secs: u64| {
            tokio::time::timeout(Duration::from_secs(secs), async {
                while !seen.contains(want) {
                    let chunk = stream.chunk().await.unwrap().unwrap();
                    seen.push_str(std::str::from_utf8(&chunk).unwrap());
                }
            })
            .await
            .is_ok()
        };
    assert!(read_until(&mut stream, "ClientConnection", &mut seen, 5).await);
    assert!(read_until(&mut stream, "Heartbeat", &mut seen, 5).await);
    s.inbound("jane@example.com", "ann-lee", "over the stream");
    assert!(read_until(&mut stream, "over the stream", &mut seen, 5).await);
    assert!(seen.contains("urn:li-realtime:messagesTopic:urn:li-realtime:myself"));
    s.invite("jane@example.com", "bob-smith", Some("Let's connect"));
    assert!(read_until(&mut stream, "INVITATION_RECEIVED", &mut seen, 5).await);
    s.stall("jane@example.com", Duration::from_secs(3));
    seen.clear();
    s.inbound("jane@example.com", "ann-lee", "during the stall");
    // Nothing at all while stalled (not even heartbeats), and what happened meanwhile
    // is never pushed: only a sync-token catch-up finds it.
    assert!(
        !read_until(&mut stream, "data:", &mut seen, 2).await,
        "{seen}"
    );
    assert!(!read_until(&mut stream, "during the stall", &mut seen, 3).await);
}

#[tokio::test]
async fn invitations_refuse_a_second_one_and_too_many_look_like_a_robot() {
    let s = standin(StandinConfig {
        invitations_per_day: 2,
        ..Default::default()
    })
    .await;
    s.add_account("jane@example.com", "pw", "jane-doe", None);
    let (li_at, jsessionid) = s.cookies("jane@example.com", UA).unwrap();
    let mut b = Browser::new(&s, UA);
    b.jar.insert("li_at".into(), li_at);
    b.jar.insert("JSESSIONID".into(), jsessionid);
    let invite = |who: &str, note: &str| {
        serde_json::json!({
            "invitee": { "inviteeUnion": { "memberProfile": format!("urn:li:fsd_profile:{}", switchboard_actors::testkit::linkedin::member_id(who)) } },
            "customMessage": note,
        })
    };
    let path =
        "voyager/api/voyagerRelationshipsDashMemberRelationships?action=verifyQuotaAndCreateV2";
    // Members the network knows (they wrote to us).
    for who in ["ann-lee", "bob-smith", "cy-young"] {
        s.inbound("jane@example.com", who, "hi");
    }
    let long = "x".repeat(301);
    assert_eq!(
        b.json(path, invite("ann-lee", &long)).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        b.json(path, invite("ann-lee", "Hello Ann")).await.status(),
        StatusCode::OK
    );
    let again: serde_json::Value = b
        .json(path, invite("ann-lee", "Hello again"))
        .await
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(again["data"]["code"], "CANT_RESEND_YET");
    assert_eq!(
        b.json(path, invite("bob-smith", "")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        b.json(path, invite("cy-young", "")).await.status().as_u16(),
        999
    );
    assert_eq!(
        b.get("voyager/api/me").await.status().as_u16(),
        999,
        "flagged from then on"
    );
    assert_eq!(s.invitations("jane@example.com").len(), 2);
    assert!(s.denied("jane@example.com") >= 2);
}
