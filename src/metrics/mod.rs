//! The server's metrics, in one place: every series' name (all prefixed `bitrix24_mcp_`),
//! its HELP text, its labels' vocabularies, and the small functions the layers call to
//! record (`metrics::portal_request(method, status, elapsed)`); no layer builds a name.
//!
//! Recorded through the `metrics` facade and rendered by `metrics-exporter-prometheus` in
//! the classic text format on a listener of their own ([`listener`], `--metrics-listen`).
//! Off by default: until [`install`] runs, every function here returns at its first
//! line (one relaxed atomic load), so a server without metrics does no more work.
//!
//! **Bounded labels.** No label carries a person, a token, a task, a text or a URL, and
//! every label value comes from a set closed in the program text:
//! - `tool`: a tool's name from the registry (`&'static str`, 8 tools);
//! - `outcome` (tool calls): `tools::Outcome::as_str` (18 words);
//! - `method`: one of [`PORTAL_METHODS`], the REST methods the server itself calls;
//!   anything else is `other`;
//! - `status` (portal): an HTTP status number 100-599, or `error` when no answer came;
//!   (HTTP): the status this server answered, 100-599;
//! - `route`: the route pattern axum matched (the router's own table: `/mcp`, `/sse`,
//!   `/token`, …), or `other` for a path no route matched, so a scanner's paths
//!   never become series;
//! - `who`: `configured` or `person`; refresh `outcome`: [`RefreshOutcome`];
//! - `op` (store): [`StoreOp`]; `part` (Redis): [`RedisPart`];
//! - `reason` (gate): `blocked` or `unavailable`; `version`: this build's, one value.

pub mod listener;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Whether a recorder is installed; false until [`install`].
static ON: AtomicBool = AtomicBool::new(false);

#[inline]
fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// `bitrix24_mcp_build_info{version}`: always 1.
pub const BUILD_INFO: &str = "bitrix24_mcp_build_info";
/// Tool calls by tool and outcome.
pub const TOOL_CALLS: &str = "bitrix24_mcp_tool_calls_total";
/// Tool call durations by tool.
pub const TOOL_CALL_SECONDS: &str = "bitrix24_mcp_tool_call_duration_seconds";
/// Portal requests (attempts) by method and status.
pub const PORTAL_REQUESTS: &str = "bitrix24_mcp_portal_requests_total";
/// Portal request durations by method.
pub const PORTAL_REQUEST_SECONDS: &str = "bitrix24_mcp_portal_request_duration_seconds";
/// Retries of portal requests by method.
pub const PORTAL_RETRIES: &str = "bitrix24_mcp_portal_retries_total";
/// 503 `QUERY_LIMIT_EXCEEDED` answers by method.
pub const PORTAL_QUERY_LIMIT: &str = "bitrix24_mcp_portal_query_limit_answers_total";
/// 429 `OPERATION_TIME_LIMIT` answers by method.
pub const PORTAL_OPERATING_LIMIT: &str = "bitrix24_mcp_portal_operating_limit_answers_total";
/// Seconds each portal request waited for the pacing bucket (a histogram: its `_sum` is
/// the total wait; the facade's counters hold whole numbers only).
pub const PACING_WAIT: &str = "bitrix24_mcp_portal_pacing_wait_seconds";
/// Calls refused by the operating-limit gate, by method and reason.
pub const GATE_REFUSALS: &str = "bitrix24_mcp_portal_gate_refusals_total";
/// OAuth refreshes by outcome and whose pair.
pub const OAUTH_REFRESHES: &str = "bitrix24_mcp_oauth_refreshes_total";
/// People signed in with a live grant.
pub const PEOPLE_SIGNED_IN: &str = "bitrix24_mcp_people_signed_in";
/// Sign-ins started (an authorization request accepted).
pub const SIGN_INS_STARTED: &str = "bitrix24_mcp_sign_ins_started_total";
/// Sign-ins completed (a code exchanged for tokens).
pub const SIGN_INS_COMPLETED: &str = "bitrix24_mcp_sign_ins_completed_total";
/// Audit trail lines that could not be written (the action itself went ahead).
pub const AUDIT_WRITE_FAILURES: &str = "bitrix24_mcp_audit_write_failures_total";
/// Sign-ins denied on the consent page.
pub const SIGN_INS_DENIED: &str = "bitrix24_mcp_sign_ins_denied_total";
/// HTTP sessions open.
pub const HTTP_SESSIONS_OPEN: &str = "bitrix24_mcp_http_sessions_open";
/// HTTP requests by route and status.
pub const HTTP_REQUESTS: &str = "bitrix24_mcp_http_requests_total";
/// Sign-in store errors by operation class.
pub const STORE_ERRORS: &str = "bitrix24_mcp_store_errors_total";
/// Redis errors by the part that met them.
pub const REDIS_ERRORS: &str = "bitrix24_mcp_redis_errors_total";

