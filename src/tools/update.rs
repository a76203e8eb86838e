//! `task_result_update`: tasks.task.result.update.

use super::names;
use super::next_steps::only_the_author_may_change_it;
use super::shown::Shown;
use super::texts::DATA;
use super::{Ctx, Effects, Failure, Subject, Tool};
use crate::bitrix::{ErrorClass, PortalError};
use crate::results::{MAX_TEXT_CHARS, TaskResult, TaskResults, UpdateParams, method};

/// Replaces the text of a result.
pub struct Update;

impl Tool for Update {
    type Params = UpdateParams;
    type Output = Shown<TaskResult>;

    const NAME: &'static str = names::UPDATE;
    const TITLE: &'static str = "Update a task result";
    const METHOD: &'static str = method::UPDATE;
    const EFFECTS: Effects = Effects {
        read_only: false,
        destructive: true,
        idempotent: true,
    };

    fn description() -> String {
        format!(
            "Calls tasks.task.result.update (Bitrix24 REST 3.0). Replaces the text of a result. id is the result id \
             (from task_result_list or task_result_add), not the task id. Only the author of the result may update it \
             (check authorId and rights.edit in task_result_list); others get ACCESSDENIED. Text: 1 to {MAX_TEXT_CHARS} characters. {DATA}"
        )
    }

    fn usage() -> String {
        format!(
            "id (positive integer, the result id) and text (non-empty string, at most {MAX_TEXT_CHARS} characters)"
        )
    }

    async fn call(ctx: Ctx<'_>, params: UpdateParams) -> Result<Self::Output, Failure> {
        TaskResults::new(ctx.client, ctx.caller)
            .update(&params)
            .await
            .map(Shown::new)
            .map_err(Failure::of(Self::METHOD))
    }

    fn next_step(error: &PortalError) -> Option<String> {
        (error.class() == ErrorClass::AccessDenied).then(only_the_author_may_change_it)
    }

    fn subject(params: &UpdateParams) -> Subject {
        Subject {
            task_id: None,
            result_id: Some(params.id.0),
        }
    }

    fn answered(output: &Self::Output) -> Subject {
        Subject {
            task_id: Some(output.item.task_id),
            result_id: Some(output.item.id),
        }
    }
}
