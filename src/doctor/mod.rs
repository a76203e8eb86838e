//! `doctor`: checks the configuration and the portal, and says what to fix.
//!
//! It reports the credential mode and URL shape, the tool selection, the pacing plan,
//! then reaches the portal with one cheap read (`tasks.task.result.list`, page size 1, on
//! `--task-id` or on task 1) and times it. The portal checks a call's scope before it
//! looks at the task, so any answer other than a scope or credential error proves the
//! `tasks` scope (REST 3.0), even when the probe task is not visible to the webhook's user.
//! The v1 `task` scope is checked the same way with `tasks.task.list` (on no task), and
//! the `im` scope with `im.dialog.messages.get` (on the task's chat with `--task-id`).
//! Usable (exit 0) means the task-result tools can work; a missing `task` scope only
//! disables `task_search` and task id completion, a missing `im` scope only
//! `task_chat_messages_list`: warnings, each naming the scope to tick.
//! Every line goes through the redactor; the webhook secret never appears.
//! Just over 400 lines: one check per portal answer class, kept in one place with its advice.
//! With `--oauth` there is no identity to probe with: `sign_in.rs` checks that side instead.

mod sign_in;

use std::fmt::Write as _;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::app::{portal_client, shared_identity, start_sandbox};
use crate::bitrix::{CallError, Caller, Client, Effect, Endpoint, ErrorClass};
use crate::chat::{ChatError, ChatMessagesParams, TaskChat};
use crate::cli::{DoctorArgs, Plan};
use crate::redact;
use crate::results::{Id, method};
use crate::settings::{Pacing, PortalChoice, Settings};

/// The pacing the client will apply to portal calls.
pub fn pacing_plan(pacing: &Pacing) -> String {
    let budget = pacing.call_budget.as_secs();
    let plan = match pacing.plan {
        Plan::Standard => "standard",
        Plan::Enterprise => "enterprise",
        Plan::Unlimited => {
            return format!(
                "off (unlimited plan): calls are not paced; a 503 QUERY_LIMIT_EXCEEDED is still retried; \
                 a call waits at most {budget} s"
            );
        }
    };
    let overridden = if pacing.overridden {
        ", overridden"
    } else {
        ""
    };
    format!(
        "{} requests/s, burst {} ({plan} plan{overridden}); a call waits at most {budget} s",
        pacing.rate.per_sec, pacing.rate.burst
    )
}

/// What the doctor found, as printed.
#[derive(Default)]
pub struct Report {
    text: String,
    usable: bool,
}

impl Report {
    fn line(&mut self, status: &str, what: &str) {
        let _ = writeln!(self.text, "  {status:<5} {}", redact::redact(what));
    }
    fn heading(&mut self, what: &str) {
        let _ = writeln!(self.text, "{what}");
    }
    /// The printed report.
    pub fn text(&self) -> &str {
        &self.text
    }
    /// Whether the server can work with this configuration.
    pub fn usable(&self) -> bool {
        self.usable
    }
}

