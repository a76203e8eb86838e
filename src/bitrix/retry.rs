//! What to do after a failed attempt (docs/bitrix24-api.md#retries, after `limits.md`):
//!
//! - `QUERY_LIMIT_EXCEEDED`: the portal refused before running the method, so always
//!   retry, with growing delay and jitter, never sooner than `Retry-After`, up to a bound.
//! - `OPERATION_TIME_LIMIT`: the method is blocked until `operating_reset_at`; wait for it
//!   when that is within the call's budget (the caller checks the budget).
//! - 5xx, dropped connections, timeouts: the request may have run. Reads are retried;
//!   writes only when they carry an `Idempotency-Key`, which makes a repeat a replay,
//!   and, unless the portal itself answered, not before its run limit has passed since
//!   the attempt was sent (the caller adds that wait: two requests with one key at the
//!   same moment may both run).
//!   A refused connection never reached the portal and is retried either way.
//! - Anything else (the other 4xx, undecodable successes) is final.
//!
//! Also here: the per-method memory of the operating limit, shared by every call. No wait
//! is longer than the portal's own 10-minute window ([`MAX_OPERATING_WAIT`]), whatever
//! an answer claims, and a blocked method lets one probe call through every
//! [`PROBE_INTERVAL`], so a block that lifts early (clock skew, a portal restart) is seen.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::envelope::TimeInfo;
use super::error::{CallError, ErrorClass, TransportKind};

/// The portal's operating-limit window: no `operating_reset_at` or `Retry-After` is
/// honoured beyond it (a larger one is a unit mistake or a hostile answer).
pub const MAX_OPERATING_WAIT: Duration = Duration::from_secs(600);

/// While a method is blocked, one call is let through at most this often.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(15);

/// `at` (unix seconds), but no later than [`MAX_OPERATING_WAIT`] from now.
pub fn cap_reset(at: f64) -> f64 {
    let latest = unix_now() + MAX_OPERATING_WAIT.as_secs_f64();
    if at.is_nan() { latest } else { at.min(latest) }
}

/// A `Retry-After` of `secs` seconds, capped at [`MAX_OPERATING_WAIT`].
pub fn cap_retry_after(secs: u64) -> Duration {
    Duration::from_secs(secs.min(MAX_OPERATING_WAIT.as_secs()))
}

/// Whether waiting `wait` from now still ends by `deadline` (false on overflow).
pub fn fits(wait: Duration, deadline: tokio::time::Instant) -> bool {
    tokio::time::Instant::now()
        .checked_add(wait)
        .is_some_and(|t| t <= deadline)
}

/// Bounds and delays of the retry schedule.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after `QUERY_LIMIT_EXCEEDED`.
    pub query_limit_retries: u32,
    /// Retries after a 5xx, a dropped connection or a timeout.
    pub transient_retries: u32,
    /// Waits for an `operating_reset_at`.
    pub operating_waits: u32,
    /// First backoff delay; it doubles with every retry of the same kind.
    pub base_delay: Duration,
    /// Largest backoff delay (`Retry-After` may ask for more).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            query_limit_retries: 8,
            transient_retries: 3,
            operating_waits: 2,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// The decision after one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// The portal's rate limit: mark the bucket full, wait, try again.
    QueryLimit(Duration),
    /// The request may or may not have run, or never left: wait, try again.
    Transient(Duration),
    /// The method is blocked until this unix time.
    OperatingReset(f64),
    /// Return the error.
    GiveUp,
}

/// The retry state of one call.
#[derive(Debug)]
pub struct Retrier {
    policy: RetryPolicy,
    /// Repeating the request cannot apply it twice: a read, or a write with a key.
    repeatable: bool,
    query_limit: u32,
    transient: u32,
    operating: u32,
}

impl Retrier {
    /// The schedule for one call; `repeatable` is true for reads and for writes that
    /// carry an `Idempotency-Key`.
    pub fn new(policy: RetryPolicy, repeatable: bool) -> Self {
        Retrier {
            policy,
            repeatable,
            query_limit: 0,
            transient: 0,
            operating: 0,
        }
    }

