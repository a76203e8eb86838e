//! The people this process serves, each with one token engine ([`Engine`]) over their
//! pair in the sign-in store ([`PersonPair`]), so their calls carry their own `auth` and
//! refresh their own grant.
//!
//! One engine per person per process, shared by all their requests, so concurrent calls
//! that see an expired token share one refresh; the engine's rules (re-read the store,
//! take its lock, spend once, keep before use) keep processes on one store from
//! spending a refresh token twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::Url;

use crate::bitrix::grant::App;
use crate::clock::now_s;
use crate::identity::{Engine, EngineConfig, Pair, PersonPair, Start, Timing};
use crate::store::{Store, StoreError};

/// How often a person's last use is written (every request would be a write each).
const TOUCH_EVERY: i64 = 60;

type Key = (String, i64);

/// A person this process knows: their engine, and when their use was last written.
struct Known {
    source: Arc<Engine>,
    touched: AtomicI64,
}

impl Known {
    fn touch_due(&self) -> bool {
        let t = now_s();
        let last = self.touched.load(Ordering::Relaxed);
        t - last >= TOUCH_EVERY
            && self
                .touched
                .compare_exchange(last, t, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// The people this process has served, by portal `member_id` and user id.
pub struct People {
    store: Arc<dyn Store>,
    config: EngineConfig,
    known: Mutex<HashMap<Key, Arc<Known>>>,
}

impl People {
    /// People whose tokens live in `store`, refreshed through `app`.
    pub fn new(store: Arc<dyn Store>, app: App, oauth_url: Option<Url>) -> Self {
        Self {
            store,
            config: EngineConfig {
                app,
                oauth_url,
                timing: Timing::default(),
            },
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The engine for one person, or `None` when they have no tokens (revoked).
    pub async fn get(
        &self,
        member_id: &str,
        user_id: i64,
    ) -> Result<Option<Arc<Engine>>, StoreError> {
        let key = (member_id.to_string(), user_id);
        let cached = self.lock().get(&key).cloned();
        if let Some(known) = cached {
            if known.touch_due() {
                let _ = self.store.touch_person(member_id, user_id, now_s()).await;
            }
            return Ok(Some(known.source.clone()));
        }
        let Some(person) = self.store.person(member_id, user_id).await? else {
            return Ok(None);
        };
        let _ = self.store.touch_person(member_id, user_id, now_s()).await;
        let holder = Arc::new(PersonPair::new(self.store.clone(), member_id, user_id));
        let start = Start::from(Pair::from(person.tokens));
        let known = Arc::new(Known {
            source: Arc::new(Engine::new(holder, self.config.clone(), start)),
            touched: AtomicI64::new(now_s()),
        });
        Ok(Some(self.lock().entry(key).or_insert(known).source.clone()))
    }

    /// Drops what this process remembers of a person (they signed in again).
    pub fn forget(&self, member_id: &str, user_id: i64) {
        self.lock().remove(&(member_id.to_string(), user_id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Known>>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}
