//! `task_result_delete`: tasks.task.result.delete.

use super::names;
use super::next_steps::only_the_author_may_change_it;
use super::texts::DATA;
use super::{Answer, Ctx, Effects, Failure, Subject, Tool};
use crate::bitrix::{ErrorClass, PortalError};
use crate::results::{DeleteParams, Deleted, TaskResults, method};

/// Deletes a result.
pub struct Delete;

impl Tool for Delete {
    type Params = DeleteParams;
    type Output = Deleted;

    const NAME: &'static str = names::DELETE;
    const TITLE: &'static str = "Delete a task result";
    const METHOD: &'static str = method::DELETE;
    const EFFECTS: Effects = Effects {
        read_only: false,
        destructive: true,
        idempotent: true,
    };

    fn description() -> String {
        format!(
            "Calls tasks.task.result.delete (Bitrix24 REST 3.0). Deletes a result permanently. id is the result id (from \
             task_result_list), not the task id. Only the author of the result may delete it (rights.remove in \
             task_result_list); others get ACCESSDENIED. Cannot be undone. {DATA}"
        )
    }

    fn usage() -> String {
        "id (positive integer, the result id)".into()
    }

    async fn call(ctx: Ctx<'_>, params: DeleteParams) -> Result<Deleted, Failure> {
        TaskResults::new(ctx.client, ctx.caller)
            .delete(&params)
            .await
            .map_err(Failure::of(Self::METHOD))
    }

    fn next_step(error: &PortalError) -> Option<String> {
        (error.class() == ErrorClass::AccessDenied).then(only_the_author_may_change_it)
    }

    fn subject(params: &DeleteParams) -> Subject {
        Subject {
            task_id: None,
            result_id: Some(params.id.0),
        }
    }
}

/// Small and fixed: never cut.
impl Answer for Deleted {}
