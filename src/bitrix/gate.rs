//! Where the operating-limit memory of each method lives: in this process
//! ([`OperatingGate`]) or, for replicas behind one address, in a [`SharedGate`] (Redis, in
//! `replicas::gate`), so that a block one replica met holds for all of them and only
//! one probe per [`PROBE_INTERVAL`] goes out across them.
//!
//! What the replicas must agree on is small: until when a method is blocked, that a
//! success lifts the block, and who sends the next probe. The last `operating_reset_at`
//! seen stays per process: it only fills in a reset time an error left out.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::caller::BoxFuture;
use super::envelope::TimeInfo;
use super::retry::{Admit, OperatingGate, PROBE_INTERVAL, cap_reset, unix_now};

/// The shared operating-limit memory could not be asked: the call must not go (a call
/// from every replica to a blocked method is what the shared gate is there to prevent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the shared operating-limit memory ({store}) is unavailable: {detail}")]
pub struct GateUnavailable {
    /// The store, as [`SharedGate::store`] names it.
    pub store: String,
    /// What went wrong, without credentials.
    pub detail: String,
}

/// Per-method operating-limit blocks kept outside the process, so that several replicas
/// share them. `key` names the portal and the method (see [`Gate::shared`]).
pub trait SharedGate: Send + Sync {
    /// Names the store for errors and logs ("Redis at host:port/db"), without credentials.
    fn store(&self) -> String;

    /// With `now` in unix seconds: [`Admit::Open`] unless the method is blocked beyond
    /// `now`; when it is, claims the probe for `probe_interval` atomically, so that of all
    /// callers in that interval exactly one gets [`Admit::Probe`] and the others
    /// [`Admit::Blocked`] with the block's end.
    fn admit<'a>(
        &'a self,
        key: &'a str,
        now: f64,
        probe_interval: Duration,
    ) -> BoxFuture<'a, Result<Admit, GateUnavailable>>;

    /// The method is blocked until `until` (unix seconds, already capped; a later block
    /// already stored stays), and the call that met the block counts as the probe for
    /// `probe_interval`.
    fn block<'a>(
        &'a self,
        key: &'a str,
        until: f64,
        probe_interval: Duration,
    ) -> BoxFuture<'a, Result<(), GateUnavailable>>;

    /// A call of the method succeeded: its block and probe claim go.
    fn clear<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), GateUnavailable>>;
}

impl fmt::Debug for dyn SharedGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedGate({})", self.store())
    }
}

/// The gate a [`super::Client`] consults: local, or shared under its portal's origin.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    local: OperatingGate,
    shared: Option<(Arc<dyn SharedGate>, String)>,
}

impl Gate {
    /// Blocks kept in `gate` under `origin` and the method's lowercase name.
    pub(crate) fn shared(gate: Arc<dyn SharedGate>, origin: String) -> Self {
        Gate {
            local: OperatingGate::default(),
            shared: Some((gate, origin)),
        }
    }

    fn key(origin: &str, method: &str) -> String {
        format!("{origin}/{}", method.to_ascii_lowercase())
    }

    /// Whether a call of `method` may go now (see [`OperatingGate::admit`]).
    pub(crate) async fn admit(&self, method: &str) -> Result<Admit, GateUnavailable> {
        match &self.shared {
            None => Ok(self.local.admit(method, Instant::now())),
            Some((gate, origin)) => {
                let key = Self::key(origin, method);
                gate.admit(&key, unix_now(), PROBE_INTERVAL).await
            }
        }
    }

    /// Marks `method` blocked until `until`. A shared gate that does not answer is only
    /// logged: the next `admit` fails, so no call goes out unchecked.
    pub(crate) async fn block(&self, method: &str, until: f64) {
        let Some((gate, origin)) = &self.shared else {
            self.local.block(method, until, Instant::now());
            return;
        };
        let until = cap_reset(until);
        // A reset already past blocks nothing (the local gate admits it as open too).
        if until <= unix_now() {
            return;
        }
        let key = Self::key(origin, method);
        if let Err(e) = gate.block(&key, until, PROBE_INTERVAL).await {
            tracing::warn!(method, error = %e, "could not record the operating-limit block in the shared store");
        }
    }