    /// Decides what follows `err`. `last_reset` is the method's `operating_reset_at` from
    /// its last successful answer, used when a 429 does not carry one.
    pub fn next(&mut self, err: &CallError, last_reset: Option<f64>) -> Step {
        match err {
            CallError::Portal(p) => match p.class() {
                ErrorClass::QueryLimit => {
                    if self.query_limit >= self.policy.query_limit_retries {
                        return Step::GiveUp;
                    }
                    let delay = backoff(&self.policy, self.query_limit);
                    self.query_limit += 1;
                    let asked = p.retry_after.unwrap_or_default().min(MAX_OPERATING_WAIT);
                    Step::QueryLimit(delay.max(asked))
                }
                ErrorClass::OperationTimeLimit => match p.operating_reset_at.or(last_reset) {
                    Some(at) if self.operating < self.policy.operating_waits => {
                        self.operating += 1;
                        Step::OperatingReset(cap_reset(at))
                    }
                    _ => Step::GiveUp,
                },
                ErrorClass::Internal => self.transient(true),
                _ => Step::GiveUp,
            },
            CallError::Transport(t) => match t.kind {
                // Nothing reached the portal.
                TransportKind::Connect => self.transient(false),
                TransportKind::Timeout | TransportKind::Interrupted => self.transient(true),
                TransportKind::TooLarge | TransportKind::Redirect => Step::GiveUp,
            },
            // An HTML 502/504 page from a proxy in front of the portal.
            CallError::Decode { status, .. } if *status >= 500 => self.transient(true),
            CallError::Decode { .. }
            | CallError::Budget(_)
            | CallError::OAuth { .. }
            | CallError::SignInEnded(_) => Step::GiveUp,
        }
    }

    fn transient(&mut self, may_have_run: bool) -> Step {
        if (may_have_run && !self.repeatable) || self.transient >= self.policy.transient_retries {
            return Step::GiveUp;
        }
        let delay = backoff(&self.policy, self.transient);
        self.transient += 1;
        Step::Transient(delay)
    }
}

/// `base * 2^n`, capped, with "equal jitter" (between half and all of it) so that calls
/// refused together do not come back together.
fn backoff(policy: &RetryPolicy, n: u32) -> Duration {
    let full = policy
        .base_delay
        .saturating_mul(2u32.saturating_pow(n.min(20)))
        .min(policy.max_delay);
    full.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// A fresh `Idempotency-Key` (docs/bitrix24-api.md#idempotency-key: 1–255 printable ASCII): a random UUID.
pub fn idempotency_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Per-method memory of the operating limit: the last `operating_reset_at` seen, and
/// until when the portal blocks the method after a 429.
#[derive(Debug, Default)]
pub struct OperatingGate {
    methods: Mutex<HashMap<String, MethodTime>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct MethodTime {
    last_reset_at: Option<f64>,
    blocked_until: Option<f64>,
    /// When the last call went to the portal while the method was (or became) blocked.
    last_probe: Option<Instant>,
}

/// What the gate says about sending a call of a method now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admit {
    /// Not blocked.
    Open,
    /// Blocked, but no call has checked for [`PROBE_INTERVAL`]: send this one.
    Probe,
    /// Blocked until this unix time, and a probe went out recently.
    Blocked(f64),
}

impl OperatingGate {
    fn with<R>(&self, method: &str, f: impl FnOnce(&mut MethodTime) -> R) -> R {
        let mut map = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(method.to_ascii_lowercase()).or_default())
    }

    /// Records a successful answer's `time` block; the method is evidently not blocked.
    pub fn observe(&self, method: &str, time: &TimeInfo) {
        self.with(method, |m| {
            if time.operating_reset_at.is_some() {
                m.last_reset_at = time.operating_reset_at;
            }
            m.blocked_until = None;
        });
    }

    /// The method's `operating_reset_at` from its last successful answer.
    pub fn last_reset(&self, method: &str) -> Option<f64> {
        self.with(method, |m| m.last_reset_at)
    }

    /// Marks the method blocked until `until` (unix seconds, capped by [`cap_reset`]);
    /// the call that met the block counts as a probe made at `now`.
    pub fn block(&self, method: &str, until: f64, now: Instant) {
        let until = cap_reset(until);
        self.with(method, |m| {
            m.blocked_until = Some(m.blocked_until.map_or(until, |b| b.max(until)));
            m.last_probe = Some(now);
        });
    }

    /// Whether a call of the method may go out at `now`; a [`Admit::Probe`] answer
    /// counts as the probe, so concurrent calls get [`Admit::Blocked`].
    pub fn admit(&self, method: &str, now: Instant) -> Admit {
        let unix = unix_now();
        self.with(method, |m| match m.blocked_until {
            Some(until) if until > unix => {
                let due = m.last_probe.is_none_or(|p| {
                    now.checked_duration_since(p)
                        .is_some_and(|d| d >= PROBE_INTERVAL)
                });
                if due {
                    m.last_probe = Some(now);
                    Admit::Probe
                } else {
                    Admit::Blocked(until)
                }
            }
            _ => Admit::Open,
        })
    }

    /// Until when the method is blocked, if that is still in the future.
    pub fn blocked_until(&self, method: &str) -> Option<f64> {
        let now = unix_now();
        self.with(method, |m| m.blocked_until.filter(|u| *u > now))
    }
}

/// Current unix time in seconds (the crate's clock, under the name the gate uses).
pub use crate::clock::now_f64 as unix_now;

