//! The configured identity (`BITRIX24_CLIENT_ID`, `BITRIX24_CLIENT_SECRET`,
//! `BITRIX24_REFRESH_TOKEN`): which pair it starts from, and its holder.
//!
//! At start-up the pair replicas share (when there is a shared store) wins, as their
//! common truth; else the token file, when it descends from the configured refresh
//! token (or none is configured); else the environment. The holder is the token file
//! alone, or, with replicas (issue 13), the pair they share in Redis
//! (`crate::replicas::pair`) with the token file as this replica's mirror of it, read
//! at its next start. The refresh itself follows the engine's rules
//! ([`super::engine`]).
//!
//! Over 600 lines: two thirds are its unit tests (the start-up order, masking, `Debug`,
//! the mirror in each replica's token file, and the engine's suite on replicas), kept
//! beside the start-up rules they check.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use super::engine::{Engine, EngineConfig, Start, Timing};
use super::holder::{Holder, HolderError, Pair};
use super::token_file::{TokenFile, read_token_file};
use crate::bitrix::grant::App;
use crate::bitrix::{BoxFuture, CallError, TokenSource};
use crate::redact;

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

/// The replicas' shared pair and what it held at start-up (read before the refresher
/// exists, because loading it is the one asynchronous part of start-up).
#[derive(Clone, Debug)]
pub struct Shared {
    holder: Arc<dyn Holder>,
    initial: Option<Pair>,
}

impl Shared {
    /// Reads the pair `holder` keeps now; it wins over the token file and the
    /// environment: it is the replicas' common truth.
    pub async fn load(holder: Arc<dyn Holder>) -> Result<Shared, String> {
        let initial = holder.load().await.map_err(|e| e.to_string())?;
        Ok(Shared { holder, initial })
    }
}

/// The configured identity's holder: its token file, or the replicas' shared pair
/// mirrored in the token file.
#[derive(Debug)]
struct Configured {
    file: TokenFile,
    shared: Option<Arc<dyn Holder>>,
}

impl Configured {
    /// Where the pair is kept and the processes take turns.
    fn place(&self) -> &dyn Holder {
        match &self.shared {
            Some(shared) => shared.as_ref(),
            None => &self.file,
        }
    }
}

impl Holder for Configured {
    fn describe(&self) -> &'static str {
        self.place().describe()
    }

    fn load(&self) -> BoxFuture<'_, Result<Option<Pair>, HolderError>> {
        self.place().load()
    }

    fn lock<'a>(
        &'a self,
        holder: &'a str,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, HolderError>> {
        self.place().lock(holder, until_ms)
    }

    fn unlock<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), HolderError>> {
        self.place().unlock(holder)
    }

    fn store<'a>(&'a self, pair: &'a Pair) -> BoxFuture<'a, Result<(), HolderError>> {
        Box::pin(async move {
            if let Some(shared) = &self.shared
                && let Err(e) = shared.store(pair).await
            {
                // The old refresh token is spent: the other replicas must find the new
                // one. Failing that, this replica still works, and theirs fail until one
                // of them is given a fresh grant.
                tracing::warn!(
                    "OAuth access token refreshed, but the new pair could not be shared with the \
                     other replicas ({e}); their next refresh will be refused"
                );
            }
            self.file.store(pair).await
        })
    }

    fn adopted<'a>(&'a self, pair: &'a Pair) -> BoxFuture<'a, ()> {
        match &self.shared {
            Some(_) => Box::pin(self.file.keep(
                pair,
                "another replica refreshed the OAuth access token; its pair is in use and stored in the token file",
            )),
            None => self.file.adopted(pair),
        }
    }

    fn also_masked(&self) -> &[SecretString] {
        self.file.also_masked()
    }
}

/// The configured identity's access token and its renewal.
#[derive(Debug)]
pub struct Refresher {
    engine: Engine,
    token_file: PathBuf,
}

impl TokenSource for Refresher {
    fn current(&self) -> (Option<SecretString>, u64) {
        self.engine.current()
    }

    fn refresh<'a>(
        &'a self,
        http: &'a reqwest::Client,
        seen: u64,
    ) -> BoxFuture<'a, Result<(), CallError>> {
        Box::pin(self.engine.refresh(http, seen))
    }
}