    /// Records a successful answer. `saw_block`: this call found the method blocked, so
    /// the shared block (if any) is lifted; calls that found it open save the round trip.
    pub(crate) async fn observe(&self, method: &str, time: &TimeInfo, saw_block: bool) {
        self.local.observe(method, time);
        if let Some((gate, origin)) = &self.shared
            && saw_block
        {
            let key = Self::key(origin, method);
            if let Err(e) = gate.clear(&key).await {
                // The block then ends at its time, or with the next successful probe.
                tracing::warn!(method, error = %e, "could not lift the operating-limit block in the shared store");
            }
        }
    }

    /// The method's `operating_reset_at` from its last successful answer in this process.
    pub(crate) fn last_reset(&self, method: &str) -> Option<f64> {
        self.local.last_reset(method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A shared gate in memory that records the keys it is asked about.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
        down: bool,
    }

    impl Recorder {
        fn answer<T>(&self, call: String, ok: T) -> Result<T, GateUnavailable> {
            self.calls.lock().unwrap().push(call);
            if self.down {
                Err(GateUnavailable {
                    store: "memory".into(),
                    detail: "down".into(),
                })
            } else {
                Ok(ok)
            }
        }
    }

    impl SharedGate for Recorder {
        fn store(&self) -> String {
            "memory".into()
        }
        fn admit<'a>(
            &'a self,
            key: &'a str,
            _now: f64,
            _probe: Duration,
        ) -> BoxFuture<'a, Result<Admit, GateUnavailable>> {
            Box::pin(async move { self.answer(format!("admit {key}"), Admit::Open) })
        }
        fn block<'a>(
            &'a self,
            key: &'a str,
            until: f64,
            _probe: Duration,
        ) -> BoxFuture<'a, Result<(), GateUnavailable>> {
            // Capped at the portal's 10-minute window, not the hour asked for.
            let capped = until <= unix_now() + 600.0 && until > unix_now() + 599.0;
            Box::pin(async move { self.answer(format!("block {key} capped={capped}"), ()) })
        }
        fn clear<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), GateUnavailable>> {
            Box::pin(async move { self.answer(format!("clear {key}"), ()) })
        }
    }

    #[tokio::test]
    async fn the_shared_gate_is_keyed_by_origin_and_lowercase_method_and_capped() {
        let rec = Arc::new(Recorder::default());
        let gate = Gate::shared(rec.clone(), "https://p.example".into());
        let time = TimeInfo::default();
        assert_eq!(gate.admit("Tasks.Task.Get").await, Ok(Admit::Open));
        gate.observe("tasks.task.get", &time, false).await;
        gate.block("TASKS.task.get", unix_now() + 3600.0).await;
        // A reset already past is not written.
        gate.block("tasks.task.get", unix_now() - 1.0).await;
        gate.observe("tasks.task.get", &time, true).await;
        assert_eq!(
            *rec.calls.lock().unwrap(),
            [
                "admit https://p.example/tasks.task.get",
                "block https://p.example/tasks.task.get capped=true",
                "clear https://p.example/tasks.task.get",
            ]
        );
    }

    #[tokio::test]
    async fn a_shared_gate_that_is_down_admits_nothing() {
        let rec = Arc::new(Recorder {
            down: true,
            ..Recorder::default()
        });
        let gate = Gate::shared(rec, "https://p.example".into());
        let e = gate.admit("tasks.task.get").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "the shared operating-limit memory (memory) is unavailable: down"
        );
        // Recording is best effort.
        gate.block("tasks.task.get", unix_now() + 60.0).await;
        gate.observe("tasks.task.get", &TimeInfo::default(), true)
            .await;
    }
}
