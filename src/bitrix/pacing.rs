//! Client-side pacing: the portal's leaky bucket (docs/bitrix24-api.md#rate-limit), mirrored here so calls
//! wait for a slot instead of being refused with 503 QUERY_LIMIT_EXCEEDED.
//!
//! One [`Pacer`] lives in the [`super::Client`], which every session of the process
//! shares, so the whole process stays under the portal's limit.
//!
//! The bucket is a hand-written GCRA (generic cell rate algorithm, the "virtual
//! scheduling" form of a leaky bucket): one instant, the theoretical arrival time, is
//! the whole state. It is a dozen lines, and unlike `governor`'s `until_ready` it
//! *reserves* the slot a caller will use, so waiters are served in arrival order, a
//! caller knows up front how long it would wait (and can refuse when that exceeds its
//! time budget), and a 503 from the portal can mark the bucket full for every caller.
//!
//! Replicas behind one address share the portal's bucket, so they must share this one too:
//! [`Pacer::shared`] keeps the state in a [`SharedBucket`] (Redis, in `replicas::bucket`)
//! that runs the same GCRA atomically on its own clock. This file is over 400 lines because
//! the local and the shared bucket, and the tests that pin their common semantics, belong
//! together.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::caller::BoxFuture;

/// Leak rate and capacity of a leaky bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests the bucket drains per second.
    pub per_sec: f64,
    /// Requests that may go at once from an empty bucket.
    pub burst: u32,
}

impl Rate {
    /// Every plan but Enterprise: 2 requests/s, burst 50.
    pub const STANDARD: Rate = Rate {
        per_sec: 2.0,
        burst: 50,
    };
    /// Enterprise plans: 5 requests/s, burst 250.
    pub const ENTERPRISE: Rate = Rate {
        per_sec: 5.0,
        burst: 250,
    };

    /// No client-side pacing (`--plan unlimited`: a self-hosted portal with limits off).
    /// A 503 from the portal is still retried; only the waiting for slots is gone.
    pub const UNLIMITED: Rate = Rate {
        per_sec: f64::INFINITY,
        burst: u32::MAX,
    };

    /// Whether this is [`Rate::UNLIMITED`] (any infinite rate).
    pub fn is_unlimited(&self) -> bool {
        self.per_sec.is_infinite()
    }

    /// Time between two slots once the burst is used up.
    pub fn interval(&self) -> Duration {
        // Config validates the rate; the fallback only guards against a hand-built Rate.
        Duration::try_from_secs_f64(1.0 / self.per_sec).unwrap_or(Duration::from_secs(3600))
    }

    /// The bucket this side paces by: the portal's, with a few slots of the burst held
    /// in reserve. Requests do not reach the portal at the moments they leave here (the
    /// first ones of a burst open connections and are overtaken by later ones), and that
    /// jitter is a matter of time, not of count: the reserve covers 30 ms of the rate
    /// plus one request (2 slots at 2/s or 5/s; 7 at 200/s), and never more than half
    /// the burst. Filling the portal's bucket exactly cost a refused request or two on
    /// every full burst.
    pub fn with_reserve(&self) -> Rate {
        if self.is_unlimited() {
            return *self;
        }
        const JITTER_S: f64 = 0.030;
        let wanted = 1 + (self.per_sec * JITTER_S).ceil() as u32;
        let reserve = wanted.min(self.burst / 2);
        Rate {
            per_sec: self.per_sec,
            burst: self.burst - reserve,
        }
    }

    /// The shortest time in which `n` requests can all start from an empty bucket.
    pub fn min_makespan(&self, n: u32) -> Duration {
        self.interval() * n.saturating_sub(self.burst.max(1))
    }
}

/// The slot a caller would get lies beyond its deadline; nothing was reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSlot {
    /// How long the caller would have had to wait.
    pub wait: Duration,
}

/// The shared bucket could not be asked: nothing was reserved, and the call must not go
/// (an unpaced call from every replica is what the shared bucket is there to prevent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the shared rate-limit bucket ({store}) is unavailable: {detail}")]
pub struct BucketUnavailable {
    /// The store, as [`SharedBucket::store`] names it.
    pub store: String,
    /// What went wrong, without credentials.
    pub detail: String,
}

