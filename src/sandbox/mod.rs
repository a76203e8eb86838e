//! Embedded emulator ("sandbox") of a Bitrix24 portal's REST API: the five REST 3.0
//! task-result methods, `tasks.task.get`, v1 `tasks.task.list` (to find tasks), a few chat
//! helpers, webhook and OAuth auth, the OAuth token server, rate/operating limits,
//! idempotency and scripted faults. Its seed tasks vary in title (Russian ones too),
//! state, deadline and roles, so that a newcomer can try the search.
//!
//! It follows docs/bitrix24-api.md (the portal behaviour the project relies on). Where those notes
//! leave a behaviour open, the choice is documented next to the code that makes it.
//! Webhook calls and the configured OAuth token run as `webhook_user_id`; tokens from a
//! sign-in (`/oauth/authorize/`, the authorization-code grant) run as the person who signed
//! in, with that person's rights.
//! This file is the public face (options, app, handle), which is why it runs to ~400 lines.

mod conn;
mod control;
mod faults;
mod journal;
mod language;
mod limits;
mod methods;
mod oauth;
mod params;
mod reply;
mod routes;
mod signin;
mod time;
mod world;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use faults::Fault;
pub use language::Language;
pub use world::NewTask;

/// How to start a [`Sandbox`].
#[derive(Clone)]
pub struct SandboxOptions {
    /// Address to bind; the default `127.0.0.1:0` picks a free port.
    pub addr: SocketAddr,
    /// Owner of the webhook and of the configured OAuth token (`access_token` and
    /// `OAuthApp::refresh_token`); calls with them run as this user.
    pub webhook_user_id: u64,
    /// Secret in `/rest/{uid}/{secret}/`.
    pub webhook_secret: String,
    /// Scopes granted to both the webhook and the OAuth token.
    pub webhook_scopes: Vec<String>,
    /// OAuth access token accepted in the JSON body field `auth` (v1 methods also take it
    /// from the query string). `None` disables OAuth calls until a refresh issues a token.
    pub access_token: Option<String>,
    /// Enables `/oauth/token/` and makes access tokens expire.
    pub oauth: Option<OAuthApp>,
    /// Leaky-bucket rate limit; `None` = off.
    pub rate: Option<RateLimit>,
    /// Per-method accumulated execution time allowed in the 10-minute window; `None` = off.
    /// Time is the wall time of each call (so a [`Fault::Slow`] sleep counts). The call that
    /// crosses the limit still runs; later calls of that method get 429 until the oldest
    /// one-minute bucket leaves the window.
    pub operating_limit: Option<Duration>,
    /// The language of error messages (codes, statuses and fields never change).
    pub language: Language,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            webhook_user_id: 1,
            webhook_secret: random_token(16),
            webhook_scopes: ["tasks", "task", "im"].map(String::from).to_vec(),
            access_token: Some(random_token(32)),
            oauth: None,
            rate: None,
            operating_limit: None,
            language: Language::English,
        }
    }
}

// Hand-written so that secrets never end up in logs or panic messages.
impl fmt::Debug for SandboxOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxOptions")
            .field("addr", &self.addr)
            .field("webhook_user_id", &self.webhook_user_id)
            .field("webhook_secret", &"***")
            .field("webhook_scopes", &self.webhook_scopes)
            .field("access_token", &self.access_token.as_ref().map(|_| "***"))
            .field("oauth", &self.oauth)
            .field("rate", &self.rate)
            .field("operating_limit", &self.operating_limit)
            .field("language", &self.language)
            .finish()
    }
}

/// An OAuth application registered (and installed) on the sandbox portal. Build it with
/// [`OAuthApp::new`] or `OAuthApp { .., ..OAuthApp::default() }` so that later fields do not
/// break the caller.
#[derive(Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    /// The configured identity's refresh token valid at start; every refresh rotates it.
    pub refresh_token: String,
    /// Lifetime of every access token (the initial one counts from `start`).
    pub access_token_ttl: Duration,
    /// The application's registered redirect (handler) address. `/oauth/authorize/` sends
    /// people back there; a `redirect_uri` parameter must share its scheme, host and port.
    /// `None`: the code is shown on a page, as Bitrix24 does for apps without one.
    pub redirect_uri: Option<String>,
    /// Lifetime of a sign-in code (Bitrix24: 30 s, the default).
    pub code_ttl: Duration,
}

