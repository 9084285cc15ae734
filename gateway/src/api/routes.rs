//! The route table: every route the API serves, with its access level and the words
//! the OpenAPI document uses. The router and `/v1/openapi.json` both read this table,
//! so a route cannot exist without being documented.

use http::Method;
use switchboard_actors::scopes::Scope;

/// Which handler a route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    Dashboard,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    CreateTenant,
    ListTenants,
    Cluster,
    GetTenant,
    UpdateTenant,
    DeleteTenant,
    CreateTenantKey,
    ListTenantKeys,
    RevokeTenantKey,
    Me,
    CreateOwnKey,
    ListOwnKeys,
    RevokeOwnKey,
    GetConsent,
    TenantAudit,
    AdminAudit,
    ExportContact,
    EraseContact,
    ShowUnsubscribe,
    Unsubscribe,
    PutConsent,
    CreateSuppression,
    ListSuppressions,
    DeleteSuppression,
    ImportSuppressions,
    CreateWebhook,
    ListWebhooks,
    GetWebhook,
    UpdateWebhook,
    DeleteWebhook,
    RotateWebhookSecret,
    TestWebhook,
    ReplayWebhook,
    ListEvents,
    GetEvent,
    ListEventAttempts,
    ReplayEvent,
    CreateSession,
    ListSessions,
    GetSession,
    DeleteSession,
    StartSession,
    StopSession,
    RestartSession,
    LogoutSession,
    FaultSession,
    SessionQr,
    PairingCode,
    SubmitChallenge,
    SendInvitation,
    AcceptInvitation,
    SessionProfile,
    SessionLimits,
    TestConnection,
    MessageAttachment,
    ReactToMessage,
    MarkChatRead,
    UploadMedia,
    GetMedia,
    SessionGroups,
    SessionContacts,
    SessionEvents,
    SendMessage,
    ListSessionMessages,
    GetMessage,
    SimInbound,
    GetReplySettings,
    PutReplySettings,
    CreateKbDocument,
    ListKbDocuments,
    DeleteKbDocument,
    SearchKb,
    ListDrafts,
    ApproveDraft,
    RejectDraft,
}

impl RouteId {
    /// The scope a key needs to call this route (tenant routes only; `None` for
    /// `/v1/me`, which any key may ask, and for public and admin routes).
    pub const fn scope(self) -> Option<Scope> {
        use Scope::*;
        Some(match self {
            Dashboard | Healthz | Readyz | Metrics | OpenApi | ShowUnsubscribe | Unsubscribe
            | CreateTenant | ListTenants | Cluster | AdminAudit | GetTenant | UpdateTenant
            | DeleteTenant | CreateTenantKey | ListTenantKeys | RevokeTenantKey | Me => {
                return None;
            }
            CreateOwnKey | ListOwnKeys | RevokeOwnKey => KeysManage,
            TenantAudit => AuditRead,
            GetConsent | PutConsent | ExportContact | EraseContact | CreateSuppression
            | ListSuppressions | DeleteSuppression | ImportSuppressions => ContactsManage,
            CreateWebhook | ListWebhooks | GetWebhook | UpdateWebhook | DeleteWebhook
            | RotateWebhookSecret | TestWebhook | ReplayWebhook | ReplayEvent => WebhooksManage,
            ListEvents | GetEvent | ListEventAttempts | SessionEvents => EventsRead,
            ListSessions | GetSession | SessionProfile | SessionLimits | TestConnection
            | SessionGroups | SessionContacts => SessionsRead,
            CreateSession | DeleteSession | StartSession | StopSession | RestartSession
            | LogoutSession | FaultSession | SessionQr | PairingCode | SubmitChallenge
            | SimInbound => SessionsWrite,
            SendMessage | ReactToMessage | MarkChatRead | SendInvitation | AcceptInvitation
            | UploadMedia => MessagesSend,
            ListSessionMessages | GetMessage | MessageAttachment | GetMedia => MessagesRead,
            GetReplySettings | ListKbDocuments | SearchKb => KbRead,
            PutReplySettings | CreateKbDocument | DeleteKbDocument => KbWrite,
            ListDrafts | ApproveDraft | RejectDraft => DraftsApprove,
        })
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// The admin token as `Authorization: Bearer`.
    Admin,
    /// A tenant API key as `X-API-Key` or `Authorization: Bearer`.
    Tenant,
}

#[derive(Debug)]
pub struct Route {
    pub method: Method,
    /// Path template; `{name}` matches one non-empty segment.
    pub path: &'static str,
    pub id: RouteId,
    pub access: Access,
    pub summary: &'static str,
    /// Name of the request body schema in the OpenAPI document, if any.
    pub request: Option<&'static str>,
    /// Success status and the name of its response schema (`None` = no body).
    pub success: (u16, Option<&'static str>),
    /// Query parameters the route accepts.
    pub query: &'static [&'static str],
}

const fn route(
    method: Method,
    path: &'static str,
    id: RouteId,
    access: Access,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        id,
        access,
        summary,
        request: None,
        success: (200, None),
        query: &[],
    }
}