/// How long until the unix time `at` (zero when it has passed), at most
/// [`MAX_OPERATING_WAIT`].
pub fn until_unix(at: f64) -> Duration {
    Duration::try_from_secs_f64((at - unix_now()).max(0.0))
        .unwrap_or(MAX_OPERATING_WAIT)
        .min(MAX_OPERATING_WAIT)
}

/// `12:40:05 UTC (in about 95 s)`: an operating reset is at most ten minutes away, so the
/// time of day says enough.
pub fn describe_unix(at: f64) -> String {
    let secs = at.ceil() as i64;
    let day = secs.rem_euclid(86_400);
    let wait = until_unix(at).as_secs_f64().ceil() as u64;
    format!(
        "{:02}:{:02}:{:02} UTC (in about {wait} s)",
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitrix::error::{PortalError, TransportError};

    fn portal(status: u16, code: &str) -> CallError {
        CallError::Portal(PortalError {
            status,
            code: code.into(),
            message: String::new(),
            validation: vec![],
            operating_reset_at: None,
            retry_after: None,
        })
    }

    fn transport(kind: TransportKind) -> CallError {
        CallError::Transport(TransportError {
            kind,
            detail: "x".into(),
        })
    }

    fn retrier(repeatable: bool) -> Retrier {
        Retrier::new(RetryPolicy::default(), repeatable)
    }

    #[test]
    fn query_limit_is_always_retried_with_growing_jittered_delay_up_to_a_bound() {
        // Even a write without a key: the portal refused it before running it.
        let mut r = retrier(false);
        let err = portal(503, "QUERY_LIMIT_EXCEEDED");
        let mut delays = Vec::new();
        while let Step::QueryLimit(d) = r.next(&err, None) {
            delays.push(d);
        }
        assert_eq!(delays.len(), 8);
        for (n, d) in delays.iter().enumerate() {
            let full =
                (Duration::from_millis(200) * 2u32.pow(n as u32)).min(Duration::from_secs(10));
            assert!(*d >= full / 2 && *d <= full, "retry {n}: {d:?} vs {full:?}");
        }
        assert_eq!(r.next(&err, None), Step::GiveUp);
    }

    #[test]
    fn retry_after_is_a_lower_bound() {
        let mut r = retrier(true);
        let mut err = portal(503, "QUERY_LIMIT_EXCEEDED");
        if let CallError::Portal(p) = &mut err {
            p.retry_after = Some(Duration::from_secs(3));
        }
        assert_eq!(r.next(&err, None), Step::QueryLimit(Duration::from_secs(3)));
    }

    #[test]
    fn operating_limit_waits_for_the_reset_from_the_error_or_the_last_answer() {
        let mut r = retrier(false);
        let mut err = portal(429, "OPERATION_TIME_LIMIT");
        assert_eq!(r.next(&err, Some(100.0)), Step::OperatingReset(100.0));
        if let CallError::Portal(p) = &mut err {
            p.operating_reset_at = Some(200.0);
        }
        assert_eq!(r.next(&err, Some(100.0)), Step::OperatingReset(200.0));
        assert_eq!(r.next(&err, Some(100.0)), Step::GiveUp);
        // Without any reset time there is nothing to wait for.
        let mut r = retrier(true);
        assert_eq!(
            r.next(&portal(429, "OPERATION_TIME_LIMIT"), None),
            Step::GiveUp
        );
    }

    #[test]
    fn ambiguous_failures_are_retried_for_reads_and_keyed_writes_only() {
        let ambiguous = [
            portal(500, "INTERNAL_SERVER_ERROR"),
            portal(502, "SOMETHING"),
            transport(TransportKind::Timeout),
            transport(TransportKind::Interrupted),
            CallError::Decode {
                status: 502,
                detail: "html".into(),
            },
        ];
        for err in &ambiguous {
            let mut repeatable = retrier(true);
            for _ in 0..3 {
                assert!(
                    matches!(repeatable.next(err, None), Step::Transient(_)),
                    "{err}"
                );
            }
            assert_eq!(repeatable.next(err, None), Step::GiveUp, "{err}");
            assert_eq!(retrier(false).next(err, None), Step::GiveUp, "{err}");
        }
        // A refused connection never reached the portal.
        assert!(matches!(
            retrier(false).next(&transport(TransportKind::Connect), None),
            Step::Transient(_)
        ));
    }

    #[test]
    fn other_errors_are_final() {
        for err in [
            portal(
                400,
                "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION",
            ),
            portal(403, "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION"),
            portal(
                422,
                "BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION",
            ),
            portal(401, "INVALID_CREDENTIALS"),
            portal(401, "expired_token"),
            portal(404, "ERROR_METHOD_NOT_FOUND"),
            portal(503, "OVERLOAD_LIMIT"),
            portal(418, "WHATEVER"),
            transport(TransportKind::TooLarge),
            transport(TransportKind::Redirect),
            CallError::Decode {
                status: 200,
                detail: "bad".into(),
            },
            CallError::Budget("x".into()),
        ] {
            assert_eq!(retrier(true).next(&err, None), Step::GiveUp, "{err}");
        }
    }

    #[test]
    fn gate_remembers_resets_and_blocks() {
        let gate = OperatingGate::default();
        gate.observe(
            "Tasks.Task.Result.Add",
            &TimeInfo {
                operating_reset_at: Some(123.0),
                ..TimeInfo::default()
            },
        );
        assert_eq!(gate.last_reset("tasks.task.result.add"), Some(123.0));
        assert_eq!(gate.blocked_until("tasks.task.result.add"), None);
        let later = unix_now() + 60.0;
        gate.block("tasks.task.result.add", later, Instant::now());
        assert_eq!(gate.blocked_until("tasks.task.result.add"), Some(later));
        assert_eq!(gate.blocked_until("tasks.task.result.list"), None);
        // A past block is no block; a success lifts it.
        gate.block("m", 1.0, Instant::now());
        assert_eq!(gate.blocked_until("m"), None);
        gate.observe("tasks.task.result.add", &TimeInfo::default());
        assert_eq!(gate.blocked_until("tasks.task.result.add"), None);
        assert_eq!(gate.last_reset("tasks.task.result.add"), Some(123.0));
    }

    #[test]
    fn blocks_are_capped_at_the_portals_window_and_probed_every_15_s() {
        let gate = OperatingGate::default();
        let t0 = Instant::now();
        for huge in [3600.0, 1e15, 1e300, f64::INFINITY] {
            gate.block("m", unix_now() + huge, t0);
            let until = gate.blocked_until("m").expect("blocked");
            assert!(until <= unix_now() + 600.0, "{huge}: {until}");
            assert!(until_unix(until) <= MAX_OPERATING_WAIT);
        }
        // The call that met the block was the probe; the next is due 15 s later.
        assert!(matches!(gate.admit("m", t0), Admit::Blocked(_)));
        let t14 = t0 + Duration::from_secs(14);
        assert!(matches!(gate.admit("m", t14), Admit::Blocked(_)));
        let t15 = t0 + PROBE_INTERVAL;
        assert_eq!(gate.admit("m", t15), Admit::Probe);
        // Only one probe per interval, even for concurrent calls.
        assert!(matches!(gate.admit("m", t15), Admit::Blocked(_)));
        assert_eq!(gate.admit("m", t15 + PROBE_INTERVAL), Admit::Probe);
        assert_eq!(gate.admit("other", t0), Admit::Open);
        // A success lifts the block at once.
        gate.observe("m", &TimeInfo::default());
        assert_eq!(gate.admit("m", t15), Admit::Open);
    }

    #[test]
    fn waits_never_exceed_the_window_and_never_overflow() {
        assert_eq!(until_unix(f64::MAX), MAX_OPERATING_WAIT);
        assert_eq!(until_unix(f64::INFINITY), MAX_OPERATING_WAIT);
        assert_eq!(until_unix(f64::NAN), Duration::ZERO);
        assert_eq!(cap_retry_after(999_999_999_999), MAX_OPERATING_WAIT);
        assert_eq!(cap_retry_after(3), Duration::from_secs(3));
        let mut r = retrier(true);
        let mut err = portal(429, "OPERATION_TIME_LIMIT");
        if let CallError::Portal(p) = &mut err {
            p.operating_reset_at = Some(1e15);
        }
        match r.next(&err, None) {
            Step::OperatingReset(at) => assert!(at <= unix_now() + 600.0, "{at}"),
            other => panic!("{other:?}"),
        }
        let mut err = portal(503, "QUERY_LIMIT_EXCEEDED");
        if let CallError::Portal(p) = &mut err {
            p.retry_after = Some(Duration::MAX);
        }
        assert_eq!(r.next(&err, None), Step::QueryLimit(MAX_OPERATING_WAIT));
        let _ = describe_unix(f64::MAX);
    }

    #[test]
    fn describes_a_unix_time_as_utc_clock_time() {
        // 2026-04-30T07:15:00Z
        assert!(describe_unix(1_777_533_300.0).starts_with("07:15:00 UTC (in about 0 s)"));
        let soon = describe_unix(unix_now() + 90.0);
        assert!(soon.contains("in about 9"), "{soon}");
    }

    #[test]
    fn idempotency_keys_are_fresh_printable_ascii() {
        let a = idempotency_key();
        assert_ne!(a, idempotency_key());
        assert!((1..=255).contains(&a.len()));
        assert!(a.bytes().all(|b| (0x20..=0x7e).contains(&b)));
    }
}