impl OAuthApp {
    /// An app with these credentials, one-hour access tokens, 30 s codes and no redirect
    /// address.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        refresh_token: impl Into<String>,
    ) -> OAuthApp {
        OAuthApp {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh_token: refresh_token.into(),
            ..OAuthApp::default()
        }
    }

    /// The same app with `uri` as its registered redirect address.
    pub fn with_redirect_uri(mut self, uri: impl Into<String>) -> OAuthApp {
        self.redirect_uri = Some(uri.into());
        self
    }
}

impl Default for OAuthApp {
    /// `local.sandbox.app` with a random secret and refresh token.
    fn default() -> Self {
        OAuthApp {
            client_id: "local.sandbox.app".into(),
            client_secret: random_token(32),
            refresh_token: random_token(32),
            access_token_ttl: Duration::from_secs(3600),
            redirect_uri: None,
            code_ttl: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("refresh_token", &"***")
            .field("access_token_ttl", &self.access_token_ttl)
            .field("redirect_uri", &self.redirect_uri)
            .field("code_ttl", &self.code_ttl)
            .finish()
    }
}

/// Leaky bucket (docs/bitrix24-api.md#rate-limit): each request adds 1, the counter drains continuously.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub drain_per_sec: f64,
    pub burst: u32,
}

/// One HTTP request the sandbox received (control endpoints under `/_sandbox/` excluded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub http_method: String,
    /// Path plus query string exactly as received (secrets included: this is test data,
    /// never logged).
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// HTTP status sent back; `0` when the connection was dropped without a response.
    pub status: u16,
}

/// A running sandbox portal. Cheap to clone; all clones share one server.
#[derive(Clone)]
pub struct Sandbox {
    shared: Arc<Shared>,
}

/// Immutable settings plus the mutable state behind one lock.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    state: Mutex<State>,
    cancel: CancellationToken,
}

/// The options that stay fixed for the life of the server.
pub(crate) struct Settings {
    pub(crate) addr: SocketAddr,
    pub(crate) user_id: u64,
    pub(crate) secret: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) oauth: Option<OAuthApp>,
    pub(crate) operating_limit: Option<Duration>,
    pub(crate) language: Language,
}