/// The REST methods this server calls (`results::method`, `tasks::method`,
/// `chat::method`; a test keeps the lists equal). Any other name is labelled `other`.
pub const PORTAL_METHODS: [&str; 8] = [
    "tasks.task.get",
    "tasks.task.list",
    "tasks.task.result.add",
    "tasks.task.result.addfromchatmessage",
    "tasks.task.result.update",
    "tasks.task.result.list",
    "tasks.task.result.delete",
    "im.dialog.messages.get",
];

/// Upper bounds (seconds) of the duration histograms' buckets: a fast portal answers in
/// tens of milliseconds; a call that waited for the rate limit or retried takes seconds,
/// up to the call budget (30 s by default) and the portal's own 60 s cut.
const DURATION_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the Prometheus recorder (once per process) and describes every series;
/// from then on the functions here record. The handle renders the exposition.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &DURATION_BUCKETS)?
        .install_recorder()?;
    describe();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // Series without labels exist from the start, so `rate()` and alerts see a 0.
    for name in [
        SIGN_INS_STARTED,
        SIGN_INS_COMPLETED,
        SIGN_INS_DENIED,
        AUDIT_WRITE_FAILURES,
    ] {
        counter!(name).absolute(0);
    }
    gauge!(HTTP_SESSIONS_OPEN).set(0.0);
    ON.store(true, Ordering::Relaxed);
    Ok(handle)
}

fn describe() {
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the label `version` names this build's version."
    );
    describe_counter!(
        AUDIT_WRITE_FAILURES,
        "Audit trail lines that could not be written; the write or sign-in they record went ahead."
    );
    describe_counter!(
        TOOL_CALLS,
        "Tool calls by tool and outcome (ok, or the error class the model saw)."
    );
    describe_histogram!(
        TOOL_CALL_SECONDS,
        Unit::Seconds,
        "Tool call durations by tool, from the call's arrival to its answer."
    );
    describe_counter!(
        PORTAL_REQUESTS,
        "Requests sent to the Bitrix24 portal (each attempt) by REST method and HTTP status (error: no answer)."
    );
    describe_histogram!(
        PORTAL_REQUEST_SECONDS,
        Unit::Seconds,
        "Durations of requests to the Bitrix24 portal by REST method."
    );
    describe_counter!(
        PORTAL_RETRIES,
        "Portal requests sent again after a failed attempt, by REST method."
    );
    describe_counter!(
        PORTAL_QUERY_LIMIT,
        "503 QUERY_LIMIT_EXCEEDED answers of the portal (its rate limit), by REST method."
    );
    describe_counter!(
        PORTAL_OPERATING_LIMIT,
        "429 OPERATION_TIME_LIMIT answers of the portal (its execution-time limit), by REST method."
    );
    describe_histogram!(
        PACING_WAIT,
        Unit::Seconds,
        "Seconds each portal request waited for a slot of the client-side pacing bucket."
    );
    describe_counter!(
        GATE_REFUSALS,
        "Calls not sent because the portal blocks the method (operating limit) past the call budget, or the shared gate could not be asked."
    );
    describe_counter!(
        OAUTH_REFRESHES,
        "Bitrix24 OAuth token refreshes by outcome, for the configured identity or a signed-in person."
    );
    describe_gauge!(
        PEOPLE_SIGNED_IN,
        "People signed in with at least one live grant (read from the sign-in store at scrape time)."
    );
    describe_counter!(
        SIGN_INS_STARTED,
        "Sign-ins started: authorization requests accepted."
    );
    describe_counter!(
        SIGN_INS_COMPLETED,
        "Sign-ins completed: authorization codes exchanged for tokens."
    );
    describe_counter!(
        SIGN_INS_DENIED,
        "Sign-ins a person denied on the consent page."
    );
    describe_gauge!(
        HTTP_SESSIONS_OPEN,
        "HTTP sessions open (streamable HTTP and legacy SSE)."
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered on the MCP port, by route pattern and status."
    );
    describe_counter!(
        STORE_ERRORS,
        "Errors of the sign-in store by operation class."
    );
    describe_counter!(
        REDIS_ERRORS,
        "Redis failures by the part of the server that met them."
    );
}