impl Refresher {
    /// Starts from the shared pair, else from the token file when it belongs to the
    /// configured refresh token (or none is configured), else from the environment.
    /// Fails when there is no refresh token anywhere.
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
        // What the file held, used or not: another refresh token there later was
        // written by another process.
        let seen = stored.as_ref().map(|s| s.refresh_token.clone());
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
        let (start, seeded_by) = match (shared_initial, from_file) {
            (Some(p), file) => {
                tracing::info!("OAuth tokens read from the store shared with the other replicas");
                let seeded_by = file.and_then(|f| f.seeded_by).or(env_refresh);
                (Start::from(p), seeded_by)
            }
            (None, Some(s)) => {
                tracing::info!(file = %path.display(), "OAuth tokens read from the token file");
                let start = Start {
                    access: Some(s.access_token),
                    refresh: s.refresh_token,
                    server_endpoint: s.server_endpoint,
                };
                (start, s.seeded_by)
            }
            (None, None) => {
                let refresh = env_refresh.ok_or_else(|| {
                    format!(
                        "OAuth refresh needs a refresh token: set BITRIX24_REFRESH_TOKEN (the token file {} has none)",
                        path.display()
                    )
                })?;
                let start = Start {
                    access: config.access_token.clone(),
                    refresh: refresh.clone(),
                    server_endpoint: None,
                };
                (start, Some(refresh))
            }
        };
        let holder = Configured {
            file: TokenFile::new(config.token_file.clone(), seeded_by, seen),
            shared: config.shared.map(|s| s.holder),
        };
        let engine_config = EngineConfig {
            app: App {
                client_id: config.client_id,
                client_secret: config.client_secret,
            },
            oauth_url: config.oauth_url,
            timing: Timing::default(),
        };
        Ok(Refresher {
            engine: Engine::new(Arc::new(holder), engine_config, start),
            token_file: config.token_file,
        })
    }

    /// Where the pair is kept.
    pub fn token_file(&self) -> &Path {
        &self.token_file
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::bitrix::grant;
    use crate::identity::memory::Memory;
    use crate::identity::suite::{self, Bench, pair_eq};
    use crate::identity::token_file::{StoredTokens, write_token_file};

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
        StoredTokens::sample(refresh, seeded_by)
    }

    /// The seed the refresher masks and writes with every pair.
    fn seeded_by(r: &Refresher) -> Option<&str> {
        r.engine.holder().also_masked().first().map(open)
    }

    fn read_file(path: &Path) -> StoredTokens {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    /// Replicas of the configured identity: each with a token file of its own, sharing
    /// one pair in memory (as in Redis).
    struct ReplicasBench {
        dir: tempfile::TempDir,
        shared: Memory,
    }

    impl ReplicasBench {
        fn new() -> ReplicasBench {
            ReplicasBench {
                dir: tempfile::tempdir().unwrap(),
                shared: Memory::default(),
            }
        }
    }

    impl Bench for ReplicasBench {
        fn seed<'a>(&'a self, pair: &'a Pair) -> BoxFuture<'a, ()> {
            self.shared.seed(pair.clone());
            Box::pin(async {})
        }

        fn holder(&self) -> BoxFuture<'_, Arc<dyn Holder>> {
            let file = self
                .dir
                .path()
                .join(format!("{}.json", uuid::Uuid::new_v4()));
            let holder = Configured {
                file: TokenFile::new(file, None, None),
                shared: Some(Arc::new(self.shared.clone())),
            };
            Box::pin(async move { Arc::new(holder) as Arc<dyn Holder> })
        }

        fn kept(&self) -> BoxFuture<'_, Option<Pair>> {
            let kept = self.shared.kept();
            Box::pin(async move { kept })
        }
    }

    crate::token_engine_suite!(ReplicasBench::new());

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
        assert_eq!(r.engine.known_refresh(), "refresh-1");
        assert_eq!(
            r.engine.token_url().as_str(),
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
        assert_eq!(r.engine.known_refresh(), "refresh-new");
        assert_eq!(seeded_by(&r), Some("refresh-new"));
        assert_eq!(
            r.engine.token_url().as_str(),
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
        assert_eq!(r.engine.known_refresh(), "refresh-1");
    }

    #[test]
    fn a_broken_file_falls_back_to_the_env() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), Some("refresh-0"));
        fs::create_dir_all(cfg.token_file.parent().unwrap()).unwrap();
        fs::write(&cfg.token_file, b"{not json").unwrap();
        let r = Refresher::load(cfg).unwrap();
        assert_eq!(r.engine.known_refresh(), "refresh-0");
    }

    #[test]
    fn override_url_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), Some("refresh-0"));
        cfg.oauth_url = Some(Url::parse("http://127.0.0.1:9/some/path").unwrap());
        let r = Refresher::load(cfg).unwrap();
        assert_eq!(
            r.engine.token_url().as_str(),
            "http://127.0.0.1:9/oauth/token/"
        );
    }

    #[tokio::test]
    async fn a_refresh_from_the_environment_that_hangs_writes_no_file() {
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
        let sandbox = suite::oauth_sandbox("app.1", "client-secret-xyz", "refresh-hundred-0").await;
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
        assert!(r.engine.masked_held() <= 12, "{}", r.engine.masked_held());
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
        let shown = format!(
            "{stored:?} {answer:?} {cfg:?} {refresher:?} {:?} {:?}",
            refresher.current(),
            refresher.engine
        );
        assert!(shown.contains("[REDACTED]"), "{shown}");
        for secret in secrets {
            assert!(!shown.contains(secret), "{secret}: {shown}");
        }
    }

    /// Two replicas with a token file each, one shared pair: what the first kept, the
    /// second adopts and writes to its own token file; the shared lock is freed.
    #[tokio::test]
    async fn a_second_replica_mirrors_the_pair_the_first_published_in_its_token_file() {
        let sandbox = suite::oauth_sandbox("app.1", "client-secret-xyz", "refresh-shared-0").await;
        let dir = tempfile::tempdir().unwrap();
        let memory = Memory::default();
        let replica = |name: &str| {
            let mut cfg = config(dir.path(), Some("refresh-shared-0"));
            cfg.token_file = dir.path().join(name);
            cfg.oauth_url = Some(Url::parse(&sandbox.base_url()).unwrap());
            cfg.shared = Some(Shared {
                holder: Arc::new(memory.clone()),
                initial: None,
            });
            Refresher::load(cfg).unwrap()
        };
        let (a, b) = (replica("a.json"), replica("b.json"));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        a.refresh(&http, 0).await.unwrap();
        assert_eq!(sandbox.refresh_count(), 1);
        let published = memory.kept().unwrap();
        assert_eq!(open(&published.access), sandbox.access_token().unwrap());
        assert_eq!(open(&published.refresh), sandbox.refresh_token().unwrap());
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
            (Some(open(&published.access)), 1)
        );
        assert_eq!(b.engine.known_refresh(), open(&published.refresh));
        for replica in [&a, &b] {
            let file = read_file(replica.token_file());
            assert_eq!(open(&file.refresh_token), open(&published.refresh));
            assert_eq!(open_some(&file.seeded_by), Some("refresh-shared-0"));
        }
        assert!(memory.lock_holder().is_none(), "the lock is freed");
        // When the shared pair is the one that failed, the replica refreshes with the
        // shared refresh token.
        b.refresh(&http, 1).await.unwrap();
        assert_eq!(sandbox.refresh_count(), 2);
        a.refresh(&http, 1).await.unwrap();
        assert_eq!(sandbox.refresh_count(), 2);
        assert_eq!(open_some(&a.current().0), sandbox.access_token().as_deref());
        assert!(pair_eq(
            &memory.kept().unwrap(),
            &read_file(a.token_file()).pair()
        ));
    }

    #[tokio::test]
    async fn the_shared_pair_wins_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Memory::default();
        memory.seed(Pair {
            access: "shared-access".into(),
            refresh: "shared-refresh".into(),
            expires_at: None,
            server_endpoint: Some("https://oauth.bitrix24.tech/rest/".into()),
            client_endpoint: None,
            scope: None,
        });
        let mut cfg = config(dir.path(), Some("refresh-shared-0"));
        cfg.shared = Some(Shared::load(Arc::new(memory)).await.unwrap());
        write_token_file(
            &cfg.token_file,
            &stored("refresh-1", Some("refresh-shared-0")),
        )
        .unwrap();
        cfg.refresh_token = None;
        let r = Refresher::load(cfg).unwrap();
        assert_eq!(open_some(&r.current().0), Some("shared-access"));
        assert_eq!(r.engine.known_refresh(), "shared-refresh");
        assert_eq!(
            r.engine.token_url().as_str(),
            "https://oauth.bitrix24.tech/oauth/token/"
        );
    }

    #[tokio::test]
    async fn a_shared_store_that_is_away_spends_nothing_and_is_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Memory::default();
        memory.set_away(true);
        let mut cfg = config(dir.path(), Some("refresh-0"));
        // Never reached: nothing may be sent without the store.
        cfg.oauth_url = Some(Url::parse("http://127.0.0.1:9/").unwrap());
        cfg.shared = Some(Shared {
            holder: Arc::new(memory),
            initial: None,
        });
        let r = Refresher::load(cfg).unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let e = r.refresh(&reqwest::Client::new(), 0).await.unwrap_err();
        assert!(
            matches!(&e, CallError::OAuth { code, .. } if code == "store_unavailable"),
            "{e}"
        );
        assert_eq!(r.current().1, 0);
        assert!(!r.engine.is_dead());
    }
}
