//! `/_sandbox/*` control endpoints, so a separately spawned `--sandbox` binary can be
//! inspected and scripted over HTTP. These requests are not recorded.
//!
//! - `GET /_sandbox/state` → `{"results":[…],"tasks":[…],"messages":[…],"refreshCount":N,
//!   "refreshCounts":{"1":N,…}}` (results with rights as the webhook user sees them;
//!   `refreshCount` is everyone's refreshes together)
//! - `GET /_sandbox/requests` → `[RecordedRequest…]` (the newest `JOURNAL_CAP`)
//! - `POST /_sandbox/faults` with `{"method":"tasks.task.result.add","fault":{…},"times":N}`
//!   (`times` defaults to 1) → `{"ok":true}`
//! - `POST /_sandbox/oauth/expire` with `{"userId":N}` (no body or `{}` = everyone) → the
//!   access tokens issued so far expire now → `{"ok":true}`
//! - `POST /_sandbox/oauth/revoke` with `{"userId":N}` → that person's grants end (tokens
//!   and codes) → `{"ok":true}`
//! - `POST /_sandbox/oauth/redirect` with `{"redirectUri":"http://…"}` (`null` or absent:
//!   none) → the app's registered redirect address changes → `{"ok":true}`

use std::time::Instant;

use axum::http::Method;
use serde::Deserialize;
use serde_json::json;

use super::Shared;
use super::faults::Fault;
use super::reply::Reply;

#[derive(Deserialize)]
struct FaultRequest {
    method: String,
    fault: Fault,
    #[serde(default = "one")]
    times: u32,
}

/// Body of the OAuth controls.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Person {
    user_id: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Redirect {
    redirect_uri: Option<String>,
}

fn person(body: &[u8]) -> Result<Person, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Person::default());
    }
    serde_json::from_slice(body).map_err(|e| error(400, format!("invalid body: {e}")))
}

fn one() -> u32 {
    1
}

fn error(status: u16, message: impl Into<String>) -> Reply {
    Reply::json(status, &json!({ "error": message.into() }))
}

pub(crate) fn handle(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Reply {
    let path = path.strip_suffix('/').unwrap_or(path);
    match (method.as_str(), path) {
        ("GET", "/_sandbox/state") => {
            let state = shared.lock();
            let mut snapshot = state.world.state_json(shared.settings.user_id as i64);
            snapshot["refreshCount"] = json!(state.tokens.refresh_count());
            drop(state);
            let counts: serde_json::Map<String, serde_json::Value> = shared
                .refresh_counts()
                .into_iter()
                .map(|(user, n)| (user.to_string(), json!(n)))
                .collect();
            snapshot["refreshCounts"] = serde_json::Value::Object(counts);
            Reply::json(200, &snapshot)
        }
        ("GET", "/_sandbox/requests") => {
            let requests = shared.lock().requests.to_vec();
            match serde_json::to_value(requests) {
                Ok(v) => Reply::json(200, &v),
                Err(e) => error(500, e.to_string()),
            }
        }
        ("POST", "/_sandbox/faults") => match serde_json::from_slice::<FaultRequest>(body) {
            Ok(req) => {
                shared.lock().faults.push(&req.method, req.fault, req.times);
                Reply::json(200, &json!({ "ok": true }))
            }
            Err(e) => error(400, format!("invalid fault request: {e}")),
        },
        ("POST", "/_sandbox/oauth/expire") => match person(body) {
            Ok(p) => {
                shared.lock().tokens.expire(p.user_id, Instant::now());
                Reply::json(200, &json!({ "ok": true }))
            }
            Err(reply) => reply,
        },
        ("POST", "/_sandbox/oauth/revoke") => match person(body) {
            Ok(Person {
                user_id: Some(user),
            }) => {
                shared.lock().tokens.revoke(user);
                Reply::json(200, &json!({ "ok": true }))
            }
            Ok(_) => error(400, "userId is required"),
            Err(reply) => reply,
        },
        ("POST", "/_sandbox/oauth/redirect") => match serde_json::from_slice::<Redirect>(body) {
            Ok(r) => {
                shared.lock().redirect_uri = r.redirect_uri;
                Reply::json(200, &json!({ "ok": true }))
            }
            Err(e) => error(400, format!("invalid body: {e}")),
        },
        (
            _,
            "/_sandbox/state"
            | "/_sandbox/requests"
            | "/_sandbox/faults"
            | "/_sandbox/oauth/expire"
            | "/_sandbox/oauth/revoke"
            | "/_sandbox/oauth/redirect",
        ) => error(405, "method not allowed"),
        _ => error(404, "unknown control endpoint"),
    }
}
