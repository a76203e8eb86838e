//! The rules for holding a Bitrix24 token pair (docs/bitrix24-api.md#token-refresh), written once for every
//! [`Holder`].
//!
//! On 401 `expired_token`/`invalid_token` the REST client asks the [`Engine`] (a
//! [`TokenSource`]) for a new access token once and repeats the call. Bitrix24 rotates
//! the refresh token on every refresh, so a refresh token presented twice is refused and
//! the pair is lost; hence, in this order:
//!
//! 1. **One refresh at a time in a process.** Concurrent calls that hit the 401 together
//!    share one refresh: the engine counts token generations, and a caller whose
//!    generation is already outdated just takes the new token.
//! 2. **Re-read before spending.** Another process keeping the same pair (a replica, a
//!    second server on one store or one token file) may have refreshed already: a pair
//!    it kept that is not the one in use here and not about to expire is adopted, and
//!    nothing is spent.
//! 3. **Take turns.** The holder's lock is taken before spending; while another holds
//!    it, this process waits (re-reading, so it adopts the other's pair as soon as it is
//!    kept) and gives up with `refresh_busy` after [`Timing::wait`]. Under the lock the
//!    pair is read once more: the previous holder kept its pair before it unlocked.
//! 4. **Spend once**, through [`grant::exchange`], with the holder's refresh token (the
//!    one not yet spent, whichever process kept it).
//! 5. **Keep before use.** The new pair goes to the holder (and so to the others, and
//!    to a restart) before any call uses it; only then it becomes the token in force.
//! 6. **A refusal for good is not repeated.** `invalid_grant` and `invalid_client`,
//!    matched by code and never by message text, are remembered (the holder decides what
//!    callers are told: a person's sign-in ends), so later calls do not hammer the OAuth
//!    server with a dead refresh token; a pair another process keeps later is still
//!    adopted.
//!
//! The pair in force is masked in every log line and error text ([`redact::Slot`]) from
//! the moment it is known. A refresh given up mid-way (the call's budget ran out) frees
//! the lock at once instead of holding it until it expires.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use super::holder::{Holder, HolderError, Pair};
use crate::bitrix::grant::{self, App, GrantRequest};
use crate::bitrix::{BoxFuture, CallError, TokenSource};
use crate::metrics::{self, RefreshOutcome};
use crate::{clock, redact};

/// A kept access token this close to its expiry is not adopted but refreshed.
const EXPIRY_MARGIN_S: i64 = 30;

/// How long the engine waits for the others, and holds them off.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long a refresh may hold the lock (a crashed holder frees it then).
    pub hold_ms: i64,
    /// How long a process waits for another's refresh before giving up.
    pub wait: Duration,
    /// How often a waiting process looks again.
    pub poll: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            hold_ms: 30_000,
            wait: Duration::from_secs(20),
            poll: Duration::from_millis(100),
        }
    }
}

/// What every engine needs besides its holder.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The Bitrix24 application the pair was issued to.
    pub app: App,
    /// The OAuth server override (`--oauth-url`, `BITRIX24_OAUTH_URL`).
    pub oauth_url: Option<Url>,
    /// Lock and wait times.
    pub timing: Timing,
}

/// Where an engine starts: the pair as read at start-up. The access token may be
/// unknown (only a refresh token configured): the first call refreshes.
#[derive(Debug)]
pub struct Start {
    /// The access token, when known.
    pub access: Option<SecretString>,
    /// The refresh token not yet spent.
    pub refresh: SecretString,
    /// The last `server_endpoint` the OAuth server gave.
    pub server_endpoint: Option<String>,
}

impl From<Pair> for Start {
    fn from(pair: Pair) -> Start {
        Start {
            access: Some(pair.access),
            refresh: pair.refresh,
            server_endpoint: pair.server_endpoint,
        }
    }
}

/// The access token in force and its generation (bumped by every new token).
#[derive(Debug)]
struct Current {
    access: Option<SecretString>,
    generation: u64,
}

/// What only a refresh touches: the refresh side of the pair as this process knows it.
#[derive(Debug)]
struct Known {
    refresh: SecretString,
    server_endpoint: Option<String>,
    /// A refusal no retry can fix, as callers are told it.
    dead: Option<CallError>,
}

