//! Every tool's name, once. Each tool's `NAME` is one of these, and a tool's texts name its
//! siblings through here rather than through the sibling's type, so no tool imports another.

/// `tasks.task.result.add`.
pub const ADD: &str = "task_result_add";
/// `tasks.task.result.addfromchatmessage`.
pub const ADD_FROM_CHAT: &str = "task_result_add_from_chat";
/// `tasks.task.result.update`.
pub const UPDATE: &str = "task_result_update";
/// `tasks.task.result.list`.
pub const LIST: &str = "task_result_list";
/// `tasks.task.result.delete`.
pub const DELETE: &str = "task_result_delete";
/// `tasks.task.get` + `im.dialog.messages.get`.
pub const CHAT_MESSAGES: &str = "task_chat_messages_list";
/// `tasks.task.get`.
pub const GET: &str = "task_get";
/// v1 `tasks.task.list`.
pub const SEARCH: &str = "task_search";