/// Runs every check.
pub async fn run(settings: &Settings, args: &DoctorArgs) -> Report {
    let mut r = Report::default();
    r.heading(&format!(
        "{} {} doctor",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION")
    ));
    r.heading("configuration");
    let mut config_ok = true;
    let portal = match &settings.portal {
        Ok(p) => Some(p),
        Err(e) => {
            r.line("FAIL", e);
            config_ok = false;
            None
        }
    };
    match settings.tools.resolve() {
        Ok(inv) => r.line(
            "ok",
            &format!(
                "tools offered: {}{}",
                inv.enabled()
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                if inv.read_only() {
                    " (read-only mode)"
                } else {
                    ""
                }
            ),
        ),
        Err(e) => {
            r.line("FAIL", &e);
            config_ok = false;
        }
    }
    let pacing = match &settings.pacing {
        Ok(p) => {
            r.line("info", &format!("pacing plan: {}", pacing_plan(p)));
            Some(p)
        }
        Err(e) => {
            r.line("FAIL", &format!("pacing plan: {e}"));
            config_ok = false;
            None
        }
    };
    let (Some(portal), Some(pacing)) = (portal, pacing) else {
        r.heading("result: NOT usable (fix the configuration above; exit 1)");
        return r;
    };
    match &settings.sign_in {
        Err(e) => {
            r.line("FAIL", e);
            r.heading("result: NOT usable (fix the configuration above; exit 1)");
            return r;
        }
        Ok(Some(s)) => {
            r.usable = config_ok && sign_in::check(&mut r, settings, s).await;
            r.heading(if r.usable {
                "result: usable (exit 0)"
            } else {
                "result: NOT usable (see FAIL above; exit 1)"
            });
            return r;
        }
        Ok(None) => {}
    }
    // Held until the checks are done.
    let (endpoint, _sandbox) = match &portal.choice {
        PortalChoice::Portal(endpoint) => {
            describe_endpoint(&mut r, endpoint);
            (endpoint.clone(), None)
        }
        PortalChoice::Sandbox => match start_sandbox().await {
            Ok((endpoint, sandbox)) => {
                r.line(
                    "ok",
                    &format!(
                        "credential mode: built-in sandbox portal at {} (an emulator, not a real portal)",
                        sandbox.base_url()
                    ),
                );
                (endpoint, Some(sandbox))
            }
            Err(e) => {
                r.line("FAIL", &format!("cannot start the sandbox portal: {e}"));
                r.heading("result: NOT usable (exit 1)");
                return r;
            }
        },
    };
    // With a Redis store the configured identity's pair is the replicas' shared one:
    // doctor takes its refresh turn like a replica, never spending the token alone.
    let mut portal = portal.clone();
    if let (Ok(Some(url)), Some(config)) = (&settings.shared, portal.refresh.as_mut()) {
        match shared_identity(url, settings.store_key.as_ref(), &endpoint.portal(), config).await {
            Ok(()) => r.line(
                "ok",
                "the OAuth identity's tokens are the replicas' shared pair (Redis)",
            ),
            Err(e) => {
                r.line("FAIL", &redact::redact(e.message()));
                r.heading("result: NOT usable (exit 1)");
                return r;
            }
        }
    }
    let (client, caller) = match portal_client(endpoint, &portal, pacing, None, None) {
        Ok(pair) => pair,
        Err(e) => {
            r.line("FAIL", &e);
            r.heading("result: NOT usable (exit 1)");
            return r;
        }
    };
    r.heading("portal");
    let (tasks_ok, reached) = check_tasks(&mut r, &client, &caller, args.task_id).await;
    if reached {
        check_task_v1(&mut r, &client, &caller).await;
    }
    if tasks_ok {
        check_im(&mut r, &client, &caller, args.task_id).await;
    }
    r.usable = config_ok && tasks_ok;
    r.heading(if r.usable {
        "result: usable (exit 0)"
    } else {
        "result: NOT usable (see FAIL above; exit 1)"
    });
    r
}

fn describe_endpoint(r: &mut Report, endpoint: &Endpoint) {
    let var = if matches!(endpoint.caller, Caller::Webhook(_)) {
        "--webhook-url / BITRIX24_WEBHOOK_URL"
    } else {
        "--portal-url + --access-token / BITRIX24_PORTAL_URL + BITRIX24_ACCESS_TOKEN"
    };
    r.line(
        "ok",
        &format!("credential mode: {} from {var}", endpoint.describe()),
    );
    if endpoint.is_https() {
        r.line(
            "ok",
            "URL shape: https, REST 3.0 calls go to /rest/api/, chat calls to /rest/",
        );
    } else if endpoint.is_loopback() {
        r.line(
            "ok",
            "URL shape: plain http on this machine (a local emulator?)",
        );
    } else {
        r.line(
            "warn",
            "URL shape: plain http to another host; Bitrix24 cloud portals require https (INVALID_REQUEST \"Https required\")",
        );
    }
}