impl Settings {
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Everything requests can change.
pub(crate) struct State {
    pub(crate) world: world::World,
    pub(crate) requests: journal::Journal,
    pub(crate) faults: faults::FaultQueue,
    pub(crate) bucket: Option<limits::LeakyBucket>,
    pub(crate) operating: limits::OperatingLedger,
    pub(crate) idempotency: limits::IdempotencyStore,
    pub(crate) tokens: oauth::TokenStore,
    /// The OAuth app's registered redirect address now (it starts as
    /// `OAuthApp::redirect_uri`; tests may re-register it once their callback has a port).
    pub(crate) redirect_uri: Option<String>,
}

impl Shared {
    /// Locks the state; a poisoned lock is still usable because every update is atomic
    /// from the point of view of the data (no partial writes survive a panic).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Successful refreshes per person: every portal user (0 if none) and anyone else who
    /// refreshed.
    pub(crate) fn refresh_counts(&self) -> BTreeMap<u64, u32> {
        let state = self.lock();
        let mut counts: BTreeMap<u64, u32> = state
            .world
            .users
            .iter()
            .filter_map(|u| u64::try_from(u.id).ok())
            .map(|id| (id, 0))
            .collect();
        counts.extend(state.tokens.refresh_counts());
        counts
    }
}

impl Sandbox {
    /// Binds `opts.addr`, spawns the HTTP server on the current Tokio runtime and returns.
    /// Webhook and configured-token calls run as `webhook_user_id`, signed-in tokens as
    /// their person; seeded membership is for users 1 and 2.
    pub async fn start(opts: SandboxOptions) -> std::io::Result<Sandbox> {
        let listener = conn::KillableListener::bind(opts.addr).await?;
        let addr = listener.local_addr()?;
        let now = Instant::now();
        let tokens = oauth::TokenStore::new(
            opts.webhook_user_id,
            opts.access_token.clone(),
            opts.oauth
                .as_ref()
                .map(|o| (o.refresh_token.clone(), o.access_token_ttl)),
            now,
        );
        let state = State {
            world: world::World::seed(time::now_secs()),
            requests: journal::Journal::default(),
            faults: faults::FaultQueue::default(),
            bucket: opts.rate.map(|r| limits::LeakyBucket::new(r, now)),
            operating: limits::OperatingLedger::default(),
            idempotency: limits::IdempotencyStore::default(),
            tokens,
            redirect_uri: opts.oauth.as_ref().and_then(|o| o.redirect_uri.clone()),
        };
        let shared = Arc::new(Shared {
            settings: Settings {
                addr,
                user_id: opts.webhook_user_id,
                secret: opts.webhook_secret,
                scopes: opts.webhook_scopes,
                oauth: opts.oauth,
                operating_limit: opts.operating_limit,
                language: opts.language,
            },
            state: Mutex::new(state),
            cancel: CancellationToken::new(),
        });
        routes::spawn_server(listener, shared.clone());
        tracing::debug!(%addr, "sandbox portal listening");
        Ok(Sandbox { shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.settings.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.shared.settings.base_url()
    }

    /// The v1-style inbound webhook URL users paste: `{base}/rest/{uid}/{secret}/`.
    pub fn webhook_url(&self) -> String {
        let s = &self.shared.settings;
        format!("{}/rest/{}/{}/", s.base_url(), s.user_id, s.secret)
    }

    /// The configured identity's newest OAuth access token (the initial one until a
    /// refresh; `None` after [`Sandbox::revoke_tokens_of`] its user).
    pub fn access_token(&self) -> Option<String> {
        self.shared.lock().tokens.current_access()
    }

    /// The configured identity's refresh token currently valid (rotates on every refresh).
    pub fn refresh_token(&self) -> Option<String> {
        self.shared.lock().tokens.current_refresh()
    }

    /// How many successful `/oauth/token/` refreshes happened, everyone together (code
    /// exchanges are not refreshes).
    pub fn refresh_count(&self) -> u32 {
        self.shared.lock().tokens.refresh_count()
    }

    /// Successful refreshes per user id: every portal user (0 if none) and anyone else who
    /// refreshed.
    pub fn refresh_counts(&self) -> BTreeMap<u64, u32> {
        self.shared.refresh_counts()
    }

    /// Makes every OAuth access token issued so far expire now (calls with them get 401
    /// `expired_token`), as an hour passing would; tokens issued later are not affected.
    pub fn expire_access_tokens(&self) {
        self.shared.lock().tokens.expire(None, Instant::now());
    }

    /// [`Sandbox::expire_access_tokens`] for one person's tokens only.
    pub fn expire_access_tokens_of(&self, user_id: u64) {
        self.shared
            .lock()
            .tokens
            .expire(Some(user_id), Instant::now());
    }

    /// Ends every grant of `user_id`, as if they removed the app: their access tokens
    /// become unknown (401 `invalid_token`), their refresh tokens and unused sign-in codes
    /// `invalid_grant`. The configured identity counts when `user_id` is its user.
    pub fn revoke_tokens_of(&self, user_id: u64) {
        self.shared.lock().tokens.revoke(user_id);
    }

    /// Re-registers the OAuth app's redirect address (`None`: none, the code is shown on a
    /// page), as editing the app's handler address on a portal would; for tests whose
    /// callback only has a port once the sandbox runs.
    pub fn set_redirect_uri(&self, uri: Option<&str>) {
        self.shared.lock().redirect_uri = uri.map(String::from);
    }

    /// The portal's sign-in address for the OAuth app, `None` without one:
    /// `{base}/oauth/authorize/?client_id=…&state=…`.
    pub fn authorize_url(&self, state: &str) -> Option<String> {
        let app = self.shared.settings.oauth.as_ref()?;
        let mut url = url::Url::parse(&format!("{}/oauth/authorize/", self.base_url())).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &app.client_id)
            .append_pair("state", state);
        Some(url.into())
    }

    /// The requests received so far (the newest [`journal::JOURNAL_CAP`]), in arrival
    /// order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.to_vec()
    }

    /// Current task results as full REST items, rights computed for the webhook user.
    pub fn results(&self) -> Vec<serde_json::Value> {
        let user = self.shared.settings.user_id as i64;
        self.shared.lock().world.result_items(user)
    }

    /// Adds a task to the portal (with a chat of its own, changed after every other task)
    /// and returns its id; for trials and tests that need more tasks than the seed.
    pub fn add_task(&self, task: NewTask) -> u64 {
        let id = self.shared.lock().world.add_task(task, time::now_secs());
        u64::try_from(id).unwrap_or_default()
    }

    /// Scripts `fault` for the next `times` calls of `method` (case-insensitive). Faults
    /// queued for one method are consumed in the order they were injected.
    pub fn inject(&self, method: &str, fault: Fault, times: u32) {
        self.shared.lock().faults.push(method, fault, times);
    }

    /// Stops accepting connections; open connections finish their current request.
    pub fn shutdown(&self) {
        self.shared.cancel.cancel();
    }
}

/// `len` random lowercase alphanumeric characters.
fn random_token(len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(len);
    out
}