/// The label for a REST method: its own name when it is one of [`PORTAL_METHODS`].
pub fn method_label(method: &str) -> &'static str {
    PORTAL_METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .copied()
        .unwrap_or("other")
}

/// An HTTP status as a label: the number when it is a valid status, else `other`.
fn status_label(status: u16) -> String {
    if (100..=599).contains(&status) {
        status.to_string()
    } else {
        "other".into()
    }
}

/// One finished tool call.
pub fn tool_call(tool: &'static str, outcome: &'static str, elapsed: Duration) {
    if !on() {
        return;
    }
    counter!(TOOL_CALLS, "tool" => tool, "outcome" => outcome).increment(1);
    ::metrics::histogram!(TOOL_CALL_SECONDS, "tool" => tool).record(elapsed.as_secs_f64());
}

/// One request (attempt) to the portal: its HTTP status, `None` when no answer came.
pub fn portal_request(method: &str, status: Option<u16>, elapsed: Duration) {
    if !on() {
        return;
    }
    let method = method_label(method);
    let status = status.map_or_else(|| "error".into(), status_label);
    counter!(PORTAL_REQUESTS, "method" => method, "status" => status).increment(1);
    ::metrics::histogram!(PORTAL_REQUEST_SECONDS, "method" => method).record(elapsed.as_secs_f64());
}

/// The portal's limits, as answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortalLimit {
    /// 503 `QUERY_LIMIT_EXCEEDED`: the rate limit.
    Query,
    /// 429 `OPERATION_TIME_LIMIT`: the execution-time limit of a method.
    Operating,
}

/// The portal answered that a limit was reached.
pub fn portal_limit(method: &str, limit: PortalLimit) {
    if !on() {
        return;
    }
    let name = match limit {
        PortalLimit::Query => PORTAL_QUERY_LIMIT,
        PortalLimit::Operating => PORTAL_OPERATING_LIMIT,
    };
    counter!(name, "method" => method_label(method)).increment(1);
}

/// A portal request is about to be sent again.
pub fn portal_retry(method: &str) {
    if !on() {
        return;
    }
    counter!(PORTAL_RETRIES, "method" => method_label(method)).increment(1);
}

/// Time a call waited for a pacing slot (zero when one was free at once).
pub fn pacing_wait(waited: Duration) {
    if !on() {
        return;
    }
    ::metrics::histogram!(PACING_WAIT).record(waited.as_secs_f64());
}

/// Why the operating-limit gate refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateRefusal {
    /// The method is blocked longer than the call may wait.
    Blocked,
    /// The shared gate (Redis) could not be asked; the call was not sent unchecked.
    Unavailable,
}

/// The operating-limit gate refused a call of `method`.
pub fn gate_refused(method: &str, why: GateRefusal) {
    if !on() {
        return;
    }
    let reason = match why {
        GateRefusal::Blocked => "blocked",
        GateRefusal::Unavailable => "unavailable",
    };
    counter!(GATE_REFUSALS, "method" => method_label(method), "reason" => reason).increment(1);
}

/// How an OAuth refresh ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// A new pair was issued and kept.
    Ok,
    /// Another process had refreshed: its pair was adopted, nothing spent.
    Adopted,
    /// The OAuth server refused for good (`invalid_grant`, `invalid_client`).
    Refused,
    /// Another process held the refresh lock too long.
    Busy,
    /// The holder (store, Redis, token file) failed.
    Unavailable,
    /// A signed-in person's sign-in has ended.
    Ended,
    /// Any other failure (the OAuth server unreachable or answering an error).
    Failed,
}

impl RefreshOutcome {
    fn as_str(self) -> &'static str {
        match self {
            RefreshOutcome::Ok => "ok",
            RefreshOutcome::Adopted => "adopted",
            RefreshOutcome::Refused => "refused",
            RefreshOutcome::Busy => "busy",
            RefreshOutcome::Unavailable => "unavailable",
            RefreshOutcome::Ended => "sign_in_ended",
            RefreshOutcome::Failed => "failed",
        }
    }
}

/// One OAuth refresh of a pair, a signed-in person's (`person`) or the configured
/// identity's.
pub fn oauth_refresh(outcome: RefreshOutcome, person: bool) {
    if !on() {
        return;
    }
    let who = if person { "person" } else { "configured" };
    counter!(OAUTH_REFRESHES, "outcome" => outcome.as_str(), "who" => who).increment(1);
}