/// One held token pair: the access token in force, and its renewal by the rules above.
#[derive(Debug)]
pub struct Engine {
    holder: Arc<dyn Holder>,
    config: EngineConfig,
    current: RwLock<Current>,
    known: tokio::sync::Mutex<Known>,
    /// The pair in force, masked in every log line and error; each new pair replaces it.
    masked: redact::Slot,
}

impl TokenSource for Engine {
    fn current(&self) -> (Option<SecretString>, u64) {
        Engine::current(self)
    }

    fn refresh<'a>(
        &'a self,
        http: &'a reqwest::Client,
        seen: u64,
    ) -> BoxFuture<'a, Result<(), CallError>> {
        Box::pin(Engine::refresh(self, http, seen))
    }
}

impl Engine {
    /// An engine over `holder`, starting from `start`.
    pub fn new(holder: Arc<dyn Holder>, config: EngineConfig, start: Start) -> Engine {
        let masked = redact::Slot::new();
        mask_in_force(
            &masked,
            holder.as_ref(),
            start.access.as_ref(),
            &start.refresh,
        );
        Engine {
            holder,
            config,
            current: RwLock::new(Current {
                access: start.access,
                generation: 0,
            }),
            known: tokio::sync::Mutex::new(Known {
                refresh: start.refresh,
                server_endpoint: start.server_endpoint,
                dead: None,
            }),
            masked,
        }
    }

    /// Where the pair is kept.
    pub fn holder(&self) -> &dyn Holder {
        self.holder.as_ref()
    }

    /// The access token in force (if any yet) and its generation.
    pub fn current(&self) -> (Option<SecretString>, u64) {
        let c = self.current.read().unwrap_or_else(|e| e.into_inner());
        (c.access.clone(), c.generation)
    }

