//! The audit trail as an observer of tool calls: every call of a tool that writes becomes
//! one line (who, through which client, which task and result, how it ended); reads are
//! not recorded.

use std::sync::Arc;

use super::observe::{CallObserver, Who};
use crate::audit::{Event, Trail};
use crate::tools::CallReport;

/// Records write tool calls in a trail.
pub struct Audited {
    trail: Arc<Trail>,
    /// How the configured identity calls (`webhook`, `oauth_token`), for calls made
    /// without a signed-in person.
    configured: &'static str,
}

impl Audited {
    /// Records in `trail`; calls without a person run as the configured identity,
    /// `configured` (`webhook` or `oauth_token`).
    pub fn new(trail: Arc<Trail>, configured: &'static str) -> Audited {
        Audited { trail, configured }
    }
}

impl CallObserver for Audited {
    fn tool_call(&self, report: &CallReport, who: &Who) {
        if !report.writes {
            return;
        }
        self.trail.record(Event {
            event: "tool_call",
            user_id: who.user_id.and_then(|id| i64::try_from(id).ok()),
            member_id: who.member_id.as_deref(),
            identity: Some(if who.signed_in {
                "person"
            } else {
                self.configured
            }),
            client_id: who.client_id.as_deref(),
            client_name: who.client_name.as_deref(),
            tool: Some(report.tool),
            task_id: report.ran.subject.task_id,
            result_id: report.ran.subject.result_id,
            outcome: Some(report.ran.outcome.as_str()),
            portal_code: report.ran.portal_code.as_deref(),
            duration_ms: Some((report.duration.as_secs_f64() * 1e6).round() / 1e3),
            ..Event::default()
        });
    }
}