#[derive(Serialize)]
struct ProbeList {
    filter: [(&'static str, u64); 1],
    select: [&'static str; 1],
    pagination: ProbePage,
}

#[derive(Serialize)]
struct ProbePage {
    limit: u32,
    offset: u32,
}

/// One cheap read of the result list: whether the task-result tools can work, and
/// whether the portal answered about its scopes at all.
async fn check_tasks(
    r: &mut Report,
    client: &Client,
    caller: &Caller,
    task_id: Option<u64>,
) -> (bool, bool) {
    let probe_task = task_id.unwrap_or(1);
    let body = ProbeList {
        filter: [("taskId", probe_task)],
        select: ["id"],
        pagination: ProbePage {
            limit: 1,
            offset: 0,
        },
    };
    let started = Instant::now();
    let outcome = client
        .call::<_, Value>(caller, method::LIST, &body, Effect::Read)
        .await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let reached = format!(
        "reached {}: {} answered in {ms:.0} ms (round trip)",
        client.portal().origin(),
        method::LIST
    );
    match outcome {
        Ok(_) => {
            r.line("ok", &reached);
            r.line("ok", SCOPE_TASKS_CONFIRMED);
            if task_id.is_some() {
                r.line(
                    "ok",
                    &format!("task {probe_task}: its results are readable"),
                );
            }
            (true, true)
        }
        Err(CallError::Portal(p)) => match p.class() {
            ErrorClass::AccessDenied | ErrorClass::Validation | ErrorClass::NotFound => {
                r.line("ok", &reached);
                r.line(
                    "ok",
                    &format!(
                        "{SCOPE_TASKS_CONFIRMED} (the portal checked the scope and then refused the probe task)"
                    ),
                );
                if task_id.is_some() {
                    r.line(
                        "warn",
                        &format!(
                            "task {probe_task}: not visible to the webhook's user ({}: {}); pick a task this user is a member of",
                            p.code, p.message
                        ),
                    );
                }
                (true, true)
            }
            ErrorClass::InsufficientScope => {
                r.line("ok", &reached);
                r.line(
                    "FAIL",
                    "scope tasks (REST 3.0 task methods, every task-result tool): missing. Edit the inbound webhook \
                     in Bitrix24 (Developer resources > Inbound webhook) and tick the tasks scope, then run doctor again",
                );
                (false, true)
            }
            ErrorClass::BadCredentials | ErrorClass::ExpiredToken => {
                r.line(
                    "FAIL",
                    &format!(
                        "the portal rejected the credentials ({}: {}): the webhook may have been deleted or regenerated, \
                         or the token expired; copy the webhook URL again",
                        p.code, p.message
                    ),
                );
                (false, false)
            }
            ErrorClass::MethodNotFound => {
                r.line(
                    "FAIL",
                    &format!(
                        "the portal does not offer REST 3.0 {} ({}): it runs a Bitrix24 version from before May 2026, \
                         or the URL is not a Bitrix24 REST endpoint",
                        method::LIST,
                        p.code
                    ),
                );
                (false, false)
            }
            ErrorClass::QueryLimit | ErrorClass::OperationTimeLimit => {
                r.line(
                    "FAIL",
                    &format!(
                        "the portal is rate-limiting this webhook right now ({}); wait a minute and run doctor again",
                        p.code
                    ),
                );
                (false, false)
            }
            _ => {
                r.line(
                    "FAIL",
                    &format!(
                        "the portal refused the probe: {} (HTTP {}): {}",
                        p.code, p.status, p.message
                    ),
                );
                (false, false)
            }
        },
        Err(CallError::Transport(t)) => {
            r.line(
                "FAIL",
                &format!(
                    "cannot reach {}: {}. Check the portal address and this machine's network or proxy",
                    client.portal().origin(),
                    t.detail
                ),
            );
            (false, false)
        }
        Err(e) => {
            r.line(
                "FAIL",
                &format!(
                    "{e}. Check that the URL points at a Bitrix24 portal (its inbound webhook URL)"
                ),
            );
            (false, false)
        }
    }
}

/// What the doctor says when the REST 3.0 probe passed the scope check.
const SCOPE_TASKS_CONFIRMED: &str = "scope tasks (REST 3.0 task methods): confirmed";

/// The v1 `task` scope, which `tasks.task.list` (task_search, task id completion) needs:
/// one search for task id 0, which the portal checks the scope of before it looks.
async fn check_task_v1(r: &mut Report, client: &Client, caller: &Caller) {
    const MISSING: &str = "scope task (REST v1 tasks.task.list, for task_search and task id completion): missing; \
        those will fail (the other tools work). Edit the inbound webhook in Bitrix24 and tick task as well as tasks";
    let probe = serde_json::json!({"filter": {"ID": 0}, "select": ["ID"]});
    let outcome = client
        .call_v1::<_, Value>(caller, crate::tasks::method::LIST, &probe, Effect::Read)
        .await;
    match outcome {
        Ok(_) => r.line(
            "ok",
            "scope task (REST v1 tasks.task.list, for task_search and task id completion): confirmed",
        ),
        Err(CallError::Portal(p)) => match p.class() {
            ErrorClass::InsufficientScope => r.line("warn", MISSING),
            ErrorClass::BadCredentials | ErrorClass::ExpiredToken | ErrorClass::MethodNotFound => r
                .line(
                    "warn",
                    &format!("scope task: could not check ({}: {})", p.code, p.message),
                ),
            // Any other refusal comes after the scope check.
            _ => r.line(
                "ok",
                "scope task (REST v1 tasks.task.list, for task_search and task id completion): confirmed",
            ),
        },
        Err(e) => r.line("warn", &format!("scope task: could not check ({e})")),
    }
}

/// The `im` scope: a warning when missing, since only the chat tool needs it.
async fn check_im(r: &mut Report, client: &Client, caller: &Caller, task_id: Option<u64>) {
    const MISSING: &str = "scope im: missing; task_chat_messages_list will fail (the other tools work). Edit the \
        inbound webhook in Bitrix24 and tick im (Chat and notifications) to enable it";
    let outcome = match task_id {
        Some(task) => {
            let params = ChatMessagesParams {
                task_id: Id(task),
                limit: None,
                before_id: None,
            };
            match TaskChat::new(client, caller).messages(&params).await {
                Ok(page) => {
                    r.line("ok", "scope im: confirmed");
                    r.line(
                        "ok",
                        &format!(
                            "task {task}: chat {} readable ({} recent messages)",
                            page.chat_id, page.count
                        ),
                    );
                    return;
                }
                Err(ChatError::NoChat { .. }) => {
                    r.line(
                        "warn",
                        &format!("task {task} has no chat; checking the im scope without it"),
                    );
                    probe_im(client, caller).await
                }
                Err(ChatError::Call { error, .. }) => Err(error),
            }
        }
        None => probe_im(client, caller).await,
    };
    match outcome {
        Ok(()) => r.line("ok", "scope im: confirmed"),
        Err(CallError::Portal(p)) => match p.class() {
            ErrorClass::InsufficientScope => r.line("warn", MISSING),
            ErrorClass::BadCredentials | ErrorClass::ExpiredToken | ErrorClass::MethodNotFound => r
                .line(
                    "warn",
                    &format!("scope im: could not check ({}: {})", p.code, p.message),
                ),
            // Any other refusal comes after the scope check.
            _ => r.line("ok", "scope im: confirmed"),
        },
        Err(e) => r.line("warn", &format!("scope im: could not check ({e})")),
    }
}

/// `im.dialog.messages.get` on a chat nobody is a member of: the scope is checked first.
async fn probe_im(client: &Client, caller: &Caller) -> Result<(), CallError> {
    #[derive(Serialize)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    struct Probe {
        dialog_id: &'static str,
        limit: u32,
    }
    client
        .call_v1::<_, Value>(
            caller,
            crate::chat::method::DIALOG_MESSAGES_GET,
            &Probe {
                dialog_id: "chat0",
                limit: 1,
            },
            Effect::Read,
        )
        .await
        .map(|_| ())
}