/// Why [`Pacer::acquire`] gave no slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaceError {
    /// The slot lies beyond the deadline.
    NoSlot(NoSlot),
    /// The shared bucket did not answer.
    Unavailable(BucketUnavailable),
}

impl From<NoSlot> for PaceError {
    fn from(no: NoSlot) -> Self {
        PaceError::NoSlot(no)
    }
}

impl From<BucketUnavailable> for PaceError {
    fn from(e: BucketUnavailable) -> Self {
        PaceError::Unavailable(e)
    }
}

/// A GCRA bucket kept outside the process, so that several replicas share it.
///
/// Implementations run [`Pacer`]'s algorithm atomically on the store's own clock (the
/// replicas' clocks may disagree): per `key`, a theoretical arrival time `tat`, absent
/// meaning an empty bucket.
pub trait SharedBucket: Send + Sync {
    /// Names the store for errors and logs ("Redis at host:port/db"), without credentials.
    fn store(&self) -> String;

    /// With `now` the store's clock: `next = max(tat, now)`; the slot starts at
    /// `next - tolerance` when `next - now > tolerance`, else now. A slot more than
    /// `max_wait` away is refused with [`PaceError::NoSlot`] and nothing changes;
    /// otherwise `tat = next + interval` and the answer is the wait until the slot.
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        interval: Duration,
        tolerance: Duration,
        max_wait: Duration,
    ) -> BoxFuture<'a, Result<Duration, PaceError>>;

    /// The bucket is full now: `tat = max(tat, now + tolerance + interval)`.
    fn note_full<'a>(
        &'a self,
        key: &'a str,
        interval: Duration,
        tolerance: Duration,
    ) -> BoxFuture<'a, Result<(), BucketUnavailable>>;
}

impl fmt::Debug for dyn SharedBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedBucket({})", self.store())
    }
}

/// A bucket in a [`SharedBucket`], under one key.
#[derive(Debug)]
struct Shared {
    bucket: Arc<dyn SharedBucket>,
    key: String,
}

/// A leaky bucket shared by every call of the process (and, with [`Pacer::shared`], of
/// every replica).
#[derive(Debug)]
pub struct Pacer {
    rate: Rate,
    interval: Duration,
    /// How far ahead of now the theoretical arrival time may run: `(burst - 1) * interval`.
    tolerance: Duration,
    /// Theoretical arrival time of the next request; `None` = empty bucket. Unused when
    /// `shared` is set.
    tat: Mutex<Option<Instant>>,
    shared: Option<Shared>,
}

impl Pacer {
    /// An empty bucket with `rate`.
    pub fn new(rate: Rate) -> Self {
        let interval = rate.interval();
        Pacer {
            rate,
            interval,
            tolerance: interval * rate.burst.max(1).saturating_sub(1),
            tat: Mutex::new(None),
            shared: None,
        }
    }

