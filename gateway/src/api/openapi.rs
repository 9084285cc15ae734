//! `GET /v1/openapi.json`: an OpenAPI 3.1 document generated from the route table,
//! so every route is described, with the request/response schemas written here.

use super::routes::{Access, ROUTES};
use super::{ApiResult, json};
use http::StatusCode;
use serde_json::{Map, Value, json};
use std::sync::OnceLock;
use switchboard_actors::channels::ChannelKind;
use switchboard_actors::scopes::Scope;

pub fn serve() -> ApiResult {
    json(StatusCode::OK, document())
}

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema_ref("Error") } } })
}

fn build() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut op = Map::new();
        op.insert("operationId".into(), json!(format!("{:?}", r.id)));
        op.insert("summary".into(), json!(r.summary));
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .chain(r.query.iter().map(|q| {
                let schema = if *q == "limit" {
                    json!({ "type": "integer", "minimum": 1, "maximum": super::body::MAX_PAGE, "default": super::body::DEFAULT_PAGE })
                } else if *q == "after" {
                    json!({ "type": "string", "description": "cursor: the `next_cursor` of the previous page" })
                } else {
                    json!({ "type": "string" })
                };
                json!({ "name": q, "in": "query", "required": false, "schema": schema })
            }))
            .collect();
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(req) = r.request {
            let mut content = json!({ "application/json": { "schema": schema_ref(req) } });
            if req == "SendMessage" {
                // The same fields as a form, the file itself as the `file` part.
                content["multipart/form-data"] = json!({ "schema": {
                    "type": "object", "required": ["to"],
                    "properties": {
                        "to": { "type": "string" }, "text": { "type": "string" }, "caption": { "type": "string" },
                        "filename": { "type": "string" }, "as_voice": { "type": "boolean" }, "subject": { "type": "string" },
                        "reply_to": { "type": "string" }, "html": { "type": "string" },
                        "file": { "type": "string", "format": "binary", "description": "stored (as `POST /v1/media`, streamed, the same limits) and sent; removed again when the send is refused" }
                    }
                } });
            }
            op.insert(
                "requestBody".into(),
                json!({ "required": true, "content": content }),
            );
        }
        let mut responses = Map::new();
        let (code, schema) = r.success;
        let ok = match schema {
            Some("PrometheusText") => {
                json!({ "description": "metrics", "content": { "text/plain": { "schema": { "type": "string" } } } })
            }
            Some("EventStream") => json!({
                "description": "Server-Sent Events: `id` = event id, `event` = type, `data` = envelope",
                "content": { "text/event-stream": { "schema": { "type": "string" } } }
            }),
            Some(s) => {
                json!({ "description": "success", "content": { "application/json": { "schema": schema_ref(s) } } })
            }
            None => json!({ "description": "done (no body)" }),
        };
        responses.insert(code.to_string(), ok);
        if r.request.is_some() {
            responses.insert("400".into(), error_response("malformed_json"));
            responses.insert("413".into(), error_response("payload_too_large"));
            responses.insert("415".into(), error_response("unsupported_media_type"));
            responses.insert(
                "422".into(),
                error_response("unknown_field, invalid_field or validation_failed"),
            );
        }
        if !r.query.is_empty() {
            responses.insert("400".into(), error_response("invalid_query"));
        }
        match r.access {
            Access::Public => {
                if r.path == "/readyz" {
                    responses.insert("503".into(), error_response("not_ready"));
                }
            }
            Access::Admin => {
                responses.insert(
                    "401".into(),
                    error_response("unauthenticated or invalid_credentials"),
                );
                op.insert("security".into(), json!([{ "adminToken": [] }]));
            }
            Access::Tenant => {
                responses.insert(
                    "401".into(),
                    error_response("unauthenticated or invalid_credentials"),
                );
                let scope = r.id.scope().map(|s| s.as_str());
                responses.insert(
                    "403".into(),
                    error_response(match scope {
                        Some(_) => "tenant_disabled, or insufficient_scope (the key lacks the scope; `required_scope` names it)",
                        None => "tenant_disabled",
                    }),
                );
                if let Some(scope) = scope {
                    op.insert("x-required-scope".into(), json!(scope));
                }
                let scopes: Vec<&str> = scope.into_iter().collect();
                responses.insert(
                    "429".into(),
                    error_response("rate_limited (see Retry-After)"),
                );
                op.insert(
                    "security".into(),
                    json!([{ "apiKey": scopes }, { "apiKeyBearer": scopes }]),
                );
            }
        }
        if r.path.contains('{') {
            responses.insert("404".into(), error_response("not_found"));
        }
        op.insert("responses".into(), Value::Object(responses));
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method.as_str().to_ascii_lowercase()] = Value::Object(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Multi-tenant messaging gateway. Errors are always {\"error\":{\"code\",\"message\"}}; every response carries X-Request-Id."
        },
        "paths": paths,
        "webhooks": webhooks(),
        "components": {
            "securitySchemes": {
                "adminToken": { "type": "http", "scheme": "bearer", "description": "The admin token (SWITCHBOARD_ADMIN_TOKEN or data_dir/admin.token)." },
                "apiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key", "description": scopes_description() },
                "apiKeyBearer": { "type": "http", "scheme": "bearer", "description": format!("A tenant API key. {}", scopes_description()) }
            },
            "schemas": schemas()
        }
    })
}

