//! `completion/complete`: task ids for the `taskId` argument of the prompts and for
//! `{taskId}` of the resource template `bitrix24://tasks/{taskId}/results`.
//!
//! Digits typed so far match the start of the ids of the caller's tasks, most recently
//! changed first; anything else matches their titles; at most 20 values, with `hasMore`.
//! It runs as the caller (the signed-in person over HTTP) with one v1 `tasks.task.list`
//! call, and must never hang or fail a client's UI: it waits at most [`WAIT`] for the
//! portal's rate limit and retries, the whole answer at most [`BUDGET`], and any failure
//! (portal error, rate limit, timeout, no person) is an empty list logged at debug, never
//! a JSON-RPC error. So is a reference or argument this server does not complete (the
//! conformance suite asks about prompts it does not have).
//!
//! Choices: completion stays on under `--read-only` (it only reads) and whatever
//! `--tools`/`--exclude-tools` say: it serves the person filling in an argument, not the
//! model, so leaving `task_search` out limits the model only; it still needs the `task`
//! scope, and without it the list is empty.

use std::time::Duration;

use rmcp::model::{CompleteRequestParams, CompleteResult, CompletionInfo, Reference};

use super::prompts::PromptKind;
use super::resources;
use crate::bitrix::{Caller, Client};
use crate::tasks::{Suggestions, Tasks};

/// The argument completed, in every prompt and in the template.
pub const ARGUMENT: &str = "taskId";

/// Longest a completion answer takes, portal call included.
pub const BUDGET: Duration = Duration::from_millis(1000);

/// Longest the portal call may wait for a rate-limit slot, between retries or for an
/// operating-limit reset; past it, the call gives up at once rather than wait.
pub const WAIT: Duration = Duration::from_millis(800);

/// Whether `request` asks for a task id this server completes: the `taskId` of an
/// offered prompt, or of the resource template.
pub fn completes(request: &CompleteRequestParams, prompts: &[PromptKind]) -> bool {
    if request.argument.name != ARGUMENT {
        return false;
    }
    match &request.r#ref {
        Reference::Prompt(p) => {
            PromptKind::from_name(&p.name).is_some_and(|k| prompts.contains(&k))
        }
        Reference::Resource(r) => r.uri == resources::TEMPLATE,
        _ => false,
    }
}

/// The answer to `request` as `caller` (whose user id is `me`, when known).
pub async fn complete(
    client: &Client,
    caller: Option<&Caller>,
    me: Option<u64>,
    request: &CompleteRequestParams,
    prompts: &[PromptKind],
) -> CompleteResult {
    let suggestions = match caller {
        Some(caller) if completes(request, prompts) => {
            let typed = &request.argument.value;
            let tasks = Tasks::new(client, caller, me);
            match tokio::time::timeout(BUDGET, tasks.suggest(typed, WAIT)).await {
                Ok(Ok(found)) => found,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "task id completion: the portal call failed; answering none");
                    Suggestions::default()
                }
                Err(_) => {
                    tracing::debug!(
                        budget_ms = BUDGET.as_millis() as u64,
                        "task id completion: the portal did not answer in time; answering none"
                    );
                    Suggestions::default()
                }
            }
        }
        Some(_) => {
            tracing::debug!(
                argument = %request.argument.name,
                "completion of an argument this server does not complete; answering none"
            );
            Suggestions::default()
        }
        None => {
            tracing::debug!("completion without a signed-in person; answering none");
            Suggestions::default()
        }
    };
    answer(suggestions)
}

/// The protocol answer for `s` (at most 20 values, far below the spec's 100).
pub fn answer(s: Suggestions) -> CompleteResult {
    let info = CompletionInfo::with_pagination(s.values, s.total, s.has_more).unwrap_or_default();
    CompleteResult::new(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ArgumentInfo;

    fn request(r: Reference, arg: &str) -> CompleteRequestParams {
        CompleteRequestParams::new(r, ArgumentInfo::new(arg, "5"))
    }

    #[test]
    fn only_task_ids_of_offered_prompts_and_the_template_are_completed() {
        let all = PromptKind::ALL.to_vec();
        for p in PromptKind::ALL {
            assert!(completes(
                &request(Reference::for_prompt(p.name()), "taskId"),
                &all
            ));
        }
        assert!(completes(
            &request(Reference::for_resource(resources::TEMPLATE), "taskId"),
            &[]
        ));
        assert!(!completes(
            &request(Reference::for_prompt("record_result"), "notes"),
            &all
        ));
        assert!(!completes(
            &request(
                Reference::for_prompt("test_prompt_with_arguments"),
                "taskId"
            ),
            &all
        ));
        assert!(!completes(
            &request(Reference::for_prompt("record_result"), "taskId"),
            &[PromptKind::ReviewResults]
        ));
        assert!(!completes(
            &request(
                Reference::for_resource("bitrix24://other/{taskId}"),
                "taskId"
            ),
            &all
        ));
    }

    #[test]
    fn the_answer_says_whether_more_match() {
        let a = answer(Suggestions {
            values: vec!["51".into()],
            total: None,
            has_more: true,
        });
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["completion"]["values"], serde_json::json!(["51"]));
        assert_eq!(v["completion"]["hasMore"], true);
        let empty = serde_json::to_value(answer(Suggestions::default())).unwrap();
        assert_eq!(empty["completion"]["values"], serde_json::json!([]));
    }
}