    /// A bucket with `rate` kept in `bucket` under `key` (one key per portal): every
    /// `Pacer` on the same key, in this process or another, draws from the same slots.
    pub fn shared(rate: Rate, bucket: Arc<dyn SharedBucket>, key: impl Into<String>) -> Self {
        Pacer {
            shared: Some(Shared {
                bucket,
                key: key.into(),
            }),
            ..Pacer::new(rate)
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Waits for the next slot. When that slot would come after `deadline`, returns at
    /// once with how long the wait would have been, and reserves nothing. With a shared
    /// bucket that does not answer, returns [`PaceError::Unavailable`]: no slot, no call.
    pub async fn acquire(&self, deadline: Instant) -> Result<(), PaceError> {
        if self.rate.is_unlimited() {
            return Ok(());
        }
        let now = Instant::now();
        if let Some(shared) = &self.shared {
            let max_wait = deadline.saturating_duration_since(now);
            let wait = shared
                .bucket
                .reserve(&shared.key, self.interval, self.tolerance, max_wait)
                .await?;
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            return Ok(());
        }
        let at = self.reserve(now, deadline)?;
        // Only sleep for a real wait: tokio's timer rounds up to the next millisecond
        // tick, so a sleep until "now" would add up to 1 ms to every call.
        if at > now {
            tokio::time::sleep_until(at).await;
        }
        Ok(())
    }

    /// Reserves the next slot and returns when it starts.
    fn reserve(&self, now: Instant, deadline: Instant) -> Result<Instant, NoSlot> {
        let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        let next = tat.map_or(now, |t| t.max(now));
        let at = if next.saturating_duration_since(now) > self.tolerance {
            next - self.tolerance
        } else {
            now
        };
        if at > deadline {
            return Err(NoSlot { wait: at - now });
        }
        *tat = Some(next + self.interval);
        Ok(at)
    }

    /// The portal refused a request as over its limit, so its bucket is full now
    /// (other clients on the same IP count too): the next slot is one interval away.
    /// A shared bucket that does not answer is only logged: the next `acquire` fails.
    pub async fn note_full(&self) {
        if self.rate.is_unlimited() {
            return;
        }
        if let Some(shared) = &self.shared {
            let marked = shared
                .bucket
                .note_full(&shared.key, self.interval, self.tolerance)
                .await;
            if let Err(e) = marked {
                tracing::warn!(error = %e, "could not mark the shared rate-limit bucket full");
            }
            return;
        }
        let now = Instant::now();
        let full = now + self.tolerance + self.interval;
        let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        *tat = Some(tat.map_or(full, |t| t.max(full)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_reserve_keeps_a_few_slots_of_the_burst() {
        assert_eq!(Rate::STANDARD.with_reserve().burst, 48);
        assert_eq!(Rate::ENTERPRISE.with_reserve().burst, 248);
        let r = |per_sec, burst| Rate { per_sec, burst }.with_reserve().burst;
        assert_eq!(r(200.0, 50), 43);
        assert_eq!((r(1.0, 10), r(0.01, 5), r(1.0, 2), r(1.0, 1)), (8, 3, 1, 1));
        assert_eq!(Rate::STANDARD.with_reserve().per_sec, 2.0);
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits_even_after_a_refusal() {
        assert_eq!(Rate::UNLIMITED.with_reserve(), Rate::UNLIMITED);
        assert_eq!(Rate::UNLIMITED.min_makespan(1000), Duration::ZERO);
        let p = Pacer::new(Rate::UNLIMITED.with_reserve());
        let t0 = Instant::now();
        p.note_full().await;
        for _ in 0..10_000 {
            p.acquire(t0).await.unwrap();
        }
        assert_eq!(Instant::now(), t0);
    }

    #[test]
    fn plans_and_min_makespan() {
        assert_eq!(Rate::STANDARD.interval(), ms(500));
        assert_eq!(Rate::ENTERPRISE.interval(), ms(200));
        // 200 requests at 2/s burst 50: 150 wait half a second each.
        assert_eq!(Rate::STANDARD.min_makespan(200), Duration::from_secs(75));
        assert_eq!(Rate::STANDARD.min_makespan(10), Duration::ZERO);
    }

    #[test]
    fn burst_then_one_slot_per_interval() {
        let p = Pacer::new(Rate {
            per_sec: 10.0,
            burst: 3,
        });
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(60);
        let slots: Vec<Duration> = (0..6).map(|_| p.reserve(t0, far).unwrap() - t0).collect();
        assert_eq!(slots, [ms(0), ms(0), ms(0), ms(100), ms(200), ms(300)]);
    }

    #[test]
    fn bucket_drains_while_idle() {
        let p = Pacer::new(Rate {
            per_sec: 10.0,
            burst: 2,
        });
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(60);
        for _ in 0..2 {
            assert_eq!(p.reserve(t0, far).unwrap(), t0);
        }
        // After 150 ms one and a half requests have drained: one may go at once.
        let t1 = t0 + ms(150);
        assert_eq!(p.reserve(t1, far).unwrap(), t1);
        assert_eq!(p.reserve(t1, far).unwrap(), t0 + ms(200));
    }

    #[test]
    fn a_slot_past_the_deadline_is_refused_and_not_reserved() {
        let p = Pacer::new(Rate {
            per_sec: 1.0,
            burst: 1,
        });
        let t0 = Instant::now();
        assert_eq!(p.reserve(t0, t0).unwrap(), t0);
        assert_eq!(
            p.reserve(t0, t0 + ms(500)),
            Err(NoSlot {
                wait: Duration::from_secs(1)
            })
        );
        // The refusal took nothing: the next caller still gets the slot at 1 s.
        assert_eq!(
            p.reserve(t0, t0 + Duration::from_secs(5)).unwrap(),
            t0 + Duration::from_secs(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn note_full_pushes_every_caller_back() {
        let p = Pacer::new(Rate {
            per_sec: 10.0,
            burst: 5,
        });
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(60);
        assert_eq!(p.reserve(t0, far).unwrap(), t0);
        p.note_full().await;
        assert_eq!(p.reserve(t0, far).unwrap(), t0 + ms(100));
        assert_eq!(p.reserve(t0, far).unwrap(), t0 + ms(200));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_are_paced_in_virtual_time() {
        let p = std::sync::Arc::new(Pacer::new(Rate {
            per_sec: 100.0,
            burst: 10,
        }));
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(10);
        let tasks: Vec<_> = (0..60)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move {
                    p.acquire(deadline).await.unwrap();
                    Instant::now()
                })
            })
            .collect();
        let mut starts = Vec::new();
        for t in tasks {
            starts.push(t.await.unwrap() - t0);
        }
        starts.sort();
        assert_eq!(starts[9], Duration::ZERO);
        assert_eq!(starts[10], ms(10));
        // The makespan is the bucket's theoretical minimum: 50 slots at 10 ms.
        assert_eq!(*starts.last().unwrap(), ms(500));
        // In every window no more than burst + rate * window requests start.
        for (i, s) in starts.iter().enumerate() {
            let in_window = starts[i..].iter().filter(|t| **t < *s + ms(100)).count();
            assert!(
                in_window <= 10 + 10,
                "{in_window} starts in 100 ms from {s:?}"
            );
        }
    }

    /// A shared bucket whose store is down, counting the calls it gets.
    struct Down(std::sync::atomic::AtomicUsize);

    impl Down {
        fn unavailable(&self) -> BucketUnavailable {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            BucketUnavailable {
                store: self.store(),
                detail: "connection refused".into(),
            }
        }
    }

    impl SharedBucket for Down {
        fn store(&self) -> String {
            "Test at nowhere".into()
        }
        fn reserve<'a>(
            &'a self,
            _: &'a str,
            _: Duration,
            _: Duration,
            _: Duration,
        ) -> BoxFuture<'a, Result<Duration, PaceError>> {
            Box::pin(async move { Err(self.unavailable().into()) })
        }
        fn note_full<'a>(
            &'a self,
            _: &'a str,
            _: Duration,
            _: Duration,
        ) -> BoxFuture<'a, Result<(), BucketUnavailable>> {
            Box::pin(async move { Err(self.unavailable()) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_bucket_that_is_down_gives_no_slot_and_unlimited_never_asks() {
        let down = Arc::new(Down(Default::default()));
        let p = Pacer::shared(Rate::STANDARD, down.clone(), "https://x.example");
        let far = Instant::now() + Duration::from_secs(60);
        let Err(PaceError::Unavailable(e)) = p.acquire(far).await else {
            panic!("a slot without the store");
        };
        assert_eq!(
            e.to_string(),
            "the shared rate-limit bucket (Test at nowhere) is unavailable: connection refused"
        );
        p.note_full().await;
        assert_eq!(down.0.load(std::sync::atomic::Ordering::SeqCst), 2);

        let p = Pacer::shared(Rate::UNLIMITED, down.clone(), "https://x.example");
        p.note_full().await;
        p.acquire(far).await.unwrap();
        assert_eq!(down.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
