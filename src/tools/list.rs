//! `task_result_list`: tasks.task.result.list.

use schemars::JsonSchema;
use serde::Serialize;

use super::names;
use super::next_steps::CHECK_TASK_ID_OR_USE_A_MEMBER;
use super::shown::{self, MAX_ANSWER_BYTES, Shown};
use super::texts::{BOUND, DATA};
use super::{Answer, Ctx, Effects, Failure, Subject, Tool};
use crate::bitrix::{ErrorClass, PortalError};
use crate::results::{ListParams, MAX_LIMIT, ResultPage, TaskResult, TaskResults, method};

/// Lists the results of one task.
pub struct List;

/// A page of results as the model sees it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListAnswer {
    /// The page.
    #[serde(flatten)]
    pub page: ResultPage<Shown<TaskResult>>,
    /// Present when texts were cut to fit the answer bound: says how to read them in full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Tool for List {
    type Params = ListParams;
    type Output = ListAnswer;

    const NAME: &'static str = names::LIST;
    const TITLE: &'static str = "List task results";
    const METHOD: &'static str = method::LIST;
    const EFFECTS: Effects = Effects {
        read_only: true,
        destructive: false,
        idempotent: true,
    };

    fn description() -> String {
        format!(
            "Calls tasks.task.result.list (Bitrix24 REST 3.0). Lists the results of one task (taskId is required; it is a \
             task id). Optional filters: status (open|closed), authorId. Sorted by id, newest first, unless orderBy and \
             orderDirection say otherwise. Paging: limit (1-{MAX_LIMIT}, default 20) and offset; when a page comes back \
             full the answer has nextOffset, pass it as offset for the next page; no nextOffset means the last page \
             (the portal reports no total). Each item has rights.edit/remove for the calling user. {BOUND} \
             To read a cut text in full, call again with the same filters and order, limit 1 and offset = the \
             page's offset + the item's position. {DATA}"
        )
    }

    fn usage() -> String {
        format!(
            "taskId (required), optional status (open|closed), authorId, orderBy (id|createdAt|updatedAt|authorId|status|messageId), orderDirection (asc|desc), limit (1-{MAX_LIMIT}), offset (0 or more)"
        )
    }

    async fn call(ctx: Ctx<'_>, params: ListParams) -> Result<ListAnswer, Failure> {
        let page = TaskResults::new(ctx.client, ctx.caller)
            .list(&params)
            .await
            .map_err(Failure::of(Self::METHOD))?;
        Ok(ListAnswer {
            page: page.map(Shown::new),
            note: None,
        })
    }

    fn next_step(error: &PortalError) -> Option<String> {
        match error.class() {
            ErrorClass::AccessDenied => Some(CHECK_TASK_ID_OR_USE_A_MEMBER.into()),
            // REQUESTFILTERVALIDATION names `filter.taskId`, REQUESTVALIDATION `filter`.
            ErrorClass::Validation
                if ["filter", "filter.taskId", "taskId"]
                    .iter()
                    .any(|f| error.has_field(f)) =>
            {
                Some(format!(
                    "{} needs the id of an existing task in taskId. Check it and call again.",
                    Self::NAME
                ))
            }
            _ => None,
        }
    }

    fn subject(params: &ListParams) -> Subject {
        Subject {
            task_id: Some(params.task_id.0),
            result_id: None,
        }
    }
}

impl Answer for ListAnswer {
    fn fit(&mut self) {
        let cuts = shown::fit(self, |a| &mut a.page.items, MAX_ANSWER_BYTES);
        let Some(first) = cuts.first() else {
            return;
        };
        let offset = self.page.offset;
        self.note = Some(format!(
            "The texts of results {} were cut to keep this answer under 64 KiB (see textTruncated and textLength). \
             To read one in full, call task_result_list again with the same filters and order, limit 1 and offset = {offset} + \
             its position on this page (e.g. offset {} for result {}).",
            shown::ids(&cuts),
            offset as u64 + first.index as u64,
            first.id
        ));
    }
}
