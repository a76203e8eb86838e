//! The portal's data: users, tasks, chats, messages and task results, with the seed set.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::time;

pub(crate) struct User {
    pub(crate) id: i64,
    pub(crate) first_name: &'static str,
    pub(crate) last_name: &'static str,
}

impl User {
    pub(crate) fn name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }
}

pub(crate) struct Task {
    pub(crate) id: i64,
    pub(crate) title: String,
    /// REST 3.0 status string: `pending`, `in_progress`, `completed`, …
    pub(crate) status: &'static str,
    pub(crate) creator_id: i64,
    pub(crate) responsible_id: i64,
    /// Everyone with access: creator, responsible, participants and observers.
    pub(crate) member_ids: Vec<i64>,
    /// The observers among the members (the rest besides creator and responsible are
    /// participants).
    pub(crate) auditor_ids: Vec<i64>,
    pub(crate) chat_id: i64,
    pub(crate) created: i64,
    /// Last change (a new result counts as one).
    pub(crate) changed: i64,
    pub(crate) deadline: Option<i64>,
    pub(crate) closed: Option<i64>,
    pub(crate) require_result: bool,
}

/// The REST 3.0 statuses and their v1 numbers (`REAL_STATUS`, docs fields-rest-v3.md and
/// the Russian tasks-task-list.md: 1 new, 2 pending … 7 declined).
pub(crate) const STATUSES: [(&str, i64); 6] = [
    ("pending", 2),
    ("in_progress", 3),
    ("supposedly_completed", 4),
    ("completed", 5),
    ("deferred", 6),
    ("declined", 7),
];

impl Task {
    pub(crate) fn is_completed(&self) -> bool {
        self.status == "completed"
    }

    /// The v1 status number.
    pub(crate) fn real_status(&self) -> i64 {
        STATUSES
            .iter()
            .find(|(s, _)| *s == self.status)
            .map_or(2, |(_, n)| *n)
    }

    /// Participants: members that are neither creator, responsible nor observer.
    pub(crate) fn accomplice_ids(&self) -> Vec<i64> {
        self.member_ids
            .iter()
            .copied()
            .filter(|m| {
                *m != self.creator_id && *m != self.responsible_id && !self.auditor_ids.contains(m)
            })
            .collect()
    }
}

/// A task to add to the sandbox portal (tests and trials), with `..NewTask::default()`.
#[derive(Clone, Debug)]
pub struct NewTask {
    pub title: String,
    /// A REST 3.0 status (`pending`, `in_progress`, `supposedly_completed`, `completed`,
    /// `deferred`, `declined`); anything else is `pending`.
    pub status: String,
    pub creator_id: u64,
    pub responsible_id: u64,
    /// Other members (participants); creator and responsible are members anyway.
    pub participant_ids: Vec<u64>,
    /// Observers.
    pub auditor_ids: Vec<u64>,
    /// Unix seconds.
    pub deadline: Option<i64>,
    pub require_result: bool,
}

impl Default for NewTask {
    fn default() -> Self {
        NewTask {
            title: "New task".into(),
            status: "pending".into(),
            creator_id: 1,
            responsible_id: 1,
            participant_ids: Vec::new(),
            auditor_ids: Vec::new(),
            deadline: None,
            require_result: false,
        }
    }
}

/// A chat is either a task's chat (members = task members) or a private dialog.
pub(crate) enum ChatKind {
    /// Task chat whose `entityId` is this task id (the task may have been deleted).
    Task(i64),
    Private(Vec<i64>),
}

pub(crate) struct Message {
    pub(crate) id: i64,
    pub(crate) chat_id: i64,
    pub(crate) author_id: i64,
    pub(crate) text: String,
    pub(crate) date: i64,
    pub(crate) file_ids: Vec<i64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultStatus {
    Open,
    Closed,
}

impl ResultStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Open => "open",
            ResultStatus::Closed => "closed",
        }
    }
}

