//! OAuth 2.0 access-token refresh (contract §8.2).
//!
//! On 401 `expired_token`/`invalid_token` the client asks [`Refresher::refresh`] for a new
//! token once and repeats the call. Concurrent calls that hit the 401 together share one
//! refresh: the refresher counts token generations, and a caller whose token is already
//! outdated just takes the new one. Every refresh rotates the refresh token, so the new
//! pair is written to a token file (mode 0600) that is read at start-up: a restart must
//! not present a refresh token that is already used up.
//!
//! The refresh goes through [`super::grant`] (the one token-endpoint client): a POST with a form body, so the client
//! secret never appears in a URL, to `/oauth/token/` on the OAuth server: the override
//! (`BITRIX24_OAUTH_URL`), else the host of the last answer's `server_endpoint`, else
//! `https://oauth.bitrix.info`.
//!
//! Replicas that share one identity (issue 13) also share its pair through a
//! [`SharedTokens`] store (Redis): a refresh takes the store's lock, re-reads the pair, and
//! either adopts the one another replica just published or spends the refresh token and
//! publishes the new pair before using it. Without a shared store nothing of that runs.
//!
//! Over 400 lines: the refresh and the token file share one state and its rules, kept
//! together; over half is their unit tests (the shared store's with an in-memory fake).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use super::caller::{BoxFuture, TokenSource};
use super::error::CallError;
use super::grant::{self, App, GrantRequest};
use crate::clock::now_ms;
use crate::redact;

/// Name of the token file's directory under the user's configuration directory.
const APP_DIR: &str = "bitrix24-task-results-mcp";

/// What the refresher needs, as configured.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    /// The application's client id.
    pub client_id: String,
    /// The application's client secret; sent only to the OAuth server.
    pub client_secret: SecretString,
    /// `BITRIX24_REFRESH_TOKEN`, when set.
    pub refresh_token: Option<SecretString>,
    /// `BITRIX24_ACCESS_TOKEN`, when set.
    pub access_token: Option<SecretString>,
    /// Where the current pair is kept.
    pub token_file: PathBuf,
    /// `BITRIX24_OAUTH_URL`: the OAuth server, overriding `server_endpoint`.
    pub oauth_url: Option<Url>,
    /// The store replicas share the pair through (`--store redis://…`), when any.
    pub shared: Option<Shared>,
}

/// How long a refresh may hold the shared lock (a crashed holder frees it then).
const LOCK_HOLD_MS: i64 = 30_000;
/// How long a replica waits for another's refresh before giving up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
/// How often a waiting replica tries the lock again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// A shared access token this close to its expiry is not adopted but refreshed.
const EXPIRY_MARGIN_S: i64 = 30;

/// One identity's pair as the replicas share it.
#[derive(Clone, Debug)]
pub struct SharedPair {
    /// The access token in force.
    pub access_token: SecretString,
    /// The refresh token not yet spent.
    pub refresh_token: SecretString,
    /// Unix time the access token expires, when the OAuth server said.
    pub expires: Option<i64>,
    /// The last `server_endpoint` the OAuth server gave.
    pub server_endpoint: Option<String>,
}

/// Where replicas with one configured identity keep its pair and take turns refreshing.
/// Errors are texts safe to show (no value of the store in them).
pub trait SharedTokens: std::fmt::Debug + Send + Sync + 'static {
    /// The pair last published, if any.
    fn load(&self) -> BoxFuture<'_, Result<Option<SharedPair>, String>>;
    /// Publishes `pair` for every replica.
    fn store<'a>(&'a self, pair: &'a SharedPair) -> BoxFuture<'a, Result<(), String>>;
    /// Takes the refresh lock for `holder` until `until_ms` (Unix ms); `false` when
    /// another holds it.
    fn lock<'a>(&'a self, holder: &'a str, until_ms: i64) -> BoxFuture<'a, Result<bool, String>>;
    /// Frees the lock if `holder` still holds it.
    fn unlock<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// A shared store and the pair it held at start-up (read before the refresher exists,
/// because loading it is the one asynchronous part of start-up).
#[derive(Clone, Debug)]
pub struct Shared {
    tokens: Arc<dyn SharedTokens>,
    initial: Option<SharedPair>,
}

impl Shared {
    /// Reads the pair `tokens` holds now; it wins over the token file and the
    /// environment: it is the replicas' common truth.
    pub async fn load(tokens: Arc<dyn SharedTokens>) -> Result<Shared, String> {
        let initial = tokens.load().await?;
        Ok(Shared { tokens, initial })
    }
}

