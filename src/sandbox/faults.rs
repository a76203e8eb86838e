//! Scripted faults: what they answer and the per-method queue they are consumed from.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::reply::Reply;
use super::time;

/// A scripted misbehaviour for the next call(s) of one method.
///
/// Serde form (for `POST /_sandbox/faults`) is internally tagged by `kind`, durations in
/// milliseconds, e.g. `{"kind":"query_limit_exceeded","retry_after":1}`,
/// `{"kind":"operation_time_limit","reset_in_ms":5000}`, `{"kind":"slow","ms":200}`,
/// `{"kind":"redirect","location":"https://new.example/rest/…"}`,
/// `{"kind":"raw","status":502,"content_type":"text/plain","body":"oops"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "FaultRepr", from = "FaultRepr")]
pub enum Fault {
    /// 503 `QUERY_LIMIT_EXCEEDED` (v1 shape), with `Retry-After` when `Some`.
    QueryLimitExceeded { retry_after: Option<u64> },
    /// 429 `OPERATION_TIME_LIMIT` with a top-level `operating_reset_at` = now + `reset_in`.
    OperationTimeLimit { reset_in: Duration },
    /// 401 `expired_token`.
    ExpiredToken,
    /// 401 `invalid_token`.
    InvalidToken,
    /// 500 `INTERNAL_SERVER_ERROR` in the v1 shape.
    InternalError,
    /// 500 `INTERNAL_SERVER_ERROR` in the v3 object shape.
    InternalErrorV3,
    /// Runs the method (state changes, idempotent response stored), then closes the TCP
    /// connection without sending any response byte.
    DropAfterApply,
    /// 502 with an nginx-style HTML page; the method does not run.
    Html,
    /// Sleeps, then handles the request normally (the sleep counts as operating time).
    Slow(Duration),
    /// 308 with this `Location` (as a renamed portal answers its old address); the
    /// method does not run.
    Redirect { location: String },
    /// Answers exactly this; the method does not run.
    Raw {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
}

/// Wire form of [`Fault`]; `Raw.body` travels as text (lossy for non-UTF-8 bytes).
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum FaultRepr {
    QueryLimitExceeded {
        #[serde(default)]
        retry_after: Option<u64>,
    },
    OperationTimeLimit {
        reset_in_ms: u64,
    },
    ExpiredToken,
    InvalidToken,
    InternalError,
    InternalErrorV3,
    DropAfterApply,
    Html,
    Slow {
        ms: u64,
    },
    Redirect {
        location: String,
    },
    Raw {
        status: u16,
        #[serde(default = "default_raw_type")]
        content_type: String,
        #[serde(default)]
        body: String,
    },
}

fn default_raw_type() -> String {
    "text/plain".to_string()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<Fault> for FaultRepr {
    fn from(f: Fault) -> Self {
        match f {
            Fault::QueryLimitExceeded { retry_after } => {
                FaultRepr::QueryLimitExceeded { retry_after }
            }
            Fault::OperationTimeLimit { reset_in } => FaultRepr::OperationTimeLimit {
                reset_in_ms: millis(reset_in),
            },
            Fault::ExpiredToken => FaultRepr::ExpiredToken,
            Fault::InvalidToken => FaultRepr::InvalidToken,
            Fault::InternalError => FaultRepr::InternalError,
            Fault::InternalErrorV3 => FaultRepr::InternalErrorV3,
            Fault::DropAfterApply => FaultRepr::DropAfterApply,
            Fault::Html => FaultRepr::Html,
            Fault::Slow(d) => FaultRepr::Slow { ms: millis(d) },
            Fault::Redirect { location } => FaultRepr::Redirect { location },
            Fault::Raw {
                status,
                content_type,
                body,
            } => FaultRepr::Raw {
                status,
                content_type,
                body: String::from_utf8_lossy(&body).into_owned(),
            },
        }
    }
}

impl From<FaultRepr> for Fault {
    fn from(r: FaultRepr) -> Self {
        match r {
            FaultRepr::QueryLimitExceeded { retry_after } => {
                Fault::QueryLimitExceeded { retry_after }
            }
            FaultRepr::OperationTimeLimit { reset_in_ms } => Fault::OperationTimeLimit {
                reset_in: Duration::from_millis(reset_in_ms),
            },
            FaultRepr::ExpiredToken => Fault::ExpiredToken,
            FaultRepr::InvalidToken => Fault::InvalidToken,
            FaultRepr::InternalError => Fault::InternalError,
            FaultRepr::InternalErrorV3 => Fault::InternalErrorV3,
            FaultRepr::DropAfterApply => Fault::DropAfterApply,
            FaultRepr::Html => Fault::Html,
            FaultRepr::Slow { ms } => Fault::Slow(Duration::from_millis(ms)),
            FaultRepr::Redirect { location } => Fault::Redirect { location },
            FaultRepr::Raw {
                status,
                content_type,
                body,
            } => Fault::Raw {
                status,
                content_type,
                body: body.into_bytes(),
            },
        }
    }
}

const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// The 503 the leaky bucket and the fault share (body reported in bitrix-tools/b24-rest-docs#193).
pub(crate) fn query_limit_reply() -> Reply {
    Reply::v1_error(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
}

/// 429 with `operating_reset_at` next to `error`, so clients can pause until then.
pub(crate) fn operation_limit_reply(reset_at: i64) -> Reply {
    Reply::json(
        429,
        &json!({
            "error": "OPERATION_TIME_LIMIT",
            "error_description": "Method is blocked due to operation time limit",
            "operating_reset_at": reset_at,
        }),
    )
}

impl Fault {
    /// The response for faults that answer instead of running the method; `None` for
    /// [`Fault::Slow`] and [`Fault::DropAfterApply`], which let the method run.
    pub(crate) fn immediate_reply(&self) -> Option<Reply> {
        let reply = match self {
            Fault::QueryLimitExceeded { retry_after } => {
                let r = query_limit_reply();
                match retry_after {
                    Some(secs) => r.with_header("Retry-After", secs.to_string()),
                    None => r,
                }
            }
            Fault::OperationTimeLimit { reset_in } => {
                let reset_in = i64::try_from(reset_in.as_secs()).unwrap_or(i64::MAX / 2);
                operation_limit_reply(time::now_secs().saturating_add(reset_in))
            }
            Fault::ExpiredToken => Reply::v1_error(
                401,
                "expired_token",
                "The access token provided has expired",
            ),
            Fault::InvalidToken => {
                Reply::v1_error(401, "invalid_token", "The access token provided is invalid")
            }
            Fault::InternalError => {
                Reply::v1_error(500, "INTERNAL_SERVER_ERROR", "Internal server error")
            }
            Fault::InternalErrorV3 => Reply::json(
                500,
                &json!({ "error": { "code": "INTERNAL_SERVER_ERROR", "message": "Internal server error" } }),
            ),
            Fault::Html => Reply::raw(502, "text/html", HTML_502.as_bytes().to_vec()),
            Fault::Redirect { location } => {
                Reply::raw(308, "text/plain", Vec::new()).with_header("Location", location.clone())
            }
            Fault::Raw {
                status,
                content_type,
                body,
            } => Reply::raw(*status, content_type, body.clone()),
            Fault::Slow(_) | Fault::DropAfterApply => return None,
        };
        Some(reply)
    }
}

/// Faults waiting per lower-cased method name, consumed front first.
#[derive(Default)]
pub(crate) struct FaultQueue {
    queues: HashMap<String, VecDeque<(Fault, u32)>>,
}

impl FaultQueue {
    pub(crate) fn push(&mut self, method: &str, fault: Fault, times: u32) {
        if times == 0 {
            return;
        }
        self.queues
            .entry(normalize(method))
            .or_default()
            .push_back((fault, times));
    }

    /// Takes one use of the next fault scripted for `method`, if any.
    pub(crate) fn take(&mut self, method: &str) -> Option<Fault> {
        let key = normalize(method);
        let queue = self.queues.get_mut(&key)?;
        let (fault, left) = queue.front_mut()?;
        let fault = fault.clone();
        *left -= 1;
        if *left == 0 {
            queue.pop_front();
        }
        if queue.is_empty() {
            self.queues.remove(&key);
        }
        Some(fault)
    }
}

/// Method names are case-insensitive and may carry a trailing `/`.
pub(crate) fn normalize(method: &str) -> String {
    method.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_round_trip() {
        let cases = [
            Fault::QueryLimitExceeded {
                retry_after: Some(1),
            },
            Fault::OperationTimeLimit {
                reset_in: Duration::from_millis(1500),
            },
            Fault::Slow(Duration::from_millis(20)),
            Fault::DropAfterApply,
            Fault::Raw {
                status: 418,
                content_type: "text/plain".into(),
                body: b"teapot".to_vec(),
            },
        ];
        for f in cases {
            let s = serde_json::to_string(&f).unwrap();
            let back: Fault = serde_json::from_str(&s).unwrap();
            assert_eq!(back, f, "{s}");
        }
        let f: Fault =
            serde_json::from_str(r#"{"kind":"query_limit_exceeded","retry_after":1}"#).unwrap();
        assert_eq!(
            f,
            Fault::QueryLimitExceeded {
                retry_after: Some(1)
            }
        );
    }

    #[test]
    fn queue_consumes_in_order() {
        let mut q = FaultQueue::default();
        q.push("Tasks.Task.Result.Add", Fault::Html, 2);
        q.push("tasks.task.result.add", Fault::ExpiredToken, 1);
        assert_eq!(q.take("tasks.task.result.add/"), Some(Fault::Html));
        assert_eq!(q.take("TASKS.TASK.RESULT.ADD"), Some(Fault::Html));
        assert_eq!(q.take("tasks.task.result.add"), Some(Fault::ExpiredToken));
        assert_eq!(q.take("tasks.task.result.add"), None);
    }
}