    /// Replaces the access token of generation `seen`; returns at once when another call
    /// already did (the generation moved on).
    pub async fn refresh(&self, http: &reqwest::Client, seen: u64) -> Result<(), CallError> {
        let mut known = self.known.lock().await;
        if self.current().1 != seen {
            return Ok(());
        }
        let mut turn = Turn::new(self.holder.clone());
        let give_up = tokio::time::Instant::now() + self.config.timing.wait;
        let mut adopted = false;
        let outcome = loop {
            // Read (again): another process may have kept a new pair, also while this one
            // waited for the lock; under the lock, the previous holder kept its pair
            // before it unlocked.
            let loaded = match self.holder.load().await {
                Ok(loaded) => loaded,
                Err(e) => break Err(unspent(e)),
            };
            let loaded = match loaded {
                Some(pair) if self.is_newer(&pair) => {
                    self.adopt(&mut known, pair).await;
                    adopted = true;
                    break Ok(());
                }
                loaded => loaded,
            };
            // Refused for good, and nothing newer kept by the others: not presented again.
            if let Some(dead) = &known.dead {
                break Err(dead.clone());
            }
            if turn.taken {
                break self.exchange(http, &mut known, loaded).await;
            }
            let until = clock::now_ms().saturating_add(self.config.timing.hold_ms);
            match turn.take(until).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => break Err(unspent(e)),
            }
            if tokio::time::Instant::now() >= give_up {
                break Err(CallError::OAuth {
                    code: "refresh_busy".into(),
                    detail: format!(
                        "another process is refreshing {} and has not finished; try again",
                        self.holder.describe()
                    ),
                });
            }
            tokio::time::sleep(self.config.timing.poll).await;
        };
        turn.free().await;
        metrics::oauth_refresh(counted(&outcome, adopted), self.holder.is_person());
        outcome
    }

    /// Whether `pair`, kept by another process, should be used instead of spending: not
    /// the token in force here, and not about to expire.
    fn is_newer(&self, pair: &Pair) -> bool {
        let mine = self.current().0;
        let differs =
            mine.as_ref().map(ExposeSecret::expose_secret) != Some(pair.access.expose_secret());
        let fresh = pair
            .expires_at
            .is_none_or(|at| at > clock::now_s() + EXPIRY_MARGIN_S);
        differs && fresh
    }

    /// Makes `pair`, kept by another process, the one in force here.
    async fn adopt(&self, known: &mut Known, pair: Pair) {
        known.refresh = pair.refresh.clone();
        if pair.server_endpoint.is_some() {
            known.server_endpoint = pair.server_endpoint.clone();
        }
        known.dead = None;
        self.mask(Some(&pair.access), known);
        self.holder.adopted(&pair).await;
        self.put_in_force(pair.access);
    }

    /// Under the lock: spends the refresh token (the holder's when it has one), keeps the
    /// new pair, then puts it in force.
    async fn exchange(
        &self,
        http: &reqwest::Client,
        known: &mut Known,
        loaded: Option<Pair>,
    ) -> Result<(), CallError> {
        let (client_endpoint, scope) = match loaded {
            Some(pair) => {
                known.refresh = pair.refresh;
                if pair.server_endpoint.is_some() {
                    known.server_endpoint = pair.server_endpoint;
                }
                (pair.client_endpoint, pair.scope)
            }
            None => (None, None),
        };
        let url = grant::token_url(
            self.config.oauth_url.as_ref(),
            known.server_endpoint.as_deref(),
        );
        let issued = match grant::exchange(
            http,
            url,
            &self.config.app,
            GrantRequest::Refresh(known.refresh.expose_secret()),
        )
        .await
        {
            Ok(issued) => issued,
            Err(CallError::OAuth { code, detail }) if is_permanent(&code) => {
                let refusal = CallError::OAuth {
                    code: code.clone(),
                    detail,
                };
                let told = self.holder.refused(&code, refusal).await;
                known.dead = Some(told.clone());
                return Err(told);
            }
            Err(e) => return Err(e),
        };
        let pair = Pair {
            access: issued.access_token,
            refresh: issued.refresh_token,
            expires_at: issued.expires_at,
            server_endpoint: issued.server_endpoint.or(known.server_endpoint.take()),
            client_endpoint: issued.client_endpoint.or(client_endpoint),
            scope: issued.scope.or(scope),
        };
        // The refresh token just presented is spent: from here on only the new one works.
        known.refresh = pair.refresh.clone();
        known.server_endpoint = pair.server_endpoint.clone();
        // Masked before anything can log or echo the new pair.
        self.mask(Some(&pair.access), known);
        self.holder
            .store(&pair)
            .await
            .map_err(|e| holder_failed(e, true))?;
        self.put_in_force(pair.access);
        Ok(())
    }

    fn put_in_force(&self, access: SecretString) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        current.access = Some(access);
        current.generation += 1;
    }

    fn mask(&self, access: Option<&SecretString>, known: &Known) {
        mask_in_force(&self.masked, self.holder.as_ref(), access, &known.refresh);
    }
}

/// Makes the pair now in force (and the holder's own secrets, such as the token file's
/// `seeded_by`) the ones `slot` masks.
fn mask_in_force(
    slot: &redact::Slot,
    holder: &dyn Holder,
    access: Option<&SecretString>,
    refresh: &SecretString,
) {
    let in_force: Vec<&str> = [access, Some(refresh)]
        .into_iter()
        .flatten()
        .chain(holder.also_masked())
        .map(ExposeSecret::expose_secret)
        .collect();
    slot.replace(&in_force);
}

/// How a refresh ended, for the metrics (by code, never by message).
fn counted(outcome: &Result<(), CallError>, adopted: bool) -> RefreshOutcome {
    match outcome {
        Ok(()) if adopted => RefreshOutcome::Adopted,
        Ok(()) => RefreshOutcome::Ok,
        Err(CallError::SignInEnded(_)) => RefreshOutcome::Ended,
        Err(CallError::OAuth { code, .. }) if is_permanent(code) => RefreshOutcome::Refused,
        Err(CallError::OAuth { code, .. }) if code == "refresh_busy" => RefreshOutcome::Busy,
        Err(CallError::OAuth { code, .. }) if code == "store_unavailable" => {
            RefreshOutcome::Unavailable
        }
        Err(_) => RefreshOutcome::Failed,
    }
}

/// Refusals that only new credentials fix, by their OAuth error code.
pub(crate) fn is_permanent(code: &str) -> bool {
    code.eq_ignore_ascii_case("invalid_grant") || code.eq_ignore_ascii_case("invalid_client")
}

