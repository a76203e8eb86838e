//! `task_result_add_from_chat`: tasks.task.result.addfromchatmessage.

use super::names;
use super::shown::Shown;
use super::texts::DATA;
use super::{Ctx, Effects, Failure, Subject, Tool};
use crate::bitrix::{ErrorClass, PortalError};
use crate::results::{AddFromChatParams, TaskResult, TaskResults, method};

/// Turns a message of a task's chat into a result of that task.
pub struct AddFromChat;

impl Tool for AddFromChat {
    type Params = AddFromChatParams;
    type Output = Shown<TaskResult>;

    const NAME: &'static str = names::ADD_FROM_CHAT;
    const TITLE: &'static str = "Add a task result from a chat message";
    const METHOD: &'static str = method::ADD_FROM_CHAT;
    const EFFECTS: Effects = Effects {
        read_only: false,
        destructive: false,
        idempotent: false,
    };

    fn description() -> String {
        format!(
            "Calls tasks.task.result.addfromchatmessage (Bitrix24 REST 3.0). Turns a message of a task's chat into a \
             result of that task; the message text becomes the result text and its files are attached. messageId is the id \
             of a message in the task's chat (not a task id, not a result id); messages from other chats are refused. \
             The task is found from the chat. Not idempotent. {DATA}"
        )
    }

    fn usage() -> String {
        "messageId (positive integer, the id of a message in the task's chat)".into()
    }

    async fn call(ctx: Ctx<'_>, params: AddFromChatParams) -> Result<Self::Output, Failure> {
        TaskResults::new(ctx.client, ctx.caller)
            .add_from_chat(&params)
            .await
            .map(Shown::new)
            .map_err(Failure::of(Self::METHOD))
    }

    fn next_step(error: &PortalError) -> Option<String> {
        match error.class() {
            ErrorClass::AccessDenied => Some(
                "the webhook's user has no access to the task this message belongs to. Check the \
                 message id, or use the credentials of a member of that task."
                    .into(),
            ),
            ErrorClass::Validation if error.has_field("messageId") => Some(
                "messageId must be the id of a message in a task's chat (not a task or result id). Find one in the task's \
                 chat, then call again."
                    .into(),
            ),
            // docs/bitrix24-api.md#addfromchatmessage: REQUESTVALIDATION on `taskId` when the chat's task is gone.
            ErrorClass::Validation if error.has_field("taskId") => Some(format!(
                "the task this chat message belongs to no longer exists. Check the message id, or add the result \
                 to an existing task with {}.",
                names::ADD
            )),
            _ => None,
        }
    }

    fn answered(output: &Self::Output) -> Subject {
        Subject {
            task_id: Some(output.item.task_id),
            result_id: Some(output.item.id),
        }
    }
}
