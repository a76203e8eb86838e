//! `task_result_update`: tasks.task.result.update.

use super::shown::Shown;
use super::texts::DATA;
use super::{Ctx, Effects, Failure, Tool};
use crate::bitrix::{ErrorClass, PortalError};
use crate::results::{MAX_TEXT_CHARS, TaskResult, TaskResults, UpdateParams, method};

/// Replaces the text of a result.
pub struct Update;

impl Tool for Update {
    type Params = UpdateParams;
    type Output = Shown<TaskResult>;

    const NAME: &'static str = "task_result_update";
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
        (error.class() == ErrorClass::AccessDenied).then(|| AUTHOR_ONLY.into())
    }
}

/// The next step when someone other than the author changes a result.
pub(crate) const AUTHOR_ONLY: &str = "only the author of a result may update or delete it, and the portal \
     gives the same answer for a result id that does not exist. Check the result id (not the task id) and its \
     authorId and rights with task_result_list.";