const fn with(
    mut r: Route,
    request: Option<&'static str>,
    success: (u16, Option<&'static str>),
) -> Route {
    r.request = request;
    r.success = success;
    r
}

const fn queried(mut r: Route, query: &'static [&'static str]) -> Route {
    r.query = query;
    r
}

const fn paged(mut r: Route) -> Route {
    r.query = &["limit", "after"];
    r
}

const fn event_filters(mut r: Route) -> Route {
    r.query = &["limit", "after", "type", "since"];
    r
}

use Access::*;
use RouteId::*;

pub static ROUTES: &[Route] = &[
    with(
        route(
            Method::GET,
            "/",
            Dashboard,
            Public,
            "The pairing dashboard (HTML; it asks for an API key).",
        ),
        None,
        (200, Some("Html")),
    ),
    with(
        route(
            Method::GET,
            "/healthz",
            Healthz,
            Public,
            "Liveness: the process answers.",
        ),
        None,
        (200, Some("Health")),
    ),
    with(
        route(
            Method::GET,
            "/readyz",
            Readyz,
            Public,
            "Readiness: storage is reachable.",
        ),
        None,
        (200, Some("Health")),
    ),
    with(
        route(
            Method::GET,
            "/metrics",
            Metrics,
            Public,
            "Prometheus metrics (text format).",
        ),
        None,
        (200, Some("PrometheusText")),
    ),
    with(
        route(
            Method::GET,
            "/v1/openapi.json",
            OpenApi,
            Public,
            "This document.",
        ),
        None,
        (200, Some("OpenApi")),
    ),
    with(
        route(
            Method::GET,
            "/v1/unsubscribe/{token}",
            ShowUnsubscribe,
            Public,
            "The page behind an e-mail's `List-Unsubscribe` link: a button that posts to the same URL (fetching it unsubscribes nobody). 404 `unknown_link` for a token this gateway did not make.",
        ),
        None,
        (200, None),
    ),
    with(
        route(
            Method::POST,
            "/v1/unsubscribe/{token}",
            Unsubscribe,
            Public,
            "One-click unsubscribe (RFC 8058; body `List-Unsubscribe=One-Click`): the link's address goes on its tenant's suppression list for e-mail (source `list_unsubscribe`) with `contact.opted_out`. The same answer when it is listed already.",
        ),
        None,
        (200, None),
    ),
    with(
        route(
            Method::POST,
            "/v1/tenants",
            CreateTenant,
            Admin,
            "Create a tenant; returns its first API key once.",
        ),
        Some("CreateTenant"),
        (201, Some("CreatedTenant")),
    ),
    with(
        queried(
            route(
                Method::GET,
                "/v1/admin/audit",
                AdminAudit,
                Admin,
                "The whole audit log, oldest first (`limit`, `after`: cursor paging; `tenant_id` for one tenant's): who (`actor`: a key id, `admin`, `cli`), what (`action`), when, which `target`, from which request. Append-only.",
            ),
            &["limit", "after", "tenant_id"],
        ),
        None,
        (200, Some("AuditPage")),
    ),
    with(
        route(
            Method::GET,
            "/v1/cluster",
            Cluster,
            Admin,
            "The live replicas sharing this database, each with the sessions it holds the lease of (a replica that stopped heartbeating past the lease TTL is not listed; its sessions move to the others).",
        ),
        None,
        (200, Some("Cluster")),
    ),
    with(
        paged(route(
            Method::GET,
            "/v1/tenants",
            ListTenants,
            Admin,
            "List tenants (cursor paging).",
        )),
        None,
        (200, Some("TenantPage")),
    ),
    with(
        route(
            Method::GET,
            "/v1/tenants/{id}",
            GetTenant,
            Admin,
            "Get a tenant.",
        ),
        None,
        (200, Some("Tenant")),
    ),
    with(
        route(
            Method::PATCH,
            "/v1/tenants/{id}",
            UpdateTenant,
            Admin,
            "Rename, disable/enable, or change limits (null resets a limit to the default).",
        ),
        Some("UpdateTenant"),
        (200, Some("Tenant")),
    ),
    with(
        route(
            Method::DELETE,
            "/v1/tenants/{id}",
            DeleteTenant,
            Admin,
            "Delete a tenant and everything it owns.",
        ),
        None,
        (204, None),
    ),
    with(
        route(
            Method::POST,
            "/v1/tenants/{id}/keys",
            CreateTenantKey,
            Admin,
            "Create an API key for a tenant, with `scopes` (without them: every scope); the key is returned once.",
        ),
        Some("CreateKey"),
        (201, Some("CreatedKey")),
    ),
    with(
        route(
            Method::GET,
            "/v1/tenants/{id}/keys",
            ListTenantKeys,
            Admin,
            "List a tenant's API keys (never the keys themselves).",
        ),
        None,
        (200, Some("KeyList")),
    ),
    with(
        route(
            Method::DELETE,
            "/v1/tenants/{id}/keys/{key_id}",
            RevokeTenantKey,
            Admin,
            "Revoke a tenant's API key.",
        ),
        None,
        (204, None),
    ),
    with(
        route(
            Method::GET,
            "/v1/me",
            Me,
            Tenant,
            "The calling tenant: id, name, limits; and the calling key's id and scopes (no scope needed).",
        ),
        None,
        (200, Some("Me")),
    ),
    with(
        route(
            Method::POST,
            "/v1/keys",
            CreateOwnKey,
            Tenant,
            "Create another API key for the calling tenant, with `scopes` within the caller's own (without them: the caller's); returned once.",
        ),
        Some("CreateKey"),
        (201, Some("CreatedKey")),
    ),
    with(
        route(
            Method::GET,
            "/v1/keys",
            ListOwnKeys,
            Tenant,
            "List the calling tenant's API keys.",
        ),
        None,
        (200, Some("KeyList")),
    ),
    with(
        route(
            Method::DELETE,
            "/v1/keys/{key_id}",
            RevokeOwnKey,
            Tenant,
            "Revoke one of the calling tenant's API keys.",
        ),
        None,
        (204, None),
    ),
    with(
        route(
            Method::GET,
            "/v1/contacts/{address}/export",
            ExportContact,
            Tenant,
            "Everything the tenant holds about one contact (GDPR art. 15), as one JSON document: messages (text opened), events, drafts, media ids, suppression entries. `address` (percent-encoded) is a phone number, e-mail address or LinkedIn member, matched in its normal form on every channel. Audited (`contact.export`, the address as a hash).",
        ),
        None,
        (200, Some("ContactExport")),
    ),
    with(
        queried(
            route(
                Method::DELETE,
                "/v1/contacts/{address}",
                EraseContact,
                Tenant,
                "Erase a contact (GDPR art. 17): message bodies, extras, addresses and network ids removed, drafts and received files deleted, events re-sealed with their personal fields `[erased]` (ids, types, times kept). The address goes on the suppression list (source `erasure`) unless `suppress=false`. Webhooks already delivered are not recalled. Audited (`contact.erase`, the address as a hash).",
            ),
            &["suppress"],
        ),
        None,
        (200, Some("ContactErasure")),
    ),
    with(
        paged(route(
            Method::GET,
            "/v1/audit",
            TenantAudit,
            Tenant,
            "The calling tenant's audit log, oldest first (`limit`, `after`: cursor paging): who (`actor`, the key id), what, when, `target`, `request_id`. Every call of its keys is there (`action` = method and route, e.g. `POST /v1/sessions/{id}/messages`; `details.status`, and `details.error` when refused, `insufficient_scope` included; a contact's address only as a hash), next to the changes (`session.create`, `suppression.delete`, …). Call entries are written in batches, within a moment of the answer. Append-only.",
        )),
        None,
        (200, Some("AuditPage")),
    ),
    with(
        route(
            Method::GET,
            "/v1/consent",
            GetConsent,
            Tenant,
            "The tenant's consent and retention settings (the defaults until set): opt-out keywords, `List-Unsubscribe` on e-mail sends, retention of messages, events and media.",
        ),
        None,
        (200, Some("Consent")),
    ),
    with(
        route(
            Method::PUT,
            "/v1/consent",
            PutConsent,
            Tenant,
            "Replace the tenant's consent and retention settings (absent fields take their defaults; audited). 422 `validation_failed` names the bad field.",
        ),
        Some("Consent"),
        (200, Some("Consent")),
    ),
    with(
        route(
            Method::POST,
            "/v1/suppressions",
            CreateSuppression,
            Tenant,
            "Never message an address again on a channel (or `*`: on every channel). 201 with the entry, 200 with the one already there. Every send checks the list before any network call; a suppressed send ends `failed` with `recipient_suppressed`.",
        ),
        Some("CreateSuppression"),
        (201, Some("Suppression")),
    ),
    with(
        paged(route(
            Method::GET,
            "/v1/suppressions",
            ListSuppressions,
            Tenant,
            "The tenant's suppression list, oldest first (`limit`, `after`: cursor paging).",
        )),
        None,
        (200, Some("SuppressionList")),
    ),
    with(
        route(
            Method::POST,
            "/v1/suppressions/import",
            ImportSuppressions,
            Tenant,
            "Add many entries: `text/csv` (`channel,address,reason`, header optional) or a JSON array of entries. All or nothing: one bad entry answers 422 `invalid_import` naming the bad lines, and adds none.",
        ),
        None,
        (200, Some("SuppressionImport")),
    ),
    with(
        route(
            Method::DELETE,
            "/v1/suppressions/{id}",
            DeleteSuppression,
            Tenant,
            "Take an entry off the suppression list.",
        ),
        None,
        (204, None),
    ),
    with(
        route(
            Method::POST,
            "/v1/webhooks",
            CreateWebhook,
            Tenant,
            "Register a webhook endpoint; its signing secret is returned once.",
        ),
        Some("CreateWebhook"),
        (201, Some("CreatedWebhook")),
    ),
    with(
        route(
            Method::GET,
            "/v1/webhooks",
            ListWebhooks,
            Tenant,
            "List webhook endpoints.",
        ),
        None,
        (200, Some("WebhookList")),
    ),
    with(
        route(
            Method::GET,
            "/v1/webhooks/{id}",
            GetWebhook,
            Tenant,
            "Get a webhook endpoint.",
        ),
        None,
        (200, Some("Webhook")),
    ),
    with(
        route(
            Method::PATCH,
            "/v1/webhooks/{id}",
            UpdateWebhook,
            Tenant,
            "Change URL, filters, description, status, FIFO mode or concurrency.",
        ),
        Some("UpdateWebhook"),
        (200, Some("Webhook")),
    ),
    with(
        route(
            Method::DELETE,
            "/v1/webhooks/{id}",
            DeleteWebhook,
            Tenant,
            "Delete a webhook endpoint and its pending deliveries.",
        ),
        None,
        (204, None),
    ),
    with(
        route(
            Method::POST,
            "/v1/webhooks/{id}/rotate-secret",
            RotateWebhookSecret,
            Tenant,
            "New signing secret (returned once); the old one keeps signing for the grace period.",
        ),
        Some("RotateSecret"),
        (200, Some("RotatedSecret")),
    ),
    with(
        route(
            Method::POST,
            "/v1/webhooks/{id}/test",
            TestWebhook,
            Tenant,
            "Send a webhook.test event to this endpoint.",
        ),
        None,
        (202, Some("Queued")),
    ),
    with(
        route(
            Method::POST,
            "/v1/webhooks/{id}/replay",
            ReplayWebhook,
            Tenant,
            "Deliver again every matching event created in [since, until) to this endpoint.",
        ),
        Some("Replay"),
        (202, Some("Queued")),
    ),
    with(
        event_filters(route(
            Method::GET,
            "/v1/events",
            ListEvents,
            Tenant,
            "List events, oldest first (cursor paging; filter by type and since).",
        )),
        None,
        (200, Some("EventPage")),
    ),
    with(
        route(
            Method::GET,
            "/v1/events/{id}",
            GetEvent,
            Tenant,
            "An event's envelope and its delivery state per endpoint.",
        ),
        None,
        (200, Some("EventDetail")),
    ),
    with(
        route(
            Method::GET,
            "/v1/events/{id}/attempts",
            ListEventAttempts,
            Tenant,
            "Every delivery attempt of an event.",
        ),
        None,
        (200, Some("AttemptList")),
    ),
    with(
        route(
            Method::POST,
            "/v1/events/{id}/replay",
            ReplayEvent,
            Tenant,
            "Deliver an event again to every endpoint that subscribes to it now.",
        ),
        None,
        (202, Some("Queued")),
    ),
    with(
        route(
            Method::POST,
            "/v1/sessions",
            CreateSession,
            Tenant,
            "Create a session on a channel (started at once unless \"start\": false).",
        ),
        Some("CreateSession"),
        (201, Some("Session")),
    ),
    with(
        route(
            Method::GET,
            "/v1/sessions",
            ListSessions,
            Tenant,
            "List sessions.",
        ),
        None,
        (200, Some("SessionList")),
    ),
    with(
        route(
            Method::GET,
            "/v1/sessions/{id}",
            GetSession,
            Tenant,
            "Get a session and its status.",
        ),
        None,
        (200, Some("Session")),
    ),
    with(
        route(
            Method::DELETE,
            "/v1/sessions/{id}",
            DeleteSession,
            Tenant,
            "Stop and delete a session.",
        ),
        None,
        (204, None),
    ),
    with(
        route(
            Method::POST,
            "/v1/sessions/{id}/start",
            StartSession,
            Tenant,
            "Start (idempotent); a FAILED session gets a fresh restart budget.",
        ),
        None,
        (200, Some("Session")),
    ),
    with(
        route(
            Method::POST,
            "/v1/sessions/{id}/stop",
            StopSession,
            Tenant,
            "Stop (idempotent); it stays stopped across gateway restarts.",
        ),
        None,
        (200, Some("Session")),
    ),
    with(
        route(
            Method::POST,
            "/v1/sessions/{id}/restart",
            RestartSession,
            Tenant,
            "Stop then start.",
        ),
        None,
        (200, Some("Session")),
    ),
    with(
        route(
            Method::POST,
            "/v1/sessions/{id}/logout",
            LogoutSession,
            Tenant,
            "Log the session out of its network (pairing needed again).",
        ),
        None,
        (200, Some("Session")),
    ),
    with(
        route(
            Method::POST,
            "/v1/sessions/{id}/fault",
            FaultSession,
            Tenant,
            "Inject a failure (panic, error, hang, disconnect) into a sim session.",
        ),
        Some("Fault"),
        (202, Some("Queued")),
    ),
    queried(
        with(
            route(
                Method::GET,
                "/v1/sessions/{id}/qr",
                SessionQr,
                Tenant,
                "The current pairing QR code: PNG by default; JSON with `Accept: application/json`; the raw value with `?format=raw` (or `png`, `json`).",
            ),
            None,
            (200, Some("Qr")),
        ),
        &["format"],
    ),
    with(
        route(
            Method::POST,
            "/v1/sessions/{id}/pairing-code",
            PairingCode,
            Tenant,
            "Pair by phone number: a code to type on the phone (where the network offers it).",
        ),
        Some("PairingCodeRequest"),
        (200, Some("PairingCode")),
    ),
    with(
        route(
            Method::POST,
            "/v1/sessions/{id}/challenge",
            SubmitChallenge,
            Tenant,
            "Answer the login challenge the session reported (`session.challenge`, status CHALLENGE): a 2FA, SMS or e-mail code. 409 `no_challenge` when none is open; 422 `rejected_by_network` for a wrong code.",
        ),
        Some("ChallengeCode"),
        (202, Some("ChallengeAccepted")),
    ),
    with(
        route(
            Method::POST,
            "/v1/sessions/{id}/invitations",
            SendInvitation,
            Tenant,
            "Queue a LinkedIn invitation to connect (Idempotency-Key honoured): `to` a profile URL, public id or member URN, `note` at most 300 characters (else 422 `invalid_profile` / `note_too_long`). Sent when the account's safety caps give it a slot (see `/limits`); it waits in the queue until then.",
        ),
        Some("SendInvitation"),
        (202, Some("Message")),
    ),
    with(
        route(
            Method::POST,
            "/v1/sessions/{id}/invitations/{invitation_id}/accept",
            AcceptInvitation,
            Tenant,
            "Queue accepting a received LinkedIn invitation (`invitation_id` of `invitation.received`), under the account's caps.",
        ),
        None,
        (202, Some("Message")),
    ),
    with(
        route(
            Method::GET,
            "/v1/sessions/{id}/profiles/{id_or_url}",
            SessionProfile,
            Tenant,
            "Look up a LinkedIn member by public id, member URN or profile URL (percent-encoded). Counts as a profile view against the caps: 429 `cap_reached` with Retry-After when none is left; 404 `profile_not_found`.",
        ),
        None,
        (200, Some("Profile")),
    ),
    with(
        route(
            Method::GET,
            "/v1/sessions/{id}/limits",
            SessionLimits,
            Tenant,
            "A LinkedIn session's safety caps: per cap its limit, use and what remains (rolling 24 h / 7 d), each action's next slot and why, spacing, working hours, time zone, ramp-up, and how many sends wait. A WhatsApp session's humanised sending (`pacing`): typing per character and its cap, the random gap between sends, the per-contact cap (messages an hour to a contact who has not answered), the new-number warm-up (day, cap per rolling day) and sends in the last 24 h.",
        ),
        None,
        (200, Some("SessionLimits")),
    ),
    with(
        route(
            Method::POST,
            "/v1/sessions/{id}/test-connection",
            TestConnection,
            Tenant,
            "Try an e-mail session's servers with its stored configuration: logs in to IMAP (and opens its folders) and to SMTP, sending nothing, and reports each (`ok`, `error`: auth_failed | unreachable | protocol_error | folder_missing | smtp_failed, `message`). Works whether or not the session runs. 409 `not_email` for other channels.",
        ),
        None,
        (200, Some("ConnectionTest")),
    ),
    with(
        route(
            Method::GET,
            "/v1/sessions/{id}/groups",
            SessionGroups,
            Tenant,
            "Groups the session's account is in.",
        ),
        None,
        (200, Some("PartyList")),
    ),
    with(
        route(
            Method::GET,
            "/v1/sessions/{id}/contacts",
            SessionContacts,
            Tenant,
            "The session's contacts.",
        ),
        None,
        (200, Some("PartyList")),
    ),
    with(
        route(
            Method::GET,
            "/v1/sessions/{id}/events",
            SessionEvents,
            Tenant,
            "Server-Sent Events of the session (status, QR, messages); resume with Last-Event-ID.",
        ),
        None,
        (200, Some("EventStream")),
    ),
    with(
        route(
            Method::POST,
            "/v1/sessions/{id}/messages",
            SendMessage,
            Tenant,
            "Queue a message (Idempotency-Key honoured): text, a file (`media` by id or URL, or as a `multipart/form-data` form whose `file` part is stored with the send), and `subject` / `reply_to` where the channel carries them (else 422 `not_supported`); 409 if the session is stopped, failed or logged out, queued while it (re)starts.",
        ),
        Some("SendMessage"),
        (202, Some("Message")),
    ),
    with(
        paged(route(
            Method::GET,
            "/v1/sessions/{id}/messages",
            ListSessionMessages,
            Tenant,
            "A session's messages, both directions (cursor paging).",
        )),
        None,
        (200, Some("MessagePage")),
    ),
    with(
        route(
            Method::GET,
            "/v1/messages/{id}",
            GetMessage,
            Tenant,
            "One message and its status (queued, sending, sent, delivered, read, failed; received).",
        ),
        None,
        (200, Some("Message")),
    ),
    with(
        route(
            Method::GET,
            "/v1/messages/{id}/attachments/{index}",
            MessageAttachment,
            Tenant,
            "The bytes of a received message's attachment (`attachments[].index` of its `message.received`), fetched from the mailbox, with its type and filename. 409 `session_not_running` when its session is not running; 422 `rejected_by_network` when the mailbox no longer has it.",
        ),
        None,
        (200, None),
    ),
    with(
        route(
            Method::POST,
            "/v1/messages/{id}/reactions",
            ReactToMessage,
            Tenant,
            "React to a message, received or sent, with one emoji (`\"\"` takes the reaction back), on its network at once (WhatsApp; other channels 422 `not_supported`). 409 `message_not_sent` when the network has no id for it yet; 409 `session_not_running`; 422 `rejected_by_network` when the page no longer holds the message.",
        ),
        Some("Reaction"),
        (200, None),
    ),
    with(
        route(
            Method::POST,
            "/v1/sessions/{id}/chats/{chat}/read",
            MarkChatRead,
            Tenant,
            "Mark a chat read on the network, so its sender sees read receipts (WhatsApp: `chat` is a phone number or a chat id such as `…@lid` or `…@g.us`). 409 `session_not_running`; 422 `rejected_by_network` for a chat the account does not have; other channels 422 `not_supported`.",
        ),
        None,
        (200, None),
    ),
    queried(
        with(
            route(
                Method::POST,
                "/v1/media",
                UploadMedia,
                Tenant,
                "Store a file: the raw bytes as the body (its claimed type in Content-Type), `?filename=`. Streamed, sealed at rest; its type is read from its bytes where they say (a PNG named .pdf is stored as image/png), else the claimed one. The same content again gives the same id. 413 `payload_too_large` over `media.max_file_bytes`, 413 `media_space_full` past the tenant's `media.max_tenant_bytes`, 422 `empty_file`, 422 `invalid_filename`, 415 for a multipart form; nothing is kept then.",
            ),
            None,
            (201, Some("Media")),
        ),
        &["filename"],
    ),
    with(
        route(
            Method::GET,
            "/v1/media/{id}",
            GetMedia,
            Tenant,
            "Stream a stored file with its type, ETag (its sha256) and Accept-Ranges; one `Range: bytes=…` gives 206 with Content-Range, an unsatisfiable one 416. Another tenant's id is 404. With `media.download = \"lazy\"` a received file is fetched through its session on its first read (once): 409 `session_not_running` when that session is stopped, 503 `session_not_connected` when its page is not open and logged in within 30 s, 410 `media_unavailable` when the network no longer has the file, 502 `media_not_downloaded` when it did not come whole or its SHA-256 is not the one the message named.",
        ),
        None,
        (200, None),
    ),
    with(
        route(
            Method::POST,
            "/v1/sessions/{id}/sim/inbound",
            SimInbound,
            Tenant,
            "Make a sim session report a message as received (scripted conversations).",
        ),
        Some("SimInbound"),
        (202, Some("Injected")),
    ),
    with(
        route(
            Method::GET,
            "/v1/sessions/{id}/reply-settings",
            GetReplySettings,
            Tenant,
            "How the RAG actor answers the session's inbound messages.",
        ),
        None,
        (200, Some("ReplySettings")),
    ),
    with(
        route(
            Method::PUT,
            "/v1/sessions/{id}/reply-settings",
            PutReplySettings,
            Tenant,
            "Set the session's reply mode (off, draft, auto), allowed contacts, groups, system prompt, model and temperature.",
        ),
        Some("ReplySettings"),
        (200, Some("ReplySettings")),
    ),
    with(
        route(
            Method::POST,
            "/v1/kb/documents",
            CreateKbDocument,
            Tenant,
            "Add a document to the knowledge base: JSON {title, text, format?} or a multipart upload (`file`: .txt or .md, optional `title`); chunked, embedded and stored.",
        ),
        Some("NewDocument"),
        (201, Some("Document")),
    ),
    with(
        route(
            Method::GET,
            "/v1/kb/documents",
            ListKbDocuments,
            Tenant,
            "The knowledge base's documents.",
        ),
        None,
        (200, Some("DocumentList")),
    ),
    route(
        Method::DELETE,
        "/v1/kb/documents/{id}",
        DeleteKbDocument,
        Tenant,
        "Remove a document and its vectors.",
    ),
    with(
        route(
            Method::POST,
            "/v1/kb/search",
            SearchKb,
            Tenant,
            "The passages nearest to a query, best first.",
        ),
        Some("SearchRequest"),
        (200, Some("SearchResults")),
    ),
    with(
        queried(
            route(
                Method::GET,
                "/v1/drafts",
                ListDrafts,
                Tenant,
                "Replies waiting for a person (newest first); filter with ?status=pending|approved|rejected.",
            ),
            &["status", "limit"],
        ),
        None,
        (200, Some("DraftList")),
    ),
    with(
        route(
            Method::POST,
            "/v1/drafts/{id}/approve",
            ApproveDraft,
            Tenant,
            "Send a draft (optionally edited: {text}) through the outbound queue; emits rag.reply.",
        ),
        Some("ApproveDraft"),
        (200, Some("Draft")),
    ),
    with(
        route(
            Method::POST,
            "/v1/drafts/{id}/reject",
            RejectDraft,
            Tenant,
            "Discard a draft.",
        ),
        None,
        (200, Some("Draft")),
    ),
];

