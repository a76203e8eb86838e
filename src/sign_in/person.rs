//! Each signed-in person's Bitrix24 tokens as a [`TokenSource`], so their calls carry
//! their own `auth` and refresh their own grant.
//!
//! One source per person per process, shared by all their requests, so concurrent calls
//! that see an expired token share one refresh (Bitrix24 rotates refresh tokens: two
//! refreshes at once would break the grant). Before refreshing, the source re-reads the
//! store: another process on the same store may have refreshed already, and then its
//! pair is taken instead of spending the refresh token a second time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use crate::bitrix::grant::{self, App, GrantRequest};
use crate::bitrix::{BoxFuture, CallError, TokenSource};
use crate::clock::{now_ms, now_s};
use crate::redact;
use crate::store::{BitrixTokens, Store, StoreError};

/// How often a person's last use is written (every request would be a write each).
const TOUCH_EVERY: i64 = 60;
/// How long a refresh may hold the shared lock (a crashed holder frees it then).
const LOCK_HOLD_MS: i64 = 30_000;
/// How long a process waits for another's refresh before giving up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
/// How often a waiting process looks for the other's new pair.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A refresh that could not reach the store: nothing was spent, so trying again is safe.
fn store_unavailable(e: StoreError) -> CallError {
    CallError::OAuth {
        code: "store_unavailable".into(),
        detail: format!("the sign-in store is unavailable ({e}); try again"),
    }
}

type Key = (String, i64);

/// The people this process has served, by portal `member_id` and user id.
pub struct People {
    store: Arc<dyn Store>,
    app: App,
    oauth_url: Option<Url>,
    known: Mutex<HashMap<Key, Arc<PersonSource>>>,
}