/// What each scope allows (the scope an operation needs is its `x-required-scope`,
/// and the scope listed in its `security`).
fn scopes_description() -> String {
    let list: Vec<String> = Scope::ALL
        .iter()
        .map(|s| format!("`{}`: {}", s.as_str(), s.describe()))
        .collect();
    format!(
        "Each operation needs the scope in its `x-required-scope` (403 `insufficient_scope` without it; `/v1/me` needs none). A key made without `scopes` holds every scope. Scopes: {}.",
        list.join("; ")
    )
}

/// Every event type, as delivered to webhooks (an `Event` whose `data` is shown) and
/// listed by `GET /v1/events`.
fn webhooks() -> Value {
    let s = |props: Value| json!({ "type": "object", "properties": props });
    let str_ = json!({ "type": "string" });
    let opt = json!({ "type": ["string", "null"] });
    let events: [(&str, &str, Value); 14] = [
        (
            "session.status",
            "A session changed status (STARTING, SCAN_QR, CHALLENGE, WORKING, STOPPED, LOGGED_OUT, FAILED) or kept it with a new reason, such as `throttled_by_network: …` while LinkedIn asks the account to rest.",
            s(json!({ "status": str_, "reason": opt })),
        ),
        (
            "session.challenge",
            "A login checkpoint waits for the account's owner: answer it with `POST /v1/sessions/{id}/challenge {\"code\"}` before `expires_at` (nothing to type for `app_approval`: it is waited for, up to 5 minutes).",
            s(json!({
                "kind": { "enum": ["two_factor", "sms", "email", "app_approval", "captcha"] },
                "hint": opt,
                "expires_at": { "type": "string", "format": "date-time" }
            })),
        ),
        (
            "message.received",
            "An inbound message. On LinkedIn `from` is the sender's profile URN, `chat` the conversation URN, and `meta.sender` holds `public_id` and `name`. A WhatsApp file (image, video, audio, voice note, document, sticker; a contact card as text/vcard) is in the media store as `media.id` (`GET /v1/media/{id}`; with `media.download = \"lazy\"` the id is given before the file is fetched, on its first read), the caption as `text`; `media.error` says why a file is not there (`media_unavailable`: gone from WhatsApp's servers). E-mail attachments carry `media_id` in `attachments[]`. A quote carries `reply_to` (our `msg_…` id when we have the message) and `reply_to_external_id`.",
            s(json!({
                "external_id": str_, "from": str_, "chat": str_, "text": opt, "meta": { "type": "object" },
                "media": { "type": "object", "properties": {
                    "id": opt, "mimetype": str_, "size": { "type": "integer" }, "filename": opt, "sha256": opt, "error": opt
                } },
                "attachments": { "type": "array", "items": { "type": "object" } },
                "reply_to": opt, "reply_to_external_id": str_
            })),
        ),
        (
            "message.sent",
            "The network took an outbound message (or invitation, or accept).",
            s(
                json!({ "message_id": str_, "status": { "const": "sent" }, "to": str_, "external_id": opt, "error": { "type": "null" } }),
            ),
        ),
        (
            "message.failed",
            "An outbound message failed for good, with the reason.",
            s(
                json!({ "message_id": str_, "status": { "const": "failed" }, "to": str_, "external_id": { "type": "null" }, "error": str_ }),
            ),
        ),
        (
            "contact.opted_out",
            "A contact sent one of the tenant's opt-out keywords (or used a one-click unsubscribe link): they are on the suppression list now (committed with this event, before the message itself is stored). Sent once per address.",
            s(json!({
                "channel": str_, "address": str_, "from": opt, "keyword": opt,
                "external_id": opt, "suppression_id": str_
            })),
        ),
        (
            "contact.bounced",
            "Mail to an address bounced for good: the SMTP server refused the mailbox (`via: smtp`, with the send's `message_id`, which ends `failed` / `recipient_bounced`) or a delivery status notification in the mailbox said so (`via: dsn`, with its `external_id`). The address is on the suppression list now (reason `bounced`). Sent once per address.",
            s(json!({
                "channel": { "const": "email" }, "address": str_, "suppression_id": str_,
                "via": { "enum": ["smtp", "dsn"] }, "message_id": opt, "external_id": opt, "diagnostic": opt
            })),
        ),
        (
            "message.reaction",
            "Someone reacted to a stored message (received or sent), or took the reaction back (`removed`, empty `emoji`).",
            s(json!({
                "message_id": str_, "external_id": str_, "emoji": str_, "removed": { "type": "boolean" },
                "from": opt, "from_phone": opt, "reacted_at": { "type": "string", "format": "date-time" }
            })),
        ),
        (
            "message.edited",
            "The sender edited a received message (the stored text stays as received).",
            s(json!({ "message_id": str_, "external_id": str_, "text": str_ })),
        ),
        (
            "message.revoked",
            "The sender deleted a received message for everyone.",
            s(json!({ "message_id": str_, "external_id": str_ })),
        ),
        (
            "invitation.received",
            "LinkedIn: a member invited the account to connect. Accept it with `POST /v1/sessions/{id}/invitations/{invitation_id}/accept`.",
            s(json!({
                "invitation_id": str_, "from": str_, "from_public_id": str_, "from_name": str_,
                "message": opt, "sent_at": { "type": ["string", "null"], "format": "date-time" }
            })),
        ),
        (
            "invitation.accepted",
            "LinkedIn: a member accepted an invitation the account sent.",
            s(json!({ "invitation_id": str_, "member": str_, "public_id": str_, "name": str_ })),
        ),
        (
            "session.qr",
            "WhatsApp: a new QR code to scan.",
            s(json!({ "value": str_, "png_base64": str_ })),
        ),
        (
            "session.pairing_code",
            "WhatsApp: a pairing code to type on the phone.",
            s(json!({ "code": str_ })),
        ),
    ];
    let mut out = Map::new();
    for (ty, description, data) in events {
        out.insert(
            ty.to_owned(),
            json!({ "post": {
                "summary": ty,
                "description": description,
                "requestBody": { "content": { "application/json": { "schema": {
                    "allOf": [schema_ref("Event"), { "type": "object", "properties": { "type": { "const": ty }, "data": data } }]
                } } } },
                "responses": { "2XX": { "description": "Delivered (anything else is retried)." } }
            } }),
        );
    }
    Value::Object(out)
}