fn shared_unavailable(detail: String) -> CallError {
    CallError::OAuth {
        code: "store_unavailable".into(),
        detail: format!(
            "the store shared with the other replicas is unavailable ({detail}); nothing was spent, try again"
        ),
    }
}

/// `$XDG_CONFIG_HOME/bitrix24-task-results-mcp/token.json`, else under `~/.config`, else
/// under `%APPDATA%`; `None` when none of those is known.
pub fn default_token_file() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let base = absolute("XDG_CONFIG_HOME")
        .or_else(|| absolute("HOME").map(|h| h.join(".config")))
        .or_else(|| absolute("APPDATA"))?;
    Some(base.join(APP_DIR).join("token.json"))
}

/// The token file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredTokens {
    #[serde(serialize_with = "expose")]
    access_token: SecretString,
    #[serde(serialize_with = "expose")]
    refresh_token: SecretString,
    /// Unix time the access token expires, as the OAuth server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_endpoint: Option<String>,
    /// The `BITRIX24_REFRESH_TOKEN` this chain of refreshes started from. It is used up,
    /// so keeping it costs nothing; a different one in the environment means the user
    /// authorised again, and the environment wins over the file.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_some"
    )]
    seeded_by: Option<SecretString>,
}

// The token file is the one place tokens are written out in clear (mode 0600): a restart
// must find the rotated pair. `SecretString` has no `Serialize` of its own for that reason.
fn expose<S: Serializer>(secret: &SecretString, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(secret.expose_secret())
}

fn expose_some<S: Serializer>(secret: &Option<SecretString>, to: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => to.serialize_some(secret.expose_secret()),
        None => to.serialize_none(),
    }
}

/// The current access token and its generation (bumped by every refresh).
#[derive(Debug)]
struct Current {
    access: Option<SecretString>,
    generation: u64,
}

/// What only the refresh itself touches.
#[derive(Debug)]
struct RefreshState {
    refresh_token: SecretString,
    server_endpoint: Option<String>,
    seeded_by: Option<SecretString>,
    /// A refusal no retry can fix (`invalid_grant`, `invalid_client`): kept so that later
    /// calls do not hammer the OAuth server with a dead refresh token.
    dead: Option<CallError>,
}

/// Holds the current access token and refreshes it, one refresh at a time.
#[derive(Debug)]
pub struct Refresher {
    app: App,
    oauth_url: Option<Url>,
    token_file: PathBuf,
    current: RwLock<Current>,
    state: tokio::sync::Mutex<RefreshState>,
    /// The tokens in force, masked in every log line and error; each refresh replaces them.
    masked: redact::Slot,
    /// The store shared with other replicas, when any.
    shared: Option<Arc<dyn SharedTokens>>,
}

impl TokenSource for Refresher {
    fn current(&self) -> (Option<SecretString>, u64) {
        Refresher::current(self)
    }

    fn refresh<'a>(
        &'a self,
        http: &'a reqwest::Client,
        seen: u64,
    ) -> BoxFuture<'a, Result<(), CallError>> {
        Box::pin(Refresher::refresh(self, http, seen))
    }
}

