//! `task_result_add`: tasks.task.result.add.

use super::names;
use super::next_steps::CHECK_TASK_ID_OR_USE_A_MEMBER;
use super::shown::Shown;
use super::texts::DATA;
use super::{Ctx, Effects, Failure, Subject, Tool};
use crate::bitrix::{ErrorClass, PortalError};
use crate::results::{AddParams, MAX_TEXT_CHARS, TaskResult, TaskResults, method};

/// Adds a result to a task.
pub struct Add;

impl Tool for Add {
    type Params = AddParams;
    type Output = Shown<TaskResult>;

    const NAME: &'static str = names::ADD;
    const TITLE: &'static str = "Add a task result";
    const METHOD: &'static str = method::ADD;
    const EFFECTS: Effects = Effects {
        read_only: false,
        destructive: false,
        idempotent: false,
    };

    fn description() -> String {
        format!(
            "Calls tasks.task.result.add (Bitrix24 REST 3.0). Adds a result (a pinned summary of work done) to a task. \
             taskId is the id of the task (a task id, not a result id); the answer's `id` is the new result's id, which task_result_update and \
             task_result_delete take. Any user with access to the task may add a result; a task may have many. \
             Text: 1 to {MAX_TEXT_CHARS} characters, BBCode allowed. Not idempotent: calling it twice adds two results. {DATA}"
        )
    }

    fn usage() -> String {
        format!(
            "taskId (positive integer, the task id) and text (non-empty string, at most {MAX_TEXT_CHARS} characters)"
        )
    }

    async fn call(ctx: Ctx<'_>, params: AddParams) -> Result<Self::Output, Failure> {
        TaskResults::new(ctx.client, ctx.caller)
            .add(&params)
            .await
            .map(Shown::new)
            .map_err(Failure::of(Self::METHOD))
    }

    fn next_step(error: &PortalError) -> Option<String> {
        match error.class() {
            ErrorClass::AccessDenied => Some(CHECK_TASK_ID_OR_USE_A_MEMBER.into()),
            // The only taskId the portal can refuse once ours passed validation is one
            // that names no task (docs/bitrix24-api.md#add: REQUESTVALIDATION on `taskId`).
            ErrorClass::Validation if error.has_field("taskId") => Some(NO_TASK.into()),
            _ => None,
        }
    }

    fn subject(params: &AddParams) -> Subject {
        Subject {
            task_id: Some(params.task_id.0),
            result_id: None,
        }
    }

    fn answered(output: &Self::Output) -> Subject {
        Subject {
            task_id: Some(output.item.task_id),
            result_id: Some(output.item.id),
        }
    }
}

/// The next step when a task id names no task.
const NO_TASK: &str = "there is no task with that id. Check the task id and call again.";
