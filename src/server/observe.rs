//! Who watches finished tool calls. The metrics and the audit trail plug in here, so the
//! MCP face reports each call once without knowing what is done with the report.

use std::sync::Arc;

use crate::sign_in::resource::{PersonId, SignedInClient};
use crate::tools::CallReport;

/// Who made a call, as far as this server knows: a signed-in person (their portal's
/// member id and their user id, and the client they signed in through), or the
/// configured identity (a webhook's user id; a configured OAuth access token knows no
/// user). Never a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Who {
    /// The caller's Bitrix24 user id, when known.
    pub user_id: Option<u64>,
    /// The portal's `member_id`, for a signed-in person.
    pub member_id: Option<String>,
    /// Whether the caller is a signed-in person (rather than the configured identity).
    pub signed_in: bool,
    /// The MCP client the person signed in through.
    pub client_id: Option<String>,
    /// Its name, when known (see `SignedInClient`).
    pub client_name: Option<Arc<str>>,
}

impl Who {
    /// The caller of a request with these HTTP parts (none over stdio), whose user id
    /// the server resolved as `me`.
    pub fn of(parts: Option<&http::request::Parts>, me: Option<u64>) -> Who {
        match parts.and_then(|p| p.extensions.get::<PersonId>()) {
            Some(person) => {
                let client = parts.and_then(|p| p.extensions.get::<SignedInClient>());
                Who {
                    user_id: u64::try_from(person.user_id).ok(),
                    member_id: Some(person.member_id.clone()),
                    signed_in: true,
                    client_id: client.map(|c| c.id.clone()),
                    client_name: client.and_then(|c| c.name.clone()),
                }
            }
            None => Who {
                user_id: me,
                ..Who::default()
            },
        }
    }
}

/// Told of every finished tool call, after its answer is ready and before it is sent.
/// Must not block: a slow observer delays every answer.
pub trait CallObserver: Send + Sync + 'static {
    /// One call ended as `report` says, made by `who`.
    fn tool_call(&self, report: &CallReport, who: &Who);
}

/// Counts every finished call in the metrics (`bitrix24_mcp_tool_calls_total` and the
/// duration histogram), by tool and outcome only: never who made it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Metered;

impl CallObserver for Metered {
    fn tool_call(&self, report: &CallReport, _who: &Who) {
        crate::metrics::tool_call(report.tool, report.ran.outcome.as_str(), report.duration);
    }
}