impl Refresher {
    /// Starts from the token file when it belongs to the configured refresh token (or
    /// none is configured), else from the environment. Fails when there is no refresh
    /// token anywhere.
    pub fn load(config: OAuthConfig) -> Result<Refresher, String> {
        for secret in [
            Some(&config.client_secret),
            config.refresh_token.as_ref(),
            config.access_token.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            redact::register(secret.expose_secret());
        }
        let path = &config.token_file;
        let stored = match read_token_file(path) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(
                    file = %path.display(),
                    "ignoring the OAuth token file: {e}"
                );
                None
            }
        };
        let env_refresh = config.refresh_token.clone();
        let from_file = stored.filter(|s| match &env_refresh {
            None => true,
            Some(env) => {
                let env = env.expose_secret();
                s.seeded_by.as_ref().map(ExposeSecret::expose_secret) == Some(env)
                    || s.refresh_token.expose_secret() == env
            }
        });
        let shared_initial = config.shared.as_ref().and_then(|s| s.initial.clone());
        let (access, state) = match (shared_initial, from_file) {
            (Some(p), file) => {
                tracing::info!("OAuth tokens read from the store shared with the other replicas");
                (
                    Some(p.access_token),
                    RefreshState {
                        refresh_token: p.refresh_token,
                        server_endpoint: p.server_endpoint,
                        seeded_by: file.and_then(|f| f.seeded_by).or(env_refresh),
                        dead: None,
                    },
                )
            }
            (None, Some(s)) => {
                tracing::info!(file = %path.display(), "OAuth tokens read from the token file");
                (
                    Some(s.access_token),
                    RefreshState {
                        refresh_token: s.refresh_token,
                        server_endpoint: s.server_endpoint,
                        seeded_by: s.seeded_by,
                        dead: None,
                    },
                )
            }
            (None, None) => {
                let refresh = env_refresh.ok_or_else(|| {
                    format!(
                        "OAuth refresh needs a refresh token: set BITRIX24_REFRESH_TOKEN (the token file {} has none)",
                        path.display()
                    )
                })?;
                (
                    config.access_token.clone(),
                    RefreshState {
                        seeded_by: Some(refresh.clone()),
                        refresh_token: refresh,
                        server_endpoint: None,
                        dead: None,
                    },
                )
            }
        };
        let masked = redact::Slot::new();
        mask_in_force(&masked, access.as_ref(), &state);
        Ok(Refresher {
            app: App {
                client_id: config.client_id,
                client_secret: config.client_secret,
            },
            oauth_url: config.oauth_url,
            token_file: config.token_file,
            current: RwLock::new(Current {
                access,
                generation: 0,
            }),
            state: tokio::sync::Mutex::new(state),
            masked,
            shared: config.shared.map(|s| s.tokens),
        })
    }

    /// Where the pair is kept.
    pub fn token_file(&self) -> &Path {
        &self.token_file
    }

    /// The current access token (if any yet) and its generation.
    pub fn current(&self) -> (Option<SecretString>, u64) {
        let c = self.current.read().unwrap_or_else(|e| e.into_inner());
        (c.access.clone(), c.generation)
    }

    /// Replaces the access token of generation `seen`. When another call already did
    /// (the generation moved on), returns at once: one refresh serves every caller. With
    /// a shared store, replicas take turns: the one holding the lock refreshes, the
    /// others find its pair in the store and adopt it.
    pub async fn refresh(&self, http: &reqwest::Client, seen: u64) -> Result<(), CallError> {
        let mut state = self.state.lock().await;
        if self.current().1 != seen {
            return Ok(());
        }
        if let Some(dead) = &state.dead {
            return Err(dead.clone());
        }
        let Some(shared) = self.shared.clone() else {
            return self.exchange(http, &mut state, None).await;
        };
        let holder = uuid::Uuid::new_v4().to_string();
        let give_up = tokio::time::Instant::now() + LOCK_WAIT;
        loop {
            let until = now_ms().saturating_add(LOCK_HOLD_MS);
            if shared
                .lock(&holder, until)
                .await
                .map_err(shared_unavailable)?
            {
                break;
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(CallError::OAuth {
                    code: "refresh_busy".into(),
                    detail: "another replica is refreshing the OAuth token and has not finished; try again"
                        .into(),
                });
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
        let outcome = self.refresh_shared(http, &mut state, &*shared).await;
        let _ = shared.unlock(&holder).await;
        outcome
    }

    /// Under the shared lock: adopts the pair another replica published, or spends the
    /// refresh token when the store still holds the pair that failed here.
    async fn refresh_shared(
        &self,
        http: &reqwest::Client,
        state: &mut RefreshState,
        shared: &dyn SharedTokens,
    ) -> Result<(), CallError> {
        // Read after taking the lock: the previous holder stored its pair before it
        // unlocked.
        let Some(pair) = shared.load().await.map_err(shared_unavailable)? else {
            return self.exchange(http, state, Some(shared)).await;
        };
        let mine = self.current().0;
        let differs = mine.as_ref().map(ExposeSecret::expose_secret)
            != Some(pair.access_token.expose_secret());
        let fresh = pair
            .expires
            .is_none_or(|at| at > now_ms() / 1000 + EXPIRY_MARGIN_S);
        // The store's refresh token is the one not yet spent, whichever replica
        // published it.
        state.refresh_token = pair.refresh_token.clone();
        if pair.server_endpoint.is_some() {
            state.server_endpoint = pair.server_endpoint.clone();
        }
        if !(differs && fresh) {
            return self.exchange(http, state, Some(shared)).await;
        }
        mask_in_force(&self.masked, Some(&pair.access_token), state);
        let stored = StoredTokens {
            access_token: pair.access_token.clone(),
            refresh_token: pair.refresh_token,
            expires: pair.expires,
            server_endpoint: state.server_endpoint.clone(),
            seeded_by: state.seeded_by.clone(),
        };
        self.put_in_force(pair.access_token, stored, "another replica refreshed the OAuth access token; its pair is in use and stored in the token file")
            .await;
        Ok(())
    }

    /// Spends the refresh token; the new pair goes to `shared` (when given) before it is
    /// used, then to the token file.
    async fn exchange(
        &self,
        http: &reqwest::Client,
        state: &mut RefreshState,
        shared: Option<&dyn SharedTokens>,
    ) -> Result<(), CallError> {
        let url = self.token_url(state);
        let answer = match grant::exchange(
            http,
            url,
            &self.app,
            GrantRequest::Refresh(state.refresh_token.expose_secret()),
        )
        .await
        {
            Ok(a) => a,
            Err(e) => {
                if matches!(&e, CallError::OAuth { code, .. } if is_permanent(code)) {
                    state.dead = Some(e.clone());
                }
                return Err(e);
            }
        };
        state.refresh_token = answer.refresh_token.clone();
        if answer.server_endpoint.is_some() {
            state.server_endpoint = answer.server_endpoint.clone();
        }
        // Masked before anything can log or echo the new pair.
        mask_in_force(&self.masked, Some(&answer.access_token), state);
        if let Some(shared) = shared {
            let pair = SharedPair {
                access_token: answer.access_token.clone(),
                refresh_token: answer.refresh_token.clone(),
                expires: answer.expires_at,
                server_endpoint: state.server_endpoint.clone(),
            };
            // The old refresh token is spent: the other replicas must find the new one.
            // Failing that, this replica still works, and theirs fail until one of them
            // is given a fresh grant.
            if let Err(e) = shared.store(&pair).await {
                tracing::warn!(
                    "OAuth access token refreshed, but the new pair could not be shared with the \
                     other replicas ({e}); their next refresh will be refused"
                );
            }
        }
        let stored = StoredTokens {
            access_token: answer.access_token.clone(),
            refresh_token: answer.refresh_token,
            expires: answer.expires_at,
            server_endpoint: state.server_endpoint.clone(),
            seeded_by: state.seeded_by.clone(),
        };
        self.put_in_force(
            answer.access_token,
            stored,
            "OAuth access token refreshed; the new pair is stored in the token file",
        )
        .await;
        Ok(())
    }

    /// Makes `access` the token in force (a new generation) and writes `stored` to the
    /// token file. The caller holds the state lock over the write only so that two
    /// refreshes cannot store their pairs out of order (the write runs off the runtime).
    async fn put_in_force(&self, access: SecretString, stored: StoredTokens, done: &str) {
        {
            let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
            current.access = Some(access);
            current.generation += 1;
        }
        let path = self.token_file.clone();
        let written = tokio::task::spawn_blocking(move || write_token_file(&path, &stored))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        match written {
            Ok(()) => tracing::info!(file = %self.token_file.display(), "{done}"),
            Err(e) => tracing::warn!(
                file = %self.token_file.display(),
                "OAuth access token refreshed, but the new pair could not be stored ({e}); \
                 after a restart the old refresh token will be refused: fix the file's directory \
                 or set BITRIX24_TOKEN_FILE"
            ),
        }
    }

    fn token_url(&self, state: &RefreshState) -> Url {
        grant::token_url(self.oauth_url.as_ref(), state.server_endpoint.as_deref())
    }
}

/// Makes the identity's tokens now in force (the access token, the refresh token and the
/// one the chain started from) the ones `slot` masks.
fn mask_in_force(slot: &redact::Slot, access: Option<&SecretString>, state: &RefreshState) {
    let in_force: Vec<&str> = [access, Some(&state.refresh_token), state.seeded_by.as_ref()]
        .into_iter()
        .flatten()
        .map(ExposeSecret::expose_secret)
        .collect();
    slot.replace(&in_force);
}

/// Refusals that only new credentials fix.
fn is_permanent(code: &str) -> bool {
    code.eq_ignore_ascii_case("invalid_grant") || code.eq_ignore_ascii_case("invalid_client")
}

fn read_token_file(path: &Path) -> Result<Option<StoredTokens>, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    #[cfg(unix)]
    if let Ok(meta) = fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "the OAuth token file is readable by other users; run chmod 600 on it"
            );
        }
    }
    let stored: StoredTokens = serde_json::from_slice(&bytes)
        .map_err(|e| format!("it is not a token file written by this server ({e})"))?;
    if stored.refresh_token.expose_secret().trim().is_empty() {
        return Err("it holds no refresh token".into());
    }
    Ok(Some(stored))
}