fn schemas() -> Value {
    let channels: Vec<&str> = ChannelKind::ALL.iter().map(|k| k.as_str()).collect();
    let ts = json!({ "type": "string", "format": "date-time" });
    let limits = json!({
        "type": "object",
        "properties": {
            "api_requests_per_second": { "type": "integer", "minimum": 1 },
            "api_burst": { "type": "integer", "minimum": 1 }
        }
    });
    let key = json!({
        "type": "object",
        "required": ["id", "tenant_id", "prefix", "status", "created_at"],
        "properties": {
            "id": { "type": "string", "pattern": "^key_" },
            "tenant_id": { "type": "string" },
            "name": { "type": ["string", "null"] },
            "prefix": { "type": "string" },
            "status": { "enum": ["active", "revoked"] },
            "created_at": ts, "last_used_at": { "type": ["string", "null"] }, "revoked_at": { "type": ["string", "null"] },
            "scopes": { "type": "array", "items": schema_ref("Scope"), "description": "what the key may do" }
        }
    });
    let mut created_key = key.clone();
    if let Some(required) = created_key["required"].as_array_mut() {
        required.push(json!("key"));
    }
    created_key["properties"]["key"] =
        json!({ "type": "string", "description": "The API key, shown only here." });
    let mut schemas = json!({
        "Error": {
            "type": "object", "required": ["error"],
            "properties": { "error": { "type": "object", "required": ["code", "message"],
                "properties": { "code": { "type": "string" }, "message": { "type": "string" },
                    "required_scope": { "type": "string", "description": "with `insufficient_scope`: the scope the key lacks" } } } }
        },
        "Health": { "type": "object", "properties": { "status": { "type": "string" }, "storage": { "type": "string" } } },
        "OpenApi": { "type": "object" },
        "Limits": limits,
        "Tenant": {
            "type": "object",
            "required": ["id", "name", "status", "limits", "limit_overrides", "created_at", "updated_at"],
            "properties": {
                "id": { "type": "string", "pattern": "^ten_" },
                "name": { "type": "string" },
                "status": { "enum": ["active", "disabled"] },
                "limits": schema_ref("Limits"),
                "limit_overrides": schema_ref("Limits"),
                "created_at": ts, "updated_at": ts
            }
        },
        "Me": {
            "allOf": [schema_ref("Tenant"), {
                "type": "object", "required": ["key"],
                "properties": { "key": {
                    "type": "object", "description": "the key of this call",
                    "properties": { "id": { "type": "string" }, "scopes": { "type": "array", "items": schema_ref("Scope") } }
                } }
            }]
        },
        "Cluster": {
            "type": "object",
            "required": ["replicas"],
            "properties": {
                "replicas": { "type": "array", "items": {
                    "type": "object",
                    "required": ["id", "started_at", "heartbeat_at", "sessions"],
                    "properties": {
                        "id": { "type": "string" },
                        "started_at": { "type": "string", "format": "date-time" },
                        "heartbeat_at": { "type": "string", "format": "date-time" },
                        "sessions": { "type": "array", "items": { "type": "string" } }
                    }
                } }
            }
        },
        "TenantPage": {
            "type": "object",
            "properties": { "data": { "type": "array", "items": schema_ref("Tenant") }, "next_cursor": { "type": ["string", "null"] } }
        },
        "CreateTenant": {
            "type": "object", "required": ["name"], "additionalProperties": false,
            "properties": { "name": { "type": "string", "minLength": 1, "maxLength": 200 }, "limits": schema_ref("Limits") }
        },
        "UpdateTenant": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "name": { "type": "string", "minLength": 1, "maxLength": 200 },
                "status": { "enum": ["active", "disabled"] },
                "limits": { "type": "object", "description": "Each field: a number to override, null to reset to the default." }
            }
        },
        "CreatedTenant": {
            "type": "object", "required": ["tenant", "api_key"],
            "properties": { "tenant": schema_ref("Tenant"), "api_key": schema_ref("CreatedKey") }
        },
        "CreateKey": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "name": { "type": "string", "minLength": 1, "maxLength": 200 },
                "scopes": { "type": "array", "items": schema_ref("Scope"), "description": "what the key may do (422 `unknown_scope` for a name that is none). Without it: every scope for the admin's keys, the maker's scopes for a tenant's. A tenant key asking for a scope it lacks gets 403 `insufficient_scope`." }
            }
        },
        "Scope": { "enum": Scope::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>() },
        "Key": key,
        "CreatedKey": created_key,
        "KeyList": { "type": "object", "properties": { "data": { "type": "array", "items": schema_ref("Key") } } },
        "CreateSuppression": {
            "type": "object", "additionalProperties": false, "required": ["channel", "address"],
            "properties": {
                "channel": { "type": "string", "enum": ["whatsapp", "email", "linkedin", "sim", "*"] },
                "address": { "type": "string", "minLength": 1, "maxLength": 320, "description": "a phone number (stored in E.164), an e-mail address (stored in lower case), a LinkedIn member URN" },
                "reason": { "type": "string", "maxLength": 500 }
            }
        },
        "Suppression": {
            "type": "object",
            "properties": {
                "id": { "type": "string", "pattern": "^sup_" },
                "channel": { "type": "string" },
                "address": { "type": "string" },
                "reason": { "type": ["string", "null"] },
                "source": { "type": "string", "enum": ["api", "import", "opt_out", "list_unsubscribe", "bounce", "erasure"] },
                "created_at": { "type": "string", "format": "date-time" }
            }
        },
        "SuppressionList": { "type": "object", "properties": {
            "data": { "type": "array", "items": schema_ref("Suppression") },
            "next_cursor": { "type": ["string", "null"] } } },
        "AuditEntry": {
            "type": "object",
            "properties": {
                "id": { "type": "string", "description": "also the paging cursor" },
                "at": { "type": "string", "format": "date-time" },
                "actor": { "type": "string", "description": "the key id, `admin` or `cli`" },
                "tenant_id": { "type": ["string", "null"] },
                "action": { "type": "string", "examples": ["session.create", "webhook.delete", "suppression.create", "contact.erase"] },
                "target": { "type": ["string", "null"] },
                "details": { "type": "object" },
                "request_id": { "type": ["string", "null"] }
            }
        },
        "AuditPage": { "type": "object", "properties": {
            "data": { "type": "array", "items": schema_ref("AuditEntry") },
            "next_cursor": { "type": ["string", "null"] } } },
        "ContactExport": {
            "type": "object",
            "properties": {
                "address": { "type": "string", "description": "the address in its normal form" },
                "exported_at": { "type": "string", "format": "date-time" },
                "channels": { "type": "array", "items": { "type": "string" } },
                "messages": { "type": "array", "items": { "type": "object" }, "description": "each with its text opened" },
                "events": { "type": "array", "items": { "type": "object" }, "description": "the stored envelopes" },
                "drafts": { "type": "array", "items": { "type": "object" } },
                "media": { "type": "array", "items": { "type": "string" } },
                "suppressions": { "type": "array", "items": schema_ref("Suppression") }
            }
        },
        "ContactErasure": {
            "type": "object",
            "properties": {
                "messages": { "type": "integer" }, "events": { "type": "integer" },
                "drafts": { "type": "integer" }, "media": { "type": "integer" },
                "suppressed": { "type": "array", "items": schema_ref("Suppression") }
            }
        },
        "Consent": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "opt_out_keywords": { "type": "array", "maxItems": 50, "items": { "type": "string", "minLength": 1, "maxLength": 40 },
                    "default": ["STOP", "UNSUBSCRIBE", "STOPP", "ARRET", "BAJA"],
                    "description": "An inbound message whose whole text (e-mail: also its first line or subject) is one of these, in any case, puts the sender on the suppression list (source `opt_out`) and emits `contact.opted_out`. `[]`: none." },
                "list_unsubscribe": { "type": "object", "additionalProperties": false, "properties": {
                    "enabled": { "type": "boolean", "default": false, "description": "E-mail sends carry `List-Unsubscribe` (a one-click URL of this gateway, and `mailto` if set) and `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058)." },
                    "mailto": { "type": "string", "format": "email" } } },
                "retention": { "type": "object", "additionalProperties": false,
                    "description": "How long to keep each kind of record (`30d`, `12h`; at least `1m`); absent: for ever. Undelivered webhook deliveries and queued sends are never removed.",
                    "properties": {
                        "messages": { "type": "string" }, "events": { "type": "string" }, "media": { "type": "string" } } }
            }
        },
        "SuppressionImport": { "type": "object", "properties": {
            "added": { "type": "integer" }, "existing": { "type": "integer" } } }
    });
    let mailbox_schema = json!({ "type": ["object", "null"], "description": "E-mail sessions: sync state per followed folder.",
        "properties": { "folders": { "type": "array", "items": { "type": "object", "properties": {
            "folder": { "type": "string" }, "uid_validity": { "type": "integer" }, "last_uid": { "type": "integer" },
            "highest_modseq": { "type": ["integer", "null"] }, "synced_at": ts } } } } });
    let more = json!({
        "Webhook": {
            "type": "object",
            "required": ["id", "url", "status", "fifo", "max_in_flight", "created_at", "updated_at"],
            "properties": {
                "id": { "type": "string", "pattern": "^whk_" },
                "url": { "type": "string", "format": "uri" },
                "description": { "type": ["string", "null"] },
                "events": { "type": ["array", "null"], "items": { "type": "string" }, "description": "Event types (`message.*` prefixes allowed); null = all." },
                "status": { "enum": ["enabled", "disabled"] },
                "disabled_reason": { "type": ["string", "null"] },
                "fifo": { "type": "boolean" },
                "max_in_flight": { "type": "integer" },
                "failing_since": { "type": ["string", "null"] },
                "previous_secret_expires_at": { "type": ["string", "null"] },
                "created_at": ts, "updated_at": ts
            }
        },
        "CreatedWebhook": {
            "allOf": [schema_ref("Webhook"), { "type": "object", "required": ["secret"],
                "properties": { "secret": { "type": "string", "description": "whsec_…, shown only here." } } }]
        },
        "WebhookList": { "type": "object", "properties": { "data": { "type": "array", "items": schema_ref("Webhook") } } },
        "CreateWebhook": {
            "type": "object", "required": ["url"], "additionalProperties": false,
            "properties": {
                "url": { "type": "string", "format": "uri" },
                "events": { "type": "array", "items": { "type": "string" } },
                "secret": { "type": "string", "description": "whsec_ + base64 of 24–64 bytes; generated when absent." },
                "description": { "type": "string" },
                "fifo": { "type": "boolean", "default": false },
                "max_in_flight": { "type": "integer", "minimum": 1, "maximum": 100, "default": 8 }
            }
        },
        "UpdateWebhook": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "url": { "type": "string" }, "events": { "type": ["array", "null"] }, "description": { "type": ["string", "null"] },
                "status": { "enum": ["enabled", "disabled"] }, "fifo": { "type": "boolean" }, "max_in_flight": { "type": "integer" }
            }
        },
        "RotateSecret": {
            "type": "object", "additionalProperties": false,
            "properties": { "secret": { "type": "string" }, "grace_secs": { "type": "integer", "maximum": 604800 } }
        },
        "RotatedSecret": {
            "type": "object",
            "properties": { "id": { "type": "string" }, "secret": { "type": "string" }, "previous_secret_expires_at": ts }
        },
        "Replay": {
            "type": "object", "required": ["since"], "additionalProperties": false,
            "properties": { "since": ts, "until": ts }
        },
        "Queued": { "type": "object", "properties": { "queued": { "type": "integer" }, "event_id": { "type": "string" } } },
        "Media": {
            "type": "object",
            "required": ["id", "mimetype", "size", "sha256", "created_at"],
            "properties": {
                "id": { "type": "string", "pattern": "^med_" },
                "mimetype": { "type": "string", "description": "As the bytes say (sniffed), else as claimed, else application/octet-stream." },
                "size": { "type": "integer" }, "filename": { "type": ["string", "null"] },
                "sha256": { "type": "string", "description": "Hex SHA-256 of the bytes." }, "created_at": ts
            }
        },
        "Event": {
            "type": "object",
            "required": ["id", "type", "tenant_id", "created_at", "data"],
            "properties": {
                "id": { "type": "string", "pattern": "^evt_" }, "type": { "type": "string" }, "tenant_id": { "type": "string" },
                "session_id": { "type": ["string", "null"] }, "channel": { "type": ["string", "null"] },
                "created_at": ts, "data": { "type": "object" }
            }
        },
        "EventPage": {
            "type": "object",
            "properties": { "data": { "type": "array", "items": schema_ref("Event") }, "next_cursor": { "type": ["string", "null"] } }
        },
        "EventDetail": {
            "type": "object",
            "properties": {
                "event": schema_ref("Event"),
                "deliveries": { "type": "array", "items": { "type": "object", "properties": {
                    "endpoint_id": { "type": "string" }, "status": { "enum": ["pending", "delivered", "dead"] },
                    "attempts": { "type": "integer" }, "next_attempt_at": { "type": ["string", "null"] }, "last_attempt_at": { "type": ["string", "null"] } } } }
            }
        },
        "Session": {
            "type": "object",
            "required": ["id", "channel", "status", "running", "config", "created_at", "updated_at"],
            "properties": {
                "id": { "type": "string", "pattern": "^ses_" },
                "channel": { "enum": channels },
                "name": { "type": ["string", "null"] },
                "status": { "enum": ["STOPPED", "STARTING", "SCAN_QR", "CHALLENGE", "WORKING", "FAILED", "LOGGED_OUT"] },
                "status_reason": { "type": ["string", "null"] },
                "running": { "type": "boolean", "description": "Kept running and restored after gateway restarts." },
                "config": { "type": "object" },
                "network": { "type": ["object", "null"], "description": "What the network said about the login (WhatsApp: `version`, the WhatsApp Web release the page runs; `me`, the account's id).",
                    "properties": { "version": { "type": ["string", "null"] }, "me": { "type": ["string", "null"] } } },
                "memory": { "type": ["object", "null"], "description": "What a running browser session costs: the page's JS heap; `browser_pss_bytes` of the browser it runs in, `pss_share_bytes` its share, `isolation` (`process` or `context`)." },
                "mailbox": mailbox_schema,
                "created_at": ts, "updated_at": ts
            }
        },
        "SessionList": { "type": "object", "properties": { "data": { "type": "array", "items": schema_ref("Session") } } },
        "CreateSession": {
            "type": "object", "required": ["channel"], "additionalProperties": false,
            "properties": {
                "channel": { "enum": channels },
                "name": { "type": "string" },
                "config": { "type": "object", "description": "sim: {\"inbound_per_second\": R, \"payload_bytes\": N, \"read_receipts\"?: bool, \"login_code\"?: \"…\"}; whatsapp: {}; email: {\"imap\": {host, port, security: tls|starttls|none, username, password | oauth2: {provider: google|microsoft | token_url, client_id, client_secret?, refresh_token, access_token?}}, \"smtp\": {same}, \"from\": {address, name?}, \"folders\"?: [\"INBOX\"], \"sent_folder\"?: \"Sent\" | null, \"backfill\"?: \"none\" | \"N days\"}; linkedin: {\"login\": \"cookies\", \"li_at\", \"jsessionid\", \"user_agent\"?} | {\"login\": \"password\", \"username\", \"password\"}, \"caps\"?: {invitations_per_day ≤ 100 (15), invitations_per_week ≤ 200 (80), messages_per_day ≤ 150 (50), profile_views_per_day ≤ 100 (80), accepts_per_day ≤ 100 (50), message_spacing (\"10s-60s\", never under 10 s), action_spacing (\"45s-90s\"), working_hours (\"08:00-20:00\"), time_zone (IANA, UTC), new_account, warm_up_from} (secrets are sealed at rest and never shown: `password_set` instead)" },
                "start": { "type": "boolean", "default": true }
            }
        },
        "Message": {
            "type": "object",
            "properties": {
                "id": { "type": "string", "pattern": "^msg_" }, "session_id": { "type": "string" },
                "direction": { "enum": ["inbound", "outbound"] }, "peer": { "type": "string" },
                "text": { "type": ["string", "null"] },
                "subject": { "type": "string" },
                "reply_to": { "type": "string", "pattern": "^msg_", "description": "the message this one answers" },
                "status": { "enum": ["queued", "sending", "sent", "delivered", "read", "failed", "received"] },
                "external_id": { "type": ["string", "null"] }, "error": { "type": ["string", "null"] },
                "created_at": ts, "updated_at": ts
            }
        },
        "MessagePage": {
            "type": "object",
            "properties": { "data": { "type": "array", "items": schema_ref("Message") }, "next_cursor": { "type": ["string", "null"] } }
        },
        "SendMessage": {
            "type": "object", "required": ["to"], "additionalProperties": false,
            "description": "`text` is required unless `media` is given.",
            "properties": {
                "to": { "type": "string", "maxLength": 256 }, "text": { "type": "string", "minLength": 1, "maxLength": 4096 },
                "media": {
                    "type": "object", "additionalProperties": false,
                    "description": "A file to send, one of: `id`, a stored file of the tenant (`POST /v1/media`; another tenant's is 404), or `url`, fetched once into the store (http(s), public addresses only unless `webhooks.allow_private`, 30 s, `media.max_file_bytes`; else 422 `url_not_allowed` / `media_fetch_failed` / 413). WhatsApp sends one file per message: images and videos as media, audio as audio (or a voice note with `as_voice`), a WebP image without caption as a sticker, anything else as a document. Channels that carry no files answer 422 `not_supported` (LinkedIn).",
                    "properties": { "id": { "type": "string", "pattern": "^med_" }, "url": { "type": "string", "format": "uri" } }
                },
                "caption": { "type": "string", "maxLength": 4096, "description": "the text that goes with `media` (instead of `text`)" },
                "filename": { "type": "string", "maxLength": 255, "description": "the name the file goes under (default: its stored name)" },
                "as_voice": { "type": "boolean", "description": "send an audio file as a voice note (WhatsApp); 422 for a file that is not audio" },
                "subject": { "type": "string", "minLength": 1, "maxLength": 998, "description": "channels with subjects (sim; e-mail)" },
                "reply_to": { "type": "string", "pattern": "^msg_", "description": "a message of the same session this one answers (channels with replies; e-mail: threaded, `Re:` subject; WhatsApp: quoted)" },
                "html": { "type": "string", "minLength": 1, "maxLength": 262144, "description": "an HTML alternative to `text` (e-mail; 422 `not_supported` elsewhere)" }
            }
        },
        "Reaction": {
            "type": "object", "required": ["emoji"], "additionalProperties": false,
            "properties": { "emoji": { "type": "string", "maxLength": 16, "description": "one emoji; \"\" takes the reaction back" } }
        },
        "SendInvitation": {
            "type": "object", "required": ["to"], "additionalProperties": false,
            "properties": {
                "to": { "type": "string", "description": "a profile URL (https://www.linkedin.com/in/<id>/), public id or member URN (urn:li:fsd_profile:…); else 422 `invalid_profile`" },
                "note": { "type": "string", "maxLength": 300, "description": "the invitation's note; longer: 422 `note_too_long`" }
            }
        },
        "Profile": {
            "type": "object",
            "properties": {
                "urn": { "type": "string" }, "public_id": { "type": "string" }, "first_name": { "type": "string" },
                "last_name": { "type": "string" }, "headline": { "type": ["string", "null"] }, "profile_url": { "type": "string" }
            }
        },
        "SessionLimits": {
            "type": "object",
            "properties": {
                "session_id": { "type": "string" },
                "caps": { "type": "object", "description": "per cap (`invitations_per_day`, `invitations_per_week`, `messages_per_day`, `accepts_per_day`, `profile_views_per_day`): {limit, used, remaining} over rolling 24 h / 7 d windows, ramp-up applied",
                    "additionalProperties": { "type": "object", "properties": { "limit": { "type": "integer" }, "used": { "type": "integer" }, "remaining": { "type": "integer" } } } },
                "next_slot": { "type": "object", "description": "per action (`message`, `invitation`, `accept`, `profile_view`): {at, reason} — when the next one may go and what holds it back (null reason: now)",
                    "additionalProperties": { "type": "object", "properties": { "at": { "type": ["string", "null"] }, "reason": { "type": ["string", "null"] } } } },
                "message_spacing": { "type": "string", "example": "10s-60s" },
                "action_spacing": { "type": "string", "example": "45s-90s" },
                "working_hours": { "type": "string", "example": "08:00-20:00" },
                "time_zone": { "type": "string" },
                "ramp_up": { "type": ["object", "null"], "properties": { "from": ts, "days": { "type": "integer" }, "share": { "type": "number" } } },
                "queued": { "type": "integer", "description": "sends of this session waiting in the queue" },
                "pacing": { "type": "object", "description": "WhatsApp: humanised sending in force (`enabled`; `typing` {enabled, per_char_ms, max_ms}; `gap` {min_ms, max_ms}; `per_contact_per_hour`; `warm_up` {days, from, day, cap_per_day, active}; `sent_last_24h`). Set per session in `config.pacing` (`enabled`, `typing`, `typing_per_char`, `typing_max`, `gap`, `per_contact_per_hour`, `warm_up_days`, `warm_up_start_per_day`, `warm_up_from`); on by default (`whatsapp.humanise`)." }
            }
        },
        "Fault": {
            "type": "object", "required": ["fault"], "additionalProperties": false,
            "properties": { "fault": { "enum": ["panic", "error", "hang", "disconnect"] } }
        },
        "AttemptList": {
            "type": "object",
            "properties": { "data": { "type": "array", "items": { "type": "object", "properties": {
                "endpoint_id": { "type": "string" }, "attempted_at": ts, "status_code": { "type": ["integer", "null"] },
                "latency_ms": { "type": "integer" }, "error": { "type": ["string", "null"] }, "response": { "type": ["string", "null"] } } } } }
        }
    });
    let browser = json!({
        "Html": { "type": "string", "description": "text/html" },
        "Qr": {
            "type": "object", "required": ["value", "png_base64", "svg", "expires_at"],
            "properties": { "value": { "type": "string" }, "png_base64": { "type": "string" }, "svg": { "type": "string" }, "expires_at": ts }
        },
        "PairingCodeRequest": {
            "type": "object", "required": ["phone"], "additionalProperties": false,
            "properties": { "phone": { "type": "string", "description": "International number, digits only (e.g. 15550001)" } }
        },
        "PairingCode": { "type": "object", "properties": { "code": { "type": "string", "example": "ABCD-EFGH" } } },
        "ChallengeCode": {
            "type": "object", "required": ["code"], "additionalProperties": false,
            "properties": { "code": { "type": "string", "minLength": 1, "maxLength": 64, "description": "the code the network sent (2FA app, SMS, e-mail)" } }
        },
        "ChallengeAccepted": { "type": "object", "properties": { "accepted": { "type": "boolean" } } },
        "ServerTest": {
            "type": "object", "required": ["ok"],
            "properties": {
                "ok": { "type": "boolean" },
                "error": { "type": "string", "enum": ["auth_failed", "unreachable", "protocol_error", "folder_missing", "smtp_failed"] },
                "message": { "type": "string" },
                "elapsed_ms": { "type": "integer" },
                "idle": { "type": "boolean" }, "condstore": { "type": "boolean" }, "qresync": { "type": "boolean" }
            }
        },
        "ConnectionTest": {
            "type": "object", "required": ["ok", "imap", "smtp"],
            "properties": {
                "ok": { "type": "boolean", "description": "both servers took the login" },
                "imap": { "$ref": "#/components/schemas/ServerTest" },
                "smtp": { "$ref": "#/components/schemas/ServerTest" }
            }
        },
        "PartyList": {
            "type": "object",
            "properties": { "data": { "type": "array", "items": { "type": "object", "properties": { "id": { "type": "string" }, "name": { "type": ["string", "null"] } } } } }
        }
    });
    let rag = json!({
        "SimInbound": {
            "type": "object", "required": ["from", "text"], "additionalProperties": false,
            "properties": { "from": { "type": "string" }, "text": { "type": "string" }, "chat": { "type": ["string", "null"], "description": "group id, for a group message" } }
        },
        "Injected": { "type": "object", "properties": { "external_id": { "type": "string" } } },
        "ReplySettings": {
            "type": "object", "required": ["mode"], "additionalProperties": false,
            "properties": {
                "mode": { "type": "string", "enum": ["off", "draft", "auto"] },
                "allowed_contacts": { "type": "array", "items": { "type": "string" }, "description": "who auto-replies may go to; empty = everyone (others get drafts)" },
                "groups": { "type": "boolean", "default": false, "description": "answer group messages" },
                "system_prompt": { "type": ["string", "null"] },
                "model": { "type": ["string", "null"], "description": "LLM model (default: rag.llm_model)" },
                "temperature": { "type": "number", "minimum": 0, "maximum": 2, "default": 0.2 },
                "mark_read": { "type": "boolean", "default": false, "description": "mark the asker's chat read when an answer goes out (WhatsApp read receipts)" },
                "writer": { "type": "string", "enum": ["llm", "retrieval"], "readOnly": true, "description": "who writes replies: an LLM, or the best passage quoted (no LLM configured)" }
            }
        },
        "NewDocument": {
            "type": "object", "required": ["title", "text"], "additionalProperties": false,
            "properties": { "title": { "type": "string", "maxLength": 200 }, "text": { "type": "string" }, "format": { "type": "string", "enum": ["text", "markdown"], "description": "detected when absent" } }
        },
        "Document": {
            "type": "object", "required": ["id", "chunks"],
            "properties": { "id": { "type": "string" }, "title": { "type": "string" }, "format": { "type": "string" }, "bytes": { "type": "integer" },
                "chunks": { "type": "integer" }, "model": { "type": "string" }, "status": { "type": "string", "enum": ["indexing", "ready"] }, "created_at": ts }
        },
        "DocumentList": { "type": "object", "properties": { "data": { "type": "array", "items": schema_ref("Document") } } },
        "SearchRequest": {
            "type": "object", "required": ["query"], "additionalProperties": false,
            "properties": { "query": { "type": "string" }, "limit": { "type": "integer", "minimum": 1, "maximum": 50, "default": 5 } }
        },
        "SearchResults": {
            "type": "object",
            "properties": { "results": { "type": "array", "items": { "type": "object", "properties": {
                "document_id": { "type": "string" }, "title": { "type": "string" }, "text": { "type": "string" },
                "score": { "type": "number", "description": "cosine similarity" }, "chunk_index": { "type": "integer" } } } } }
        },
        "Draft": {
            "type": "object",
            "properties": { "id": { "type": "string" }, "session_id": { "type": "string" }, "event_id": { "type": "string" }, "to": { "type": "string" },
                "question": { "type": "string" }, "text": { "type": "string" }, "status": { "type": "string", "enum": ["pending", "approved", "rejected"] },
                "reason": { "type": "string", "enum": ["draft_mode", "contact_not_allowed"] }, "intent": { "type": "string", "enum": ["response", "task"] },
                "source": { "type": "string", "enum": ["llm", "retrieval"] }, "message_id": { "type": ["string", "null"] }, "created_at": ts, "updated_at": ts }
        },
        "DraftList": { "type": "object", "properties": { "data": { "type": "array", "items": schema_ref("Draft") } } },
        "ApproveDraft": {
            "type": "object", "additionalProperties": false,
            "properties": { "text": { "type": "string", "description": "the edited reply (default: the draft as written)" } }
        }
    });
    if let (Some(a), Value::Object(b)) = (schemas.as_object_mut(), rag) {
        a.extend(b);
    }
    if let (Some(a), Value::Object(b)) = (schemas.as_object_mut(), browser) {
        a.extend(b);
    }
    if let (Some(a), Value::Object(b)) = (schemas.as_object_mut(), more) {
        a.extend(b);
    }
    schemas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_every_schema_exists() {
        let doc = document();
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} missing", r.method, r.path);
        }
        for ty in [
            switchboard_actors::sessions::SESSION_CHALLENGE,
            switchboard_actors::channels::linkedin::INVITATION_RECEIVED,
            switchboard_actors::channels::linkedin::INVITATION_ACCEPTED,
        ] {
            assert!(
                doc["webhooks"][ty]["post"].is_object(),
                "event {ty} missing"
            );
        }
        let text = doc.to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(
                doc["components"]["schemas"][&name].is_object(),
                "schema {name} missing"
            );
        }
    }
}
