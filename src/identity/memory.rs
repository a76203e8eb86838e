//! The in-memory holder: what a store does for processes, for engines in one test (the
//! engine's own unit tests, the suite, and the configured identity's shared pair).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::holder::{Holder, HolderError, Pair};
use crate::bitrix::BoxFuture;
use crate::clock;

#[derive(Debug, Default)]
struct Place {
    pair: Mutex<Option<Pair>>,
    /// The lock's holder and until when (Unix ms).
    lock: Mutex<Option<(String, i64)>>,
    /// Every call fails (the store is away).
    away: AtomicBool,
}

/// One holder; clones share the place.
#[derive(Clone, Debug, Default)]
pub(crate) struct Memory(Arc<Place>);

impl Memory {
    pub(crate) fn seed(&self, pair: Pair) {
        *self.0.pair.lock().unwrap() = Some(pair);
    }

    pub(crate) fn kept(&self) -> Option<Pair> {
        self.0.pair.lock().unwrap().clone()
    }

    pub(crate) fn set_away(&self, away: bool) {
        self.0.away.store(away, Ordering::SeqCst);
    }

    pub(crate) fn lock_holder(&self) -> Option<String> {
        self.0.lock.lock().unwrap().as_ref().map(|(h, _)| h.clone())
    }

    fn reachable(&self) -> Result<(), HolderError> {
        if self.0.away.load(Ordering::SeqCst) {
            Err(HolderError::Unavailable("the memory is away".into()))
        } else {
            Ok(())
        }
    }
}

impl Holder for Memory {
    fn describe(&self) -> &'static str {
        "the pair in memory"
    }

    fn load(&self) -> BoxFuture<'_, Result<Option<Pair>, HolderError>> {
        let out = self.reachable().map(|()| self.kept());
        Box::pin(async move { out })
    }

    fn lock<'a>(
        &'a self,
        holder: &'a str,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, HolderError>> {
        let out = self.reachable().map(|()| {
            let mut lock = self.0.lock.lock().unwrap();
            let free = lock
                .as_ref()
                .is_none_or(|(h, until)| h == holder || *until <= clock::now_ms());
            if free {
                *lock = Some((holder.to_string(), until_ms));
            }
            free
        });
        Box::pin(async move { out })
    }

    fn unlock<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), HolderError>> {
        let out = self.reachable().map(|()| {
            let mut lock = self.0.lock.lock().unwrap();
            if lock.as_ref().is_some_and(|(h, _)| h == holder) {
                *lock = None;
            }
        });
        Box::pin(async move { out })
    }

    fn store<'a>(&'a self, pair: &'a Pair) -> BoxFuture<'a, Result<(), HolderError>> {
        let out = self.reachable().map(|()| self.seed(pair.clone()));
        Box::pin(async move { out })
    }
}