/// Writes the file atomically (temporary file, then rename) with mode 0600, creating its
/// directory with mode 0700 when missing.
fn write_token_file(path: &Path, tokens: &StoredTokens) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir)?;
    }
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let json = serde_json::to_vec_pretty(tokens).map_err(io::Error::other)?;
    // A fresh, uniquely named 0600 file in the same directory, renamed over the old one:
    // a reader sees the old pair or the new, never half of one.
    let mut tmp = tempfile::Builder::new()
        .prefix(".token-")
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    tmp.write_all(&json)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory entry is.
    #[cfg(unix)]
    fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(secret: &SecretString) -> &str {
        secret.expose_secret()
    }

    fn open_some(secret: &Option<SecretString>) -> Option<&str> {
        secret.as_ref().map(open)
    }

    fn config(dir: &Path, refresh: Option<&str>) -> OAuthConfig {
        OAuthConfig {
            client_id: "app.1".into(),
            client_secret: "client-secret-xyz".into(),
            refresh_token: refresh.map(Into::into),
            access_token: Some("env-access-token".into()),
            token_file: dir.join("sub").join("token.json"),
            oauth_url: None,
            shared: None,
        }
    }

    fn stored(refresh: &str, seeded_by: Option<&str>) -> StoredTokens {
        StoredTokens {
            access_token: "file-access-token".into(),
            refresh_token: refresh.into(),
            expires: Some(1),
            server_endpoint: Some("https://oauth.bitrix24.tech/rest/".into()),
            seeded_by: seeded_by.map(Into::into),
        }
    }

    #[test]
    fn file_is_written_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("token.json");
        write_token_file(&path, &stored("refresh-1", Some("refresh-0"))).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dir_mode = fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(dir_mode, 0o700);
        }
        let back = read_token_file(&path).unwrap().unwrap();
        assert_eq!(open(&back.refresh_token), "refresh-1");
        assert_eq!(open_some(&back.seeded_by), Some("refresh-0"));
        // Overwriting keeps the mode and leaves no temporary file behind.
        write_token_file(&path, &stored("refresh-2", Some("refresh-0"))).unwrap();
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["token.json"]);
    }

    #[test]
    fn file_descending_from_the_env_token_wins_over_the_env() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), Some("refresh-0"));
        write_token_file(&cfg.token_file, &stored("refresh-1", Some("refresh-0"))).unwrap();
        let r = Refresher::load(cfg).unwrap();
        let (access, generation) = r.current();
        assert_eq!(
            (open_some(&access), generation),
            (Some("file-access-token"), 0)
        );
        let state = r.state.try_lock().unwrap();
        assert_eq!(open(&state.refresh_token), "refresh-1");
        assert_eq!(
            r.token_url(&state).as_str(),
            "https://oauth.bitrix24.tech/oauth/token/"
        );
    }

    #[test]
    fn a_new_env_refresh_token_means_authorised_again() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), Some("refresh-new"));
        write_token_file(&cfg.token_file, &stored("refresh-1", Some("refresh-0"))).unwrap();
        let r = Refresher::load(cfg).unwrap();
        assert_eq!(open_some(&r.current().0), Some("env-access-token"));
        let state = r.state.try_lock().unwrap();
        assert_eq!(open(&state.refresh_token), "refresh-new");
        assert_eq!(open_some(&state.seeded_by), Some("refresh-new"));
        assert_eq!(
            r.token_url(&state).as_str(),
            "https://oauth.bitrix.info/oauth/token/"
        );
    }

    #[test]
    fn file_alone_is_enough_and_nothing_at_all_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), None);
        let e = Refresher::load(cfg.clone()).unwrap_err();
        assert!(e.contains("BITRIX24_REFRESH_TOKEN"), "{e}");
        write_token_file(&cfg.token_file, &stored("refresh-1", None)).unwrap();
        let r = Refresher::load(cfg).unwrap();
        assert_eq!(
            open(&r.state.try_lock().unwrap().refresh_token),
            "refresh-1"
        );
    }

    #[test]
    fn a_broken_file_falls_back_to_the_env() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), Some("refresh-0"));
        fs::create_dir_all(cfg.token_file.parent().unwrap()).unwrap();
        fs::write(&cfg.token_file, b"{not json").unwrap();
        let r = Refresher::load(cfg).unwrap();
        assert_eq!(
            open(&r.state.try_lock().unwrap().refresh_token),
            "refresh-0"
        );
    }

    #[test]
    fn override_url_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), Some("refresh-0"));
        cfg.oauth_url = Some(Url::parse("http://127.0.0.1:9/some/path").unwrap());
        let r = Refresher::load(cfg).unwrap();
        let state = r.state.try_lock().unwrap();
        assert_eq!(
            r.token_url(&state).as_str(),
            "http://127.0.0.1:9/oauth/token/"
        );
    }

    #[tokio::test]
    async fn a_refresh_that_hangs_is_bounded_by_the_call_budget() {
        // Connections are accepted by the kernel's backlog and never answered.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), Some("refresh-0"));
        let base = format!("http://{}/", listener.local_addr().unwrap());
        cfg.oauth_url = Some(Url::parse(&base).unwrap());
        let r = Refresher::load(cfg).unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
        let (_, seen) = r.current();
        let e = crate::bitrix::caller::refresh_within(&r, &http, seen, deadline)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, CallError::Budget(m) if m.contains("OAuth")),
            "{e}"
        );
        // Nothing was half-written.
        assert!(!r.token_file().exists());
    }

    #[tokio::test]
    async fn a_hundred_refreshes_keep_only_the_tokens_in_force_masked() {
        use crate::sandbox::{OAuthApp, Sandbox, SandboxOptions};
        let sandbox = Sandbox::start(SandboxOptions {
            oauth: Some(OAuthApp {
                client_id: "app.1".into(),
                client_secret: "client-secret-xyz".into(),
                refresh_token: "refresh-hundred-0".into(),
                access_token_ttl: std::time::Duration::from_secs(3600),
                ..OAuthApp::default()
            }),
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), Some("refresh-hundred-0"));
        cfg.oauth_url = Some(Url::parse(&sandbox.base_url()).unwrap());
        let r = Refresher::load(cfg).unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let mut first = None;
        for _ in 0..100 {
            let (_, seen) = r.current();
            r.refresh(&http, seen).await.unwrap();
            first.get_or_insert_with(|| sandbox.refresh_token().unwrap());
        }
        assert_eq!(sandbox.refresh_count(), 100);
        // Access, refresh and seed token, plain and percent-encoded, now and one back.
        assert!(r.masked.held() <= 12, "{}", r.masked.held());
        let (access, refresh) = (r.current().0.unwrap(), sandbox.refresh_token().unwrap());
        assert_eq!(open(&access), sandbox.access_token().unwrap());
        for newest in [open(&access), refresh.as_str()] {
            assert_eq!(redact::redact(&format!("<{newest}>")), "<***>");
        }
        // The first rotated refresh token is long used up: no longer kept.
        let first = first.unwrap();
        assert_eq!(redact::redact(&first), first);
    }

    #[test]
    fn debug_of_the_token_types_shows_no_secret() {
        let secrets = [
            "dbg-file-access",
            "dbg-file-refresh",
            "dbg-seed",
            "dbg-answer-access",
            "dbg-answer-refresh",
            "client-secret-xyz",
            "env-access-token",
        ];
        let stored = StoredTokens {
            access_token: "dbg-file-access".into(),
            refresh_token: "dbg-file-refresh".into(),
            expires: Some(1),
            server_endpoint: None,
            seeded_by: Some("dbg-seed".into()),
        };
        let answer = grant::parse(
            200,
            br#"{"access_token":"dbg-answer-access","refresh_token":"dbg-answer-refresh"}"#,
            "o",
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), None);
        write_token_file(&cfg.token_file, &stored).unwrap();
        let refresher = Refresher::load(cfg.clone()).unwrap();
        // The file still holds them in clear: a restart needs them.
        let file = fs::read_to_string(&cfg.token_file).unwrap();
        assert!(
            file.contains("dbg-file-access") && file.contains("dbg-seed"),
            "{file}"
        );
        let shown = {
            let state = refresher.state.try_lock().unwrap();
            let current = refresher.current.read().unwrap();
            format!(
                "{stored:?} {answer:?} {cfg:?} {refresher:?} {:?} {state:?} {current:?}",
                refresher.current()
            )
        };
        assert!(shown.contains("[REDACTED]"), "{shown}");
        for secret in secrets {
            assert!(!shown.contains(secret), "{secret}: {shown}");
        }
    }

    #[test]
    fn token_file_writes_leave_no_temporary_files_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("token.json");
        for n in 0..3 {
            write_token_file(&path, &stored(&format!("r{n}"), None)).unwrap();
        }
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("token.json")]);
        assert!(
            String::from_utf8(fs::read(&path).unwrap())
                .unwrap()
                .contains("\"r2\"")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn server_endpoint_is_used_only_over_https_or_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let r = Refresher::load(config(dir.path(), Some("refresh-0"))).unwrap();
        let mut state = r.state.try_lock().unwrap();
        for (endpoint, expected) in [
            (
                "https://oauth.bitrix24.tech/rest/",
                "https://oauth.bitrix24.tech/oauth/token/",
            ),
            (
                "http://127.0.0.1:9/rest/",
                "http://127.0.0.1:9/oauth/token/",
            ),
            ("http://[::1]:9/rest/", "http://[::1]:9/oauth/token/"),
            (
                "http://localhost:9/rest/",
                "http://localhost:9/oauth/token/",
            ),
            (
                "http://oauth.evil.example/rest/",
                "https://oauth.bitrix.info/oauth/token/",
            ),
            (
                "http://10.0.0.1/rest/",
                "https://oauth.bitrix.info/oauth/token/",
            ),
            (
                "ftp://127.0.0.1/rest/",
                "https://oauth.bitrix.info/oauth/token/",
            ),
        ] {
            state.server_endpoint = Some(endpoint.into());
            assert_eq!(r.token_url(&state).as_str(), expected, "{endpoint}");
        }
    }

    #[test]
    fn answers_are_parsed() {
        let ok = grant::parse(
            200,
            br#"{"access_token":"a1","refresh_token":"r1","expires":1780319382,"server_endpoint":"https://oauth.bitrix.info/rest/"}"#,
            "o",
        )
        .unwrap();
        assert_eq!(open(&ok.access_token), "a1");
        assert_eq!(ok.expires_at, Some(1780319382));
        let grant = grant::parse(
            400,
            br#"{"error":"invalid_grant","error_description":"Invalid grant"}"#,
            "o",
        )
        .unwrap_err();
        assert!(matches!(&grant, CallError::OAuth { code, .. } if code == "invalid_grant"));
        assert!(is_permanent("invalid_grant") && !is_permanent("HTTP_502"));
        let html = grant::parse(502, b"<html>", "o").unwrap_err();
        assert!(matches!(&html, CallError::OAuth { code, .. } if code == "HTTP_502"));
        let partial = grant::parse(200, br#"{"access_token":"a"}"#, "o").unwrap_err();
        assert!(matches!(&partial, CallError::OAuth { code, .. } if code == "HTTP_200"));
    }

    /// An in-memory [`SharedTokens`]: what Redis does for replicas, for two refreshers
    /// in one test.
    #[derive(Debug, Default)]
    struct Memory {
        pair: std::sync::Mutex<Option<SharedPair>>,
        holder: std::sync::Mutex<Option<String>>,
        /// Every lock is refused (another replica holds it for ever).
        held_elsewhere: bool,
        /// Every call fails (Redis is away).
        away: bool,
    }

    impl SharedTokens for Memory {
        fn load(&self) -> BoxFuture<'_, Result<Option<SharedPair>, String>> {
            let out = if self.away {
                Err("away".into())
            } else {
                Ok(self.pair.lock().unwrap().clone())
            };
            Box::pin(async move { out })
        }
        fn store<'a>(&'a self, pair: &'a SharedPair) -> BoxFuture<'a, Result<(), String>> {
            *self.pair.lock().unwrap() = Some(pair.clone());
            Box::pin(async { Ok(()) })
        }
        fn lock<'a>(&'a self, holder: &'a str, _: i64) -> BoxFuture<'a, Result<bool, String>> {
            let out = if self.away {
                Err("away".into())
            } else {
                let mut h = self.holder.lock().unwrap();
                let free = !self.held_elsewhere && h.as_deref().is_none_or(|h| h == holder);
                if free {
                    *h = Some(holder.to_string());
                }
                Ok(free)
            };
            Box::pin(async move { out })
        }
        fn unlock<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), String>> {
            let mut h = self.holder.lock().unwrap();
            if h.as_deref() == Some(holder) {
                *h = None;
            }
            Box::pin(async { Ok(()) })
        }
    }

    async fn shared_cfg(dir: &Path, name: &str, memory: &Arc<Memory>) -> OAuthConfig {
        let mut cfg = config(dir, Some("refresh-shared-0"));
        cfg.token_file = dir.join(name);
        cfg.shared = Some(Shared::load(memory.clone()).await.unwrap());
        cfg
    }

    #[tokio::test]
    async fn a_second_replica_adopts_the_pair_the_first_published() {
        use crate::sandbox::{OAuthApp, Sandbox, SandboxOptions};
        let sandbox = Sandbox::start(SandboxOptions {
            oauth: Some(OAuthApp {
                client_id: "app.1".into(),
                client_secret: "client-secret-xyz".into(),
                refresh_token: "refresh-shared-0".into(),
                access_token_ttl: std::time::Duration::from_secs(3600),
                ..OAuthApp::default()
            }),
            ..SandboxOptions::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(Memory::default());
        let mut a = shared_cfg(dir.path(), "a.json", &memory).await;
        let mut b = shared_cfg(dir.path(), "b.json", &memory).await;
        for cfg in [&mut a, &mut b] {
            cfg.oauth_url = Some(Url::parse(&sandbox.base_url()).unwrap());
        }
        let (a, b) = (Refresher::load(a).unwrap(), Refresher::load(b).unwrap());
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        a.refresh(&http, 0).await.unwrap();
        assert_eq!(sandbox.refresh_count(), 1);
        let published = memory.pair.lock().unwrap().clone().unwrap();
        assert_eq!(
            open(&published.access_token),
            sandbox.access_token().unwrap()
        );
        assert_eq!(
            open(&published.refresh_token),
            sandbox.refresh_token().unwrap()
        );
        // The second replica's token failed too: it takes the published pair.
        b.refresh(&http, 0).await.unwrap();
        assert_eq!(
            sandbox.refresh_count(),
            1,
            "the refresh token is spent once"
        );
        let (access, generation) = b.current();
        assert_eq!(
            (open_some(&access), generation),
            (Some(open(&published.access_token)), 1)
        );
        assert_eq!(
            open(&b.state.try_lock().unwrap().refresh_token),
            open(&published.refresh_token)
        );
        let file = read_token_file(b.token_file()).unwrap().unwrap();
        assert_eq!(open(&file.refresh_token), open(&published.refresh_token));
        assert!(memory.holder.lock().unwrap().is_none(), "the lock is freed");
        // When the shared pair is the one that failed, the replica refreshes with the
        // shared refresh token.
        b.refresh(&http, 1).await.unwrap();
        assert_eq!(sandbox.refresh_count(), 2);
        a.refresh(&http, 1).await.unwrap();
        assert_eq!(sandbox.refresh_count(), 2);
        assert_eq!(open_some(&a.current().0), sandbox.access_token().as_deref());
    }

    #[tokio::test]
    async fn the_shared_pair_wins_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(Memory::default());
        *memory.pair.lock().unwrap() = Some(SharedPair {
            access_token: "shared-access".into(),
            refresh_token: "shared-refresh".into(),
            expires: None,
            server_endpoint: Some("https://oauth.bitrix24.tech/rest/".into()),
        });
        let mut cfg = shared_cfg(dir.path(), "t.json", &memory).await;
        write_token_file(
            &cfg.token_file,
            &stored("refresh-1", Some("refresh-shared-0")),
        )
        .unwrap();
        cfg.refresh_token = None;
        let r = Refresher::load(cfg).unwrap();
        assert_eq!(open_some(&r.current().0), Some("shared-access"));
        let state = r.state.try_lock().unwrap();
        assert_eq!(open(&state.refresh_token), "shared-refresh");
        assert_eq!(
            r.token_url(&state).as_str(),
            "https://oauth.bitrix24.tech/oauth/token/"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lock_never_freed_ends_in_refresh_busy_and_an_absent_store_spends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        for (memory, expected) in [
            (
                Memory {
                    held_elsewhere: true,
                    ..Memory::default()
                },
                "refresh_busy",
            ),
            (
                Memory {
                    away: true,
                    ..Memory::default()
                },
                "store_unavailable",
            ),
        ] {
            let memory = Arc::new(memory);
            let mut cfg = config(dir.path(), Some("refresh-0"));
            // Never reached: nothing may be sent without the lock.
            cfg.oauth_url = Some(Url::parse("http://127.0.0.1:9/").unwrap());
            cfg.shared = Some(Shared {
                tokens: memory,
                initial: None,
            });
            let r = Refresher::load(cfg).unwrap();
            let e = r.refresh(&http, 0).await.unwrap_err();
            assert!(
                matches!(&e, CallError::OAuth { code, .. } if code == expected),
                "{e}"
            );
            assert_eq!(r.current().1, 0);
            assert!(r.state.try_lock().unwrap().dead.is_none());
        }
    }

    #[test]
    fn default_path_is_under_the_config_dir() {
        if let Some(p) = default_token_file() {
            assert!(p.ends_with("bitrix24-task-results-mcp/token.json"), "{p:?}");
        }
    }
}
