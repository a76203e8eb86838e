//! Next-step texts that more than one tool gives, in one place, each named for what it
//! tells the model. A tool's own next steps stay in its file.

use super::names;

/// The caller cannot reach the task (or it does not exist): check the task id, or call
/// with the credentials of a member of the task.
pub(crate) const CHECK_TASK_ID_OR_USE_A_MEMBER: &str = "the webhook's user has no access to this task (or it does not exist). \
     Check the task id (a task id, not a result id), or use the credentials of a member of the task.";

/// Only a result's author may change it, and a missing result looks the same: check the
/// result id and its author and rights with the list tool.
pub(crate) fn only_the_author_may_change_it() -> String {
    format!(
        "only the author of a result may update or delete it, and the portal \
     gives the same answer for a result id that does not exist. Check the result id (not the task id) and its \
     authorId and rights with {}.",
        names::LIST
    )
}
