//! Portal limits (docs/bitrix24-api.md#limits, #idempotency-key): leaky-bucket rate limit, per-method operating time,
//! and the Idempotency-Key store.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::RateLimit;
use super::reply::Reply;

/// Leaky bucket: +1 per request, drains continuously at `drain_per_sec`.
///
/// Sandbox choice: a refused request does not add to the counter, so a client that backs
/// off recovers at the drain rate.
pub(crate) struct LeakyBucket {
    rate: RateLimit,
    level: f64,
    last: Instant,
}

impl LeakyBucket {
    pub(crate) fn new(rate: RateLimit, now: Instant) -> LeakyBucket {
        LeakyBucket {
            rate,
            level: 0.0,
            last: now,
        }
    }

    /// Counts the request; `false` when it would push the counter above `burst`.
    pub(crate) fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let drain = self.rate.drain_per_sec.max(0.0);
        self.level = (self.level - elapsed * drain).max(0.0);
        if self.level + 1.0 > f64::from(self.rate.burst) {
            return false;
        }
        self.level += 1.0;
        true
    }
}

/// Length of the operating window: ten one-minute buckets (docs/bitrix24-api.md#operating-limit).
const WINDOW_MINUTES: i64 = 10;

/// Accumulated execution time per (credential, method), in one-minute buckets.
#[derive(Default)]
pub(crate) struct OperatingLedger {
    buckets: HashMap<(String, String), BTreeMap<i64, f64>>,
}

/// `time.operating` and `time.operating_reset_at` for one (credential, method).
pub(crate) struct Usage {
    pub(crate) operating: f64,
    pub(crate) reset_at: i64,
}

impl OperatingLedger {
    /// Seconds used in the window and when the oldest bucket drops out.
    pub(crate) fn usage(&mut self, credential: &str, method: &str, now_secs: i64) -> Usage {
        let now_minute = now_secs.div_euclid(60);
        let key = (credential.to_string(), method.to_string());
        let Some(buckets) = self.buckets.get_mut(&key) else {
            return Usage {
                operating: 0.0,
                reset_at: (now_minute + WINDOW_MINUTES) * 60,
            };
        };
        buckets.retain(|minute, _| *minute > now_minute - WINDOW_MINUTES);
        let oldest = buckets.keys().next().copied().unwrap_or(now_minute);
        Usage {
            operating: buckets.values().sum(),
            reset_at: (oldest + WINDOW_MINUTES) * 60,
        }
    }

    pub(crate) fn charge(&mut self, credential: &str, method: &str, now_secs: i64, secs: f64) {
        let key = (credential.to_string(), method.to_string());
        *self
            .buckets
            .entry(key)
            .or_default()
            .entry(now_secs.div_euclid(60))
            .or_insert(0.0) += secs;
    }
}

/// Stored responses live 24 h (docs/bitrix24-api.md#idempotency-key).
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// `Idempotency-Key` must be 1–255 printable ASCII characters (space included).
pub(crate) fn valid_idempotency_key(raw: &[u8]) -> bool {
    (1..=255).contains(&raw.len()) && raw.iter().all(|b| (0x20..=0x7e).contains(b))
}

struct Stored {
    fingerprint: Value,
    reply: Reply,
    at: Instant,
}

/// What a stored key says about a new request.
pub(crate) enum Lookup {
    Miss,
    Replay(Reply),
    Reused,
}

/// First successful response per (credential, method, key).
///
/// Sandbox choice: "same body" compares the parsed JSON without the `auth` field, because an
/// OAuth client retrying after a token refresh sends a new `auth` value with the same request.
#[derive(Default)]
pub(crate) struct IdempotencyStore {
    entries: HashMap<(String, String, String), Stored>,
}

impl IdempotencyStore {
    pub(crate) fn lookup(
        &mut self,
        credential: &str,
        method: &str,
        key: &str,
        fingerprint: &Value,
        now: Instant,
    ) -> Lookup {
        self.entries
            .retain(|_, s| now.saturating_duration_since(s.at) < IDEMPOTENCY_TTL);
        let id = (credential.to_string(), method.to_string(), key.to_string());
        match self.entries.get(&id) {
            None => Lookup::Miss,
            Some(s) if &s.fingerprint == fingerprint => Lookup::Replay(s.reply.clone()),
            Some(_) => Lookup::Reused,
        }
    }

    pub(crate) fn store(
        &mut self,
        credential: &str,
        method: &str,
        key: &str,
        fingerprint: Value,
        reply: Reply,
        now: Instant,
    ) {
        let id = (credential.to_string(), method.to_string(), key.to_string());
        // Concurrent first attempts may both run (docs/bitrix24-api.md#idempotency-key); the first stored wins.
        self.entries.entry(id).or_insert(Stored {
            fingerprint,
            reply,
            at: now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_after_burst_and_drains() {
        let t0 = Instant::now();
        let mut b = LeakyBucket::new(
            RateLimit {
                drain_per_sec: 2.0,
                burst: 3,
            },
            t0,
        );
        assert!(b.admit(t0));
        assert!(b.admit(t0));
        assert!(b.admit(t0));
        assert!(!b.admit(t0));
        assert!(b.admit(t0 + Duration::from_millis(600)));
    }

    #[test]
    fn operating_window_sums_and_resets() {
        let mut l = OperatingLedger::default();
        l.charge("w", "m", 600, 1.5);
        l.charge("w", "m", 660, 0.5);
        let u = l.usage("w", "m", 700);
        assert_eq!(u.operating, 2.0);
        assert_eq!(u.reset_at, 1200);
        let later = l.usage("w", "m", 1200);
        assert_eq!(later.operating, 0.5);
        assert_eq!(l.usage("w", "other", 700).operating, 0.0);
    }

    #[test]
    fn idempotency_key_syntax() {
        assert!(valid_idempotency_key(b"abc-123"));
        assert!(valid_idempotency_key(&[b'a'; 255]));
        assert!(!valid_idempotency_key(&[b'a'; 256]));
        assert!(!valid_idempotency_key(b""));
        assert!(!valid_idempotency_key("ключ".as_bytes()));
        assert!(!valid_idempotency_key(b"tab\there"));
    }
}