pub(crate) struct TaskResult {
    pub(crate) id: i64,
    pub(crate) task_id: i64,
    pub(crate) text: String,
    pub(crate) author_id: i64,
    pub(crate) created_at: i64,
    pub(crate) updated_at: Option<i64>,
    pub(crate) status: ResultStatus,
    pub(crate) file_ids: Vec<i64>,
    pub(crate) message_id: Option<i64>,
}

/// Every field of a result item, in the documented order (docs/bitrix24-api.md#result-item).
pub(crate) const RESULT_FIELDS: [&str; 10] = [
    "id",
    "taskId",
    "text",
    "authorId",
    "createdAt",
    "updatedAt",
    "status",
    "fileIds",
    "rights",
    "messageId",
];

pub(crate) struct World {
    pub(crate) users: Vec<User>,
    pub(crate) tasks: BTreeMap<i64, Task>,
    pub(crate) chats: BTreeMap<i64, ChatKind>,
    pub(crate) messages: BTreeMap<i64, Message>,
    pub(crate) results: BTreeMap<i64, TaskResult>,
    next_result_id: i64,
    next_message_id: i64,
    next_task_id: i64,
}

impl World {
    /// The seed set described in the module brief; `now` anchors the seeded dates.
    pub(crate) fn seed(now: i64) -> World {
        let hour = 3600;
        let users = vec![
            User {
                id: 1,
                first_name: "Sandbox",
                last_name: "User",
            },
            User {
                id: 2,
                first_name: "Other",
                last_name: "User",
            },
        ];
        let day = 24 * hour;
        // (id, title, status, creator, responsible, other members, observers, chat,
        // changed hours ago, deadline in hours from now, requires a result)
        type Seed<'a> = (
            i64,
            &'a str,
            &'static str,
            i64,
            i64,
            &'a [i64],
            &'a [i64],
            i64,
            i64,
            Option<i64>,
            bool,
        );
        #[rustfmt::skip]
        let seeds: [Seed; 10] = [
            (51, "Prepare the quarterly report", "pending", 1, 1, &[2], &[], 2537, 2, Some(3 * 24), true),
            (52, "Fix the login page", "in_progress", 1, 2, &[], &[], 2538, 1, Some(24), false),
            (53, "Confidential task", "pending", 2, 2, &[], &[], 2539, 4, None, false),
            (54, "Closed task", "completed", 1, 1, &[2], &[], 2540, 30, None, false),
            (56, "Export invoices to the accounting system", "supposedly_completed", 2, 1, &[], &[], 2542, 5, Some(-2 * 24), true),
            (57, "Подготовить отчёт по продажам за квартал", "pending", 2, 1, &[], &[], 2543, 3, Some(7 * 24), true),
            (58, "Обновить страницу входа в личный кабинет", "deferred", 1, 1, &[], &[], 2544, 50, None, false),
            (59, "Review the onboarding checklist", "declined", 2, 2, &[], &[1], 2545, 70, None, false),
            (60, "Счёт для клиента «Ромашка»", "in_progress", 1, 2, &[], &[], 2546, 6, Some(2 * 24), false),
            (61, "Plan the team offsite", "pending", 2, 2, &[], &[1], 2547, 80, Some(30 * 24), false),
        ];
        let tasks: BTreeMap<i64, Task> = seeds
            .into_iter()
            .map(
                |(
                    id,
                    title,
                    status,
                    creator_id,
                    responsible_id,
                    others,
                    auditors,
                    chat_id,
                    changed_h,
                    deadline_h,
                    require_result,
                )| {
                    let mut member_ids = vec![creator_id, responsible_id];
                    member_ids.extend(others.iter().chain(auditors));
                    member_ids.sort_unstable();
                    member_ids.dedup();
                    let task = Task {
                        id,
                        title: title.to_string(),
                        status,
                        creator_id,
                        responsible_id,
                        member_ids,
                        auditor_ids: auditors.to_vec(),
                        chat_id,
                        created: now - 20 * day - id * hour,
                        changed: now - changed_h * hour,
                        deadline: deadline_h.map(|h| now + h * hour),
                        closed: (status == "completed").then_some(now - changed_h * hour),
                        require_result,
                    };
                    (id, task)
                },
            )
            .collect();
        let chats = BTreeMap::from([
            (2537, ChatKind::Task(51)),
            (2538, ChatKind::Task(52)),
            (2539, ChatKind::Task(53)),
            (2540, ChatKind::Task(54)),
            (2542, ChatKind::Task(56)),
            (2543, ChatKind::Task(57)),
            (2544, ChatKind::Task(58)),
            (2545, ChatKind::Task(59)),
            (2546, ChatKind::Task(60)),
            (2547, ChatKind::Task(61)),
            // Chat of a task that has since been deleted: "Task not found" on addfromchatmessage.
            (2541, ChatKind::Task(55)),
            (3001, ChatKind::Private(vec![1, 2])),
        ]);
        let msg = |id, chat_id, author_id, text: &str, age_h: i64, files: &[i64]| {
            (
                id,
                Message {
                    id,
                    chat_id,
                    author_id,
                    text: text.to_string(),
                    date: now - age_h * hour,
                    file_ids: files.to_vec(),
                },
            )
        };
        let messages = BTreeMap::from([
            msg(335, 2537, 1, "Work finished, report attached", 5, &[7001]),
            msg(336, 2537, 2, "Numbers look good to me", 4, &[]),
            msg(337, 2537, 1, "", 3, &[]),
            msg(340, 2538, 1, "Login page fixed and deployed", 2, &[]),
            msg(345, 2539, 2, "Confidential progress note", 2, &[]),
            msg(350, 2540, 1, "Everything is done", 30, &[]),
            msg(
                360,
                2541,
                1,
                "Message in the chat of a deleted task",
                40,
                &[],
            ),
            msg(900, 3001, 2, "Private hello", 1, &[]),
        ]);
        let results = BTreeMap::from([
            (
                17,
                TaskResult {
                    id: 17,
                    task_id: 51,
                    text: "Draft numbers checked".to_string(),
                    author_id: 2,
                    created_at: now - 48 * hour,
                    updated_at: None,
                    status: ResultStatus::Open,
                    file_ids: Vec::new(),
                    message_id: None,
                },
            ),
            (
                18,
                TaskResult {
                    id: 18,
                    task_id: 54,
                    text: "All deliverables accepted".to_string(),
                    author_id: 1,
                    created_at: now - 72 * hour,
                    updated_at: Some(now - 60 * hour),
                    status: ResultStatus::Closed,
                    file_ids: Vec::new(),
                    message_id: None,
                },
            ),
        ]);
        World {
            users,
            tasks,
            chats,
            messages,
            results,
            next_result_id: 100,
            next_message_id: 1000,
            next_task_id: 1000,
        }
    }

    /// Adds `t` with the next free id and a chat of its own; returns the id.
    pub(crate) fn add_task(&mut self, t: NewTask, now: i64) -> i64 {
        let id = self.next_task_id;
        self.next_task_id += 1;
        let chat_id = 100_000 + id;
        let status = STATUSES
            .iter()
            .map(|(s, _)| *s)
            .find(|s| *s == t.status)
            .unwrap_or("pending");
        let as_id = |u: u64| i64::try_from(u).unwrap_or(i64::MAX);
        let auditor_ids: Vec<i64> = t.auditor_ids.iter().copied().map(as_id).collect();
        let mut member_ids = vec![as_id(t.creator_id), as_id(t.responsible_id)];
        member_ids.extend(t.participant_ids.iter().copied().map(as_id));
        member_ids.extend(&auditor_ids);
        member_ids.sort_unstable();
        member_ids.dedup();
        self.tasks.insert(
            id,
            Task {
                id,
                title: t.title,
                status,
                creator_id: as_id(t.creator_id),
                responsible_id: as_id(t.responsible_id),
                member_ids,
                auditor_ids,
                chat_id,
                created: now,
                // Distinct, increasing: the newest task is the most recently changed.
                changed: now + id,
                deadline: t.deadline,
                closed: (status == "completed").then_some(now),
                require_result: t.require_result,
            },
        );
        self.chats.insert(chat_id, ChatKind::Task(id));
        id
    }

    pub(crate) fn user(&self, id: i64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    /// Read access = membership (the sandbox has no admins and no department rules).
    pub(crate) fn can_read_task(&self, task_id: i64, user: i64) -> bool {
        self.tasks
            .get(&task_id)
            .is_some_and(|t| t.member_ids.contains(&user))
    }

    /// Members of a chat: the task's members for task chats (none if the task is gone).
    pub(crate) fn chat_members(&self, chat_id: i64) -> Vec<i64> {
        match self.chats.get(&chat_id) {
            Some(ChatKind::Task(task_id)) => self
                .tasks
                .get(task_id)
                .map(|t| t.member_ids.clone())
                .unwrap_or_default(),
            Some(ChatKind::Private(members)) => members.clone(),
            None => Vec::new(),
        }
    }

    /// Creates a result. docs/bitrix24-api.md#result-item: only new results on an unfinished task are open.
    pub(crate) fn add_result(
        &mut self,
        task_id: i64,
        text: String,
        author_id: i64,
        message_id: Option<i64>,
        file_ids: Vec<i64>,
        now: i64,
    ) -> i64 {
        let id = self.next_result_id;
        self.next_result_id += 1;
        let closed = self.tasks.get(&task_id).is_some_and(Task::is_completed);
        if let Some(task) = self.tasks.get_mut(&task_id) {
            task.changed = task.changed.max(now);
        }
        self.results.insert(
            id,
            TaskResult {
                id,
                task_id,
                text,
                author_id,
                created_at: now,
                updated_at: None,
                status: if closed {
                    ResultStatus::Closed
                } else {
                    ResultStatus::Open
                },
                file_ids,
                message_id,
            },
        );
        id
    }

    pub(crate) fn add_message(
        &mut self,
        chat_id: i64,
        author_id: i64,
        text: String,
        now: i64,
    ) -> i64 {
        let id = self.next_message_id;
        self.next_message_id += 1;
        self.messages.insert(
            id,
            Message {
                id,
                chat_id,
                author_id,
                text,
                date: now,
                file_ids: Vec::new(),
            },
        );
        id
    }

    /// Only the author may edit or remove a result (docs/bitrix24-api.md#update, #delete; no admin override).
    pub(crate) fn may_modify(&self, result: &TaskResult, user: i64) -> bool {
        result.author_id == user && self.can_read_task(result.task_id, user)
    }

    /// The full REST 3.0 item (docs/bitrix24-api.md#result-item), rights computed for `user`.
    pub(crate) fn result_item(&self, r: &TaskResult, user: i64) -> Value {
        let may = self.may_modify(r, user);
        json!({
            "id": r.id,
            "taskId": r.task_id,
            "text": r.text,
            "authorId": r.author_id,
            "createdAt": time::portal_datetime(r.created_at),
            "updatedAt": r.updated_at.map(time::portal_datetime),
            "status": r.status.as_str(),
            "fileIds": r.file_ids,
            "rights": { "edit": may, "remove": may },
            "messageId": r.message_id,
        })
    }

    pub(crate) fn result_items(&self, user: i64) -> Vec<Value> {
        self.results
            .values()
            .map(|r| self.result_item(r, user))
            .collect()
    }

    /// Snapshot for `GET /_sandbox/state`.
    pub(crate) fn state_json(&self, user: i64) -> Value {
        let tasks: Vec<Value> = self
            .tasks
            .values()
            .map(|t| {
                json!({
                    "id": t.id, "title": t.title, "status": t.status, "chatId": t.chat_id,
                    "memberIds": t.member_ids,
                })
            })
            .collect();
        let messages: Vec<Value> = self
            .messages
            .values()
            .map(|m| {
                json!({
                    "id": m.id, "chatId": m.chat_id, "authorId": m.author_id, "text": m.text,
                    "date": time::portal_datetime(m.date), "fileIds": m.file_ids,
                })
            })
            .collect();
        json!({ "results": self.result_items(user), "tasks": tasks, "messages": messages })
    }
}