/// What callers are told when the holder failed, before anything was spent or (`spent`)
/// while keeping a pair just issued.
fn holder_failed(e: HolderError, spent: bool) -> CallError {
    match e {
        HolderError::Ended(why) => CallError::SignInEnded(why),
        HolderError::Unavailable(why) => CallError::OAuth {
            code: "store_unavailable".into(),
            detail: if spent {
                format!("the refreshed pair could not be kept ({why}); try again")
            } else {
                format!("{why}; nothing was spent, try again")
            },
        },
    }
}

fn unspent(e: HolderError) -> CallError {
    holder_failed(e, false)
}

/// This process's turn at the holder's lock: freed by [`Turn::free`], or, when the
/// refresh is dropped mid-way, by a task spawned on drop.
struct Turn {
    holder: Arc<dyn Holder>,
    id: String,
    taken: bool,
}

impl Turn {
    fn new(holder: Arc<dyn Holder>) -> Turn {
        Turn {
            holder,
            id: uuid::Uuid::new_v4().to_string(),
            taken: false,
        }
    }

    async fn take(&mut self, until_ms: i64) -> Result<bool, HolderError> {
        let taken = self.holder.lock(&self.id, until_ms).await?;
        self.taken |= taken;
        Ok(taken)
    }

    async fn free(mut self) {
        if std::mem::take(&mut self.taken) {
            let _ = self.holder.unlock(&self.id).await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.taken {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (holder, id) = (self.holder.clone(), std::mem::take(&mut self.id));
            runtime.spawn(async move {
                let _ = holder.unlock(&id).await;
            });
        }
    }
}

#[cfg(test)]
impl Engine {
    /// The refresh token this engine would spend next.
    pub(crate) fn known_refresh(&self) -> String {
        let known = self.known.try_lock().expect("no refresh running");
        known.refresh.expose_secret().to_string()
    }

    /// Where this engine's next refresh goes.
    pub(crate) fn token_url(&self) -> Url {
        let known = self.known.try_lock().expect("no refresh running");
        grant::token_url(
            self.config.oauth_url.as_ref(),
            known.server_endpoint.as_deref(),
        )
    }

    /// Whether a refusal for good is remembered.
    pub(crate) fn is_dead(&self) -> bool {
        self.known
            .try_lock()
            .expect("no refresh running")
            .dead
            .is_some()
    }

    /// How many forms of secrets this engine keeps masked.
    pub(crate) fn masked_held(&self) -> usize {
        self.masked.held()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::memory::Memory;

    fn pair() -> Pair {
        Pair {
            access: "away-access".into(),
            refresh: "away-refresh".into(),
            expires_at: None,
            server_endpoint: None,
            client_endpoint: None,
            scope: None,
        }
    }

    #[test]
    fn only_invalid_grant_and_invalid_client_are_for_good() {
        assert!(is_permanent("invalid_grant") && is_permanent("INVALID_CLIENT"));
        for passing in [
            "HTTP_502",
            "unreachable",
            "temporarily_unavailable",
            "Invalid grant",
        ] {
            assert!(!is_permanent(passing), "{passing}");
        }
    }

    #[tokio::test]
    async fn a_holder_that_is_away_spends_nothing() {
        let memory = Memory::default();
        memory.seed(pair());
        let config = EngineConfig {
            app: App {
                client_id: "app.1".into(),
                client_secret: "client-secret-xyz".into(),
            },
            // Never reached: nothing may be sent without the holder.
            oauth_url: Some(Url::parse("http://127.0.0.1:9/").unwrap()),
            timing: Timing::default(),
        };
        let engine = Engine::new(Arc::new(memory.clone()), config, Start::from(pair()));
        memory.set_away(true);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let e = engine
            .refresh(&reqwest::Client::new(), 0)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, CallError::OAuth { code, detail } if code == "store_unavailable" && detail.contains("nothing was spent")),
            "{e}"
        );
        assert_eq!(engine.current().1, 0);
        assert!(!engine.is_dead());
        assert!(memory.lock_holder().is_none(), "no lock was left behind");
    }
}