impl People {
    /// People whose tokens live in `store`, refreshed through `app`.
    pub fn new(store: Arc<dyn Store>, app: App, oauth_url: Option<Url>) -> Self {
        Self {
            store,
            app,
            oauth_url,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The source for one person, or `None` when they have no tokens (revoked).
    pub async fn get(
        &self,
        member_id: &str,
        user_id: i64,
    ) -> Result<Option<Arc<PersonSource>>, StoreError> {
        let key = (member_id.to_string(), user_id);
        let cached = self.lock().get(&key).cloned();
        if let Some(source) = cached {
            if source.touch_due() {
                let _ = self.store.touch_person(member_id, user_id, now_s()).await;
            }
            return Ok(Some(source));
        }
        let Some(person) = self.store.person(member_id, user_id).await? else {
            return Ok(None);
        };
        let _ = self.store.touch_person(member_id, user_id, now_s()).await;
        let source = Arc::new(PersonSource {
            key: key.clone(),
            store: self.store.clone(),
            app: self.app.clone(),
            oauth_url: self.oauth_url.clone(),
            current: RwLock::new(Current {
                access: person.tokens.access.clone(),
                generation: 0,
            }),
            refreshing: tokio::sync::Mutex::new(()),
            touched: Mutex::new(now_s()),
            masked: redact::Slot::new(),
        });
        source.mask(&person.tokens);
        Ok(Some(self.lock().entry(key).or_insert(source).clone()))
    }

    /// Drops what this process remembers of a person (they signed in again).
    pub fn forget(&self, member_id: &str, user_id: i64) {
        self.lock().remove(&(member_id.to_string(), user_id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<PersonSource>>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Current {
    access: SecretString,
    generation: u64,
}

/// One person's Bitrix24 access token and how it is renewed.
pub struct PersonSource {
    key: Key,
    store: Arc<dyn Store>,
    app: App,
    oauth_url: Option<Url>,
    current: RwLock<Current>,
    refreshing: tokio::sync::Mutex<()>,
    touched: Mutex<i64>,
    /// This person's pair in force, masked in every log line and error text.
    masked: redact::Slot,
}

// By hand: the store behind it has no Debug; the person is named, the token never.
impl std::fmt::Debug for PersonSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonSource")
            .field("member_id", &self.key.0)
            .field("user_id", &self.key.1)
            .finish_non_exhaustive()
    }
}

impl PersonSource {
    fn mask(&self, tokens: &BitrixTokens) {
        self.masked.replace(&[
            tokens.access.expose_secret(),
            tokens.refresh.expose_secret(),
        ]);
    }

    fn touch_due(&self) -> bool {
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        let t = now_s();
        if t - *touched >= TOUCH_EVERY {
            *touched = t;
            true
        } else {
            false
        }
    }

    fn replace(&self, access: SecretString) {
        let mut c = self.current.write().unwrap_or_else(|e| e.into_inner());
        c.access = access;
        c.generation += 1;
    }

    async fn renew(&self, http: &reqwest::Client, seen: u64) -> Result<(), CallError> {
        let _one_at_a_time = self.refreshing.lock().await;
        if self.current().1 != seen {
            return Ok(());
        }
        let (member_id, user_id) = (&self.key.0, self.key.1);
        let mine = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .access
            .expose_secret()
            .to_string();
        // Processes sharing the store take turns: the first refreshes, the others wait
        // for its pair to appear in the store and take it.
        let lock = format!("refresh:{member_id}:{user_id}");
        let holder = uuid::Uuid::new_v4().to_string();
        let give_up = tokio::time::Instant::now() + LOCK_WAIT;
        let mut locked = false;
        let person = loop {
            // Read (again) after taking the lock: the previous holder may have stored
            // its pair between our last read and the lock.
            let Some(person) = self
                .store
                .person(member_id, user_id)
                .await
                .map_err(store_unavailable)?
            else {
                if locked {
                    let _ = self.store.unlock(&lock, &holder).await;
                }
                return Err(CallError::SignInEnded("it was revoked".into()));
            };
            if person.tokens.access.expose_secret() != mine {
                // Refreshed elsewhere (another process, or a new sign-in): take that pair.
                if locked {
                    let _ = self.store.unlock(&lock, &holder).await;
                }
                self.mask(&person.tokens);
                self.replace(person.tokens.access.clone());
                return Ok(());
            }
            if locked {
                break person;
            }
            let until = now_ms().saturating_add(LOCK_HOLD_MS);
            if self
                .store
                .try_lock(&lock, &holder, until)
                .await
                .map_err(store_unavailable)?
            {
                locked = true;
                continue;
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(CallError::OAuth {
                    code: "refresh_busy".into(),
                    detail: "another server is refreshing this person's token and has not finished; try again"
                        .into(),
                });
            }
            tokio::time::sleep(LOCK_POLL).await;
        };
        let outcome = self.exchange_and_store(http, person).await;
        let _ = self.store.unlock(&lock, &holder).await;
        outcome
    }

    /// Spends the person's refresh token and stores the new pair.
    async fn exchange_and_store(
        &self,
        http: &reqwest::Client,
        person: crate::store::Person,
    ) -> Result<(), CallError> {
        let (member_id, user_id) = (&self.key.0, self.key.1);
        let url = grant::token_url(
            self.oauth_url.as_ref(),
            person.tokens.server_endpoint.as_deref(),
        );
        let issued = match grant::exchange(
            http,
            url,
            &self.app,
            GrantRequest::Refresh(person.tokens.refresh.expose_secret()),
        )
        .await
        {
            Ok(i) => i,
            Err(CallError::OAuth { code, .. })
                if code.eq_ignore_ascii_case("invalid_grant")
                    || code.eq_ignore_ascii_case("invalid_client") =>
            {
                // The grant is gone for good: end the sign-in, so the next request gets
                // the 401 that makes the client sign in again.
                let _ = self.store.revoke_person(Some(member_id), user_id).await;
                tracing::info!(
                    user_id,
                    "a person's Bitrix24 grant is gone; their sign-in is ended"
                );
                return Err(CallError::SignInEnded(format!(
                    "the Bitrix24 OAuth server refused the refresh ({code})"
                )));
            }
            Err(e) => return Err(e),
        };
        let tokens = BitrixTokens {
            access: issued.access_token.clone(),
            refresh: issued.refresh_token,
            expires_at: issued.expires_at.unwrap_or(now_s() + 3600),
            server_endpoint: issued.server_endpoint.or(person.tokens.server_endpoint),
            client_endpoint: issued.client_endpoint.or(person.tokens.client_endpoint),
            scope: issued.scope.or(person.tokens.scope),
        };
        self.mask(&tokens);
        // Stored before use: a crash after this point must not leave the store holding
        // the refresh token that was just spent.
        self.store
            .set_person_tokens(member_id, user_id, tokens)
            .await
            .map_err(store_unavailable)?;
        self.replace(issued.access_token);
        tracing::info!(user_id, "a signed-in person's Bitrix24 token was refreshed");
        Ok(())
    }
}

impl TokenSource for PersonSource {
    fn current(&self) -> (Option<SecretString>, u64) {
        let c = self.current.read().unwrap_or_else(|e| e.into_inner());
        (Some(c.access.clone()), c.generation)
    }

    fn refresh<'a>(
        &'a self,
        http: &'a reqwest::Client,
        seen: u64,
    ) -> BoxFuture<'a, Result<(), CallError>> {
        Box::pin(self.renew(http, seen))
    }
}