/// The outcome of matching a request line against [`ROUTES`].
#[derive(Debug)]
pub enum Match {
    Found(&'static Route, Vec<String>),
    /// The path exists under other methods (listed for the `Allow` header).
    MethodNotAllowed(String),
    NotFound,
}

fn params(template: &str, path: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(out),
            (Some(ts), Some(ps)) if ts.starts_with('{') => {
                if ps.is_empty() {
                    return None;
                }
                out.push(ps.to_owned());
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

pub fn find(method: &Method, path: &str) -> Match {
    let mut allow: Vec<&str> = Vec::new();
    for r in ROUTES {
        if let Some(p) = params(r.path, path) {
            if r.method == *method {
                return Match::Found(r, p);
            }
            allow.push(r.method.as_str());
        }
    }
    if allow.is_empty() {
        Match::NotFound
    } else {
        Match::MethodNotAllowed(allow.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_templates_and_reports_allowed_methods() {
        match find(&Method::DELETE, "/v1/tenants/ten_1/keys/key_2") {
            Match::Found(r, p) => {
                assert_eq!(r.id, RevokeTenantKey);
                assert_eq!(p, ["ten_1", "key_2"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            find(&Method::GET, "/v1/tenants/"),
            Match::NotFound
        ));
        assert!(matches!(find(&Method::GET, "/v1/nope"), Match::NotFound));
        match find(&Method::PUT, "/v1/tenants/x") {
            Match::MethodNotAllowed(a) => assert_eq!(a, "GET, PATCH, DELETE"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_tenant_route_but_me_needs_a_scope_and_no_other_route_has_one() {
        for r in ROUTES {
            let scoped = r.id.scope().is_some();
            let expected = r.access == Tenant && r.id != Me;
            assert_eq!(scoped, expected, "{} {}", r.method, r.path);
        }
    }

    #[test]
    fn no_two_routes_overlap() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {}",
                    a.method,
                    a.path
                );
            }
        }
    }
}
