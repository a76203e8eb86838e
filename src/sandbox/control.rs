//! `/_sandbox/*` control endpoints, so a separately spawned `--sandbox` binary can be
//! inspected and scripted over HTTP. These requests are not recorded.
//!
//! - `GET /_sandbox/state` → `{"results":[…],"tasks":[…],"messages":[…],"refreshCount":N}`
//! - `GET /_sandbox/requests` → `[RecordedRequest…]` (the newest `JOURNAL_CAP`)
//! - `POST /_sandbox/faults` with `{"method":"tasks.task.result.add","fault":{…},"times":N}`
//!   (`times` defaults to 1) → `{"ok":true}`

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
        (_, "/_sandbox/state" | "/_sandbox/requests" | "/_sandbox/faults") => {
            error(405, "method not allowed")
        }
        _ => error(404, "unknown control endpoint"),
    }
}
