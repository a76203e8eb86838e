//! A panic inside a tool call becomes an `isError` result instead of a request that is
//! never answered (rmcp runs each request in its own task: a panic there would leave the
//! client waiting forever while the session lives on).

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use rmcp::model::CallToolResult;

use crate::panic_hook::payload_text;
use crate::tools::list::List;
use crate::tools::{Entry, Outcome, Ran, Subject, Tool, errors};

/// Marks the result of a caught panic; tests search every result for it.
pub const INTERNAL_ERROR: &str = "Internal error in bitrix24-task-results-mcp";

/// Runs `call`; a panic in it is reported (by the panic hook, on stderr) and answered
/// with an `isError` result naming it a bug.
pub async fn guarded<F>(tool: &dyn Entry, call: F) -> (CallToolResult, Ran)
where
    F: Future<Output = (CallToolResult, Ran)>,
{
    // Unwind safety: the call owns its parsed arguments; the shared state it touches (the
    // HTTP pool, the redactor's lock) stays consistent when a task unwinds.
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => {
            let after = if tool.read_only() {
                "Try again; if it happens again, report it.".to_string()
            } else {
                format!(
                    "The change may or may not have been applied: check with {} before repeating it, and report the bug.",
                    List::NAME
                )
            };
            let result = errors::tool_error(&format!(
                "{INTERNAL_ERROR} while running {} (a bug): {}. {after}",
                tool.name(),
                payload_text(payload.as_ref())
            ));
            (result, Ran::ended(Outcome::Internal, Subject::default()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &CallToolResult) -> String {
        r.content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect()
    }

    #[tokio::test]
    async fn a_panicking_call_becomes_a_redacted_is_error_result() {
        crate::redact::register("guard-test-secret-4711");
        for kind in [
            &crate::tools::add::Add as &dyn Entry,
            &crate::tools::list::List,
        ] {
            let (r, ran) = guarded(kind, async {
                panic!("boom near guard-test-secret-4711");
            })
            .await;
            assert_eq!(ran.outcome, Outcome::Internal);
            assert_eq!(r.is_error, Some(true));
            let t = text(&r);
            assert!(t.starts_with(INTERNAL_ERROR), "{t}");
            assert!(
                t.contains(kind.name()) && t.contains("boom near ***"),
                "{t}"
            );
            assert!(!t.contains("guard-test-secret-4711"), "{t}");
            assert_eq!(
                t.contains("task_result_list before repeating"),
                !kind.read_only()
            );
        }
    }

    #[tokio::test]
    async fn a_normal_call_passes_through() {
        let ok = CallToolResult::success(vec![]);
        let ran = Ran::ended(Outcome::Ok, Subject::default());
        let r = guarded(&crate::tools::list::List, async {
            (ok.clone(), ran.clone())
        })
        .await;
        assert_eq!(r, (ok, ran));
    }
}