/// How many people are signed in with a live grant, as the store says now.
pub fn people_signed_in(n: usize) {
    if !on() {
        return;
    }
    gauge!(PEOPLE_SIGNED_IN).set(n as f64);
}

/// An authorization request was accepted: a sign-in started.
pub fn sign_in_started() {
    if on() {
        counter!(SIGN_INS_STARTED).increment(1);
    }
}

/// The audit trail could not record an event.
pub fn audit_write_failed() {
    if on() {
        counter!(AUDIT_WRITE_FAILURES).increment(1);
    }
}

/// An authorization code was exchanged for tokens: a sign-in completed.
pub fn sign_in_completed() {
    if on() {
        counter!(SIGN_INS_COMPLETED).increment(1);
    }
}

/// A person denied a client on the consent page.
pub fn sign_in_denied() {
    if on() {
        counter!(SIGN_INS_DENIED).increment(1);
    }
}

/// One open HTTP session, counted in [`HTTP_SESSIONS_OPEN`] while it lives.
#[derive(Debug)]
pub struct OpenSession(bool);

impl OpenSession {
    /// Counts a session opening (closing when dropped).
    pub fn open() -> OpenSession {
        let counted = on();
        if counted {
            gauge!(HTTP_SESSIONS_OPEN).increment(1.0);
        }
        OpenSession(counted)
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        if self.0 {
            gauge!(HTTP_SESSIONS_OPEN).decrement(1.0);
        }
    }
}

/// One HTTP request answered on the MCP port: `route` is the matched route pattern
/// (`None` when no route matched).
pub fn http_request(route: Option<&str>, status: u16) {
    if !on() {
        return;
    }
    let route = route.unwrap_or("other").to_string();
    counter!(HTTP_REQUESTS, "route" => route, "status" => status_label(status)).increment(1);
}

/// The classes of sign-in store operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Looking something up.
    Read,
    /// Storing, taking (single use) or revoking.
    Write,
    /// The cross-process locks.
    Lock,
    /// Deleting what expired.
    Purge,
}

/// A sign-in store operation failed.
pub fn store_error(op: StoreOp) {
    if !on() {
        return;
    }
    let op = match op {
        StoreOp::Read => "read",
        StoreOp::Write => "write",
        StoreOp::Lock => "lock",
        StoreOp::Purge => "purge",
    };
    counter!(STORE_ERRORS, "op" => op).increment(1);
}

/// The parts of the server that talk to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisPart {
    /// The sign-in store.
    Store,
    /// The shared pacing bucket.
    Bucket,
    /// The shared operating-limit gate.
    Gate,
    /// The configured identity's shared token pair.
    Identity,
}

/// A Redis call failed (no answer in time, refused, unreachable, unreadable).
pub fn redis_error(part: RedisPart) {
    if !on() {
        return;
    }
    let part = match part {
        RedisPart::Store => "store",
        RedisPart::Bucket => "bucket",
        RedisPart::Gate => "gate",
        RedisPart::Identity => "identity",
    };
    counter!(REDIS_ERRORS, "part" => part).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_vocabulary_is_the_methods_the_server_calls() {
        // Test-only imports: the module itself imports nothing of the crate.
        let mut called = vec![
            crate::results::method::ADD,
            crate::results::method::ADD_FROM_CHAT,
            crate::results::method::UPDATE,
            crate::results::method::LIST,
            crate::results::method::DELETE,
            crate::tasks::method::GET,
            crate::tasks::method::LIST,
            crate::chat::method::TASK_GET,
            crate::chat::method::DIALOG_MESSAGES_GET,
        ];
        called.sort();
        called.dedup();
        let mut known = PORTAL_METHODS.to_vec();
        known.sort();
        assert_eq!(called, known);
        assert_eq!(method_label("TASKS.TASK.GET"), "tasks.task.get");
        assert_eq!(method_label("tasks.task.get?secret=1"), "other");
        assert_eq!(method_label("user.current"), "other");
    }

    #[test]
    fn statuses_outside_http_become_other() {
        assert_eq!(status_label(200), "200");
        assert_eq!(status_label(599), "599");
        assert_eq!(status_label(0), "other");
        assert_eq!(status_label(600), "other");
        assert_eq!(status_label(u16::MAX), "other");
    }
}
