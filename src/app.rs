//! Wiring: settings into a portal client, a server and a transport. `serve` runs here;
//! `doctor` borrows the portal part ([`start_sandbox`], [`portal_client`]).

use std::io::IsTerminal;
use std::process::ExitCode;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::bitrix::grant::App;
use crate::bitrix::{Caller, Client, Endpoint, StaticToken};
use crate::bitrix::{SharedBucket, SharedGate};
use crate::identity::{OAuthConfig, Refresher, Shared};
use crate::metrics::listener::Probe;
use crate::redact;
use crate::replicas::bucket::RedisBucket;
use crate::replicas::gate::RedisGate;
use crate::replicas::pair::RedisPair;
use crate::sandbox::{OAuthApp, Sandbox, SandboxOptions};
use crate::server::audited::Audited;
use crate::server::{Metered, TaskResultsServer};
use crate::settings::{Pacing, Portal, PortalChoice, Settings, SignInSettings, StoreLocation};
use crate::sign_in::{ConsentKey, SignIn, SignInOptions};
use crate::store::{RedisStore, RedisUrl, SqliteStore, Store, StoreKey};
use crate::transport;

/// Starts the built-in sandbox portal and the webhook endpoint that reaches it.
pub async fn start_sandbox() -> std::io::Result<(Endpoint, Sandbox)> {
    let sandbox = Sandbox::start(SandboxOptions::default()).await?;
    let endpoint =
        Endpoint::webhook(&sandbox.webhook_url()).map_err(|e| std::io::Error::other(e.0))?;
    Ok((endpoint, sandbox))
}

/// Starts the sandbox portal as the portal people sign in to: it also plays Bitrix24's
/// OAuth server, with an application of its own.
/// `callback` is this server's redirect address, registered as the sandbox app's.
pub async fn start_sign_in_sandbox(callback: &str) -> std::io::Result<(Endpoint, Sandbox, App)> {
    let app = App {
        client_id: "sandbox.app".into(),
        client_secret: SecretString::from(crate::sign_in::secret::random_token()),
    };
    let sandbox = Sandbox::start(SandboxOptions {
        oauth: Some(
            OAuthApp {
                client_id: app.client_id.clone(),
                client_secret: app.client_secret.expose_secret().to_string(),
                refresh_token: crate::sign_in::secret::random_token(),
                access_token_ttl: std::time::Duration::from_secs(3600),
                ..OAuthApp::default()
            }
            .with_redirect_uri(callback),
        ),
        ..SandboxOptions::default()
    })
    .await?;
    // Requests without a signed-in person never reach the portal client.
    let endpoint = Endpoint::oauth_with(&sandbox.base_url(), Arc::new(StaticToken::new("")))
        .map_err(|e| std::io::Error::other(e.0))?;
    Ok((endpoint, sandbox, app))
}

/// Opens the sign-in store: the key from `--store-key`, else (SQLite only) the key file
/// beside the database (created, with a warning, the first time). A Redis store needs
/// `--store-key`: every replica must seal with the same key, and there is no file to share.
pub async fn open_store(
    location: &StoreLocation,
    key: Option<&SecretString>,
) -> Result<Arc<dyn Store>, String> {
    let given = key
        .map(|hex| StoreKey::from_hex(hex.expose_secret()).map_err(|e| e.to_string()))
        .transpose()?;
    match location {
        StoreLocation::Sqlite(path) => {
            let key = match given {
                Some(key) => key,
                None => {
                    let key_path = crate::store::default_key_path(path);
                    let (key, created) =
                        StoreKey::load_or_create(&key_path).map_err(|e| e.to_string())?;
                    if created {
                        tracing::warn!(
                            key_file = %key_path.display(),
                            "created a key file for the sign-in store; in production set MCP_STORE_KEY \
                             (64 hex characters, e.g. `openssl rand -hex 32`) and keep it out of the data directory"
                        );
                    }
                    key
                }
            };
            let store = SqliteStore::open(path, key)
                .map_err(|e| format!("cannot open the sign-in store {}: {e}", path.display()))?;
            tracing::info!(store = %path.display(), "sign-in store opened");
            Ok(crate::store::metered(Arc::new(store)))
        }
        StoreLocation::Redis(url) => {
            let key = given.ok_or_else(|| {
                "a Redis store needs --store-key (MCP_STORE_KEY, 64 hex characters, e.g. \
                 `openssl rand -hex 32`), the same on every replica"
                    .to_string()
            })?;
            let store = RedisStore::open(url, key)
                .await
                .map_err(|e| format!("cannot open the sign-in store {}: {e}", url.shown()))?;
            tracing::info!(store = %url.shown(), "sign-in store opened (Redis, shared by replicas)");
            Ok(crate::store::metered(Arc::new(store)))
        }
    }
}

/// The one place settings become a portal client: the endpoint (portal and its
/// credentials), pacing and budget, and with OAuth refresh the refresher that keeps the
/// token fresh. Reads the token file.
pub fn portal_client(
    mut endpoint: Endpoint,
    portal: &Portal,
    pacing: &Pacing,
    shared_bucket: Option<Arc<dyn SharedBucket>>,
    shared_gate: Option<Arc<dyn SharedGate>>,
) -> Result<(Client, Caller), String> {
    let mut options = pacing.client_options(portal);
    if let Some(bucket) = shared_bucket {
        tracing::info!("the pacing bucket is shared with the other replicas through the store");
        options.shared_bucket = Some(bucket);
    }
    if let Some(gate) = shared_gate {
        tracing::info!(
            "operating-limit blocks are shared with the other replicas through the store"
        );
        options.shared_gate = Some(gate);
    }
    if options.rate.is_unlimited() {
        tracing::info!(
            call_budget_s = options.call_budget.as_secs(),
            "portal calls are not paced (--plan unlimited)"
        );
    } else {
        tracing::info!(
            rate_per_sec = options.rate.per_sec,
            burst = options.rate.burst,
            call_budget_s = options.call_budget.as_secs(),
            "pacing portal calls"
        );
    }
    if let Some(config) = &portal.refresh {
        let refresher = Refresher::load(config.clone())?;
        tracing::info!(token_file = %refresher.token_file().display(), "OAuth token refresh enabled");
        endpoint.caller = Caller::OAuth(Arc::new(refresher));
    }
    Ok((Client::new(endpoint.portal, options), endpoint.caller))
}

/// Exit code 2 with the (redacted) configuration error.
fn usage(e: &str) -> ExitCode {
    crate::log_lines::error(e);
    ExitCode::from(2)
}

/// Runs the MCP server until the client leaves or a signal arrives.
pub async fn serve(settings: Settings) -> ExitCode {
    let http = match settings.http {
        Ok(h) => h,
        Err(e) => return usage(&e),
    };
    let inventory = match settings.tools.resolve() {
        Ok(i) => i,
        Err(e) => return usage(&e),
    };
    let (mut portal, pacing) = match (settings.portal, settings.pacing) {
        (Err(e), _) | (_, Err(e)) => return usage(&e),
        (Ok(portal), Ok(pacing)) => (portal, pacing),
    };
    let sign_in = match settings.sign_in {
        Ok(s) => s,
        Err(e) => return usage(&e),
    };
    let metrics_listen = match settings.metrics_listen {
        Ok(m) => m,
        Err(e) => return usage(&e),
    };
    // Opened before anything is served, so that a file others could read stops start-up.
    let audit = match settings.audit.map(crate::audit::Writer::open).transpose() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {}", redact::redact(&e));
            return ExitCode::FAILURE;
        }
    };
    // Bound first: on loopback the address clients reach, and so the sign-in callback,
    // is known only now.
    let listener = match &http {
        Some(opts) => match transport::http::bind(opts.listen).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!("{e:#}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let metrics = match metrics_listen {
        Some(addr) => match start_metrics(addr).await {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let public_url = match (&sign_in, &listener) {
        (Some(s), Some(l)) => Some(s.public_url.clone().unwrap_or_else(|| {
            let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
            reqwest::Url::parse(&format!("http://{addr}/")).expect("a socket address makes a URL")
        })),
        _ => None,
    };
    // Kept alive for the whole session: dropping it would not stop it, but holding it
    // makes the ownership plain.
    let mut sandbox_app = None;
    let (endpoint, _sandbox) = match &portal.choice {
        PortalChoice::Portal(endpoint) => {
            if !endpoint.is_https() && !endpoint.is_loopback() {
                tracing::warn!(portal = %endpoint.portal(), "the portal URL is plain http; Bitrix24 cloud portals require https");
            }
            (endpoint.clone(), None)
        }
        PortalChoice::Sandbox if public_url.is_some() => match start_sign_in_sandbox(
            &crate::sign_in::callback_url(public_url.as_ref().expect("checked")),
        )
        .await
        {
            Ok((endpoint, sandbox, app)) => {
                tracing::warn!(
                    address = %sandbox.base_url(),
                    "SANDBOX MODE: people sign in on the built-in emulator of a Bitrix24 portal (its sign-in page lists its users); nothing leaves this machine"
                );
                sandbox_app = Some((app, sandbox.base_url()));
                (endpoint, Some(sandbox))
            }
            Err(e) => {
                crate::log_lines::error(&format!("cannot start the sandbox portal: {e}"));
                return ExitCode::FAILURE;
            }
        },
        PortalChoice::Sandbox => match start_sandbox().await {
            Ok((endpoint, sandbox)) => {
                tracing::warn!(
                    address = %sandbox.base_url(),
                    "SANDBOX MODE: calls go to the built-in emulator of a Bitrix24 portal, not to a real portal; nothing leaves this machine"
                );
                (endpoint, Some(sandbox))
            }
            Err(e) => {
                crate::log_lines::error(&format!("cannot start the sandbox portal: {e}"));
                return ExitCode::FAILURE;
            }
        },
    };
    tracing::info!(portal = %endpoint.describe(), version = env!("CARGO_PKG_VERSION"), "bitrix24-task-results-mcp starting");
    if let (Ok(Some(url)), Some(config)) = (&settings.shared, portal.refresh.as_mut()) {
        match shared_identity(url, settings.store_key.as_ref(), &endpoint.portal(), config).await {
            Ok(()) => {}
            Err(SharedIdentityError::Usage(e)) => return usage(&e),
            Err(SharedIdentityError::Unreachable(e)) => {
                crate::log_lines::error(&e);
                return ExitCode::FAILURE;
            }
        }
    }
    // Replicas on one Redis pace their portal calls together and remember together which
    // methods the portal blocks: one connection serves both.
    // The readiness check pings the same connection.
    type Replicated = (
        Arc<dyn SharedBucket>,
        Arc<dyn SharedGate>,
        redis::aio::ConnectionManager,
    );
    let shared: Option<Replicated> = match settings.shared {
        Err(e) => return usage(&e),
        Ok(None) => None,
        Ok(Some(url)) => match crate::replicas::connection::connect(url.expose()).await {
            Ok((conn, store)) => Some((
                Arc::new(RedisBucket::on(conn.clone(), store.clone())),
                Arc::new(RedisGate::on(conn.clone(), store)),
                conn,
            )),
            Err(e) => {
                crate::log_lines::error(&format!(
                    "cannot reach the Redis store {}: {e}",
                    url.shown()
                ));
                return ExitCode::FAILURE;
            }
        },
    };
    let (shared_bucket, shared_gate, shared_conn) = match shared {
        Some((bucket, gate, conn)) => (Some(bucket), Some(gate), Some(conn)),
        None => (None, None, None),
    };
    let (client, caller) =
        match portal_client(endpoint, &portal, &pacing, shared_bucket, shared_gate) {
            Ok(pair) => pair,
            Err(e) => return usage(&e),
        };
    let audited = audit.map(|writer| {
        let configured = match &caller {
            Caller::Webhook(_) => "webhook",
            Caller::OAuth(_) => "oauth_token",
        };
        let trail = crate::audit::started(writer, Some(client.portal().host()));
        Arc::new(Audited::new(trail, configured))
    });
    if inventory.read_only() {
        tracing::info!("read-only mode: write tools are hidden and refused");
    }
    let sign_in = match (sign_in, public_url) {
        (Some(s), Some(public_url)) => {
            // The names a metadata document URL may not use: this server's own.
            let own = crate::sign_in::documents::OwnNames::new(
                &public_url,
                listener.as_ref().and_then(|l| l.local_addr().ok()),
                &http
                    .as_ref()
                    .map(|h| h.policy.rmcp_hosts())
                    .unwrap_or_default(),
            );
            match sign_in_service(s, public_url, sandbox_app, &client, own).await {
                Ok(service) => Some(service),
                Err(e) => {
                    crate::log_lines::error(&e);
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    // Under sign-in every request brings its person; there is no identity to fall back on.
    let mut server = if sign_in.is_some() {
        TaskResultsServer::signed_in_only(client, inventory)
    } else {
        TaskResultsServer::new(client, caller, inventory)
    };
    if let Some(audited) = audited {
        server = server.observed_by(audited);
    }

    let ct = CancellationToken::new();
    let draining = CancellationToken::new();
    // A drain makes sense only where a load balancer reads /readyz: over HTTP.
    let drain = http
        .as_ref()
        .map_or(std::time::Duration::ZERO, |h| h.drain_period);
    tokio::spawn(crate::shutdown::on_signal(
        ct.clone(),
        draining.clone(),
        drain,
    ));
    if let Some((listener, handle)) = metrics {
        server = server.observed_by(Arc::new(Metered));
        let probes = sign_in
            .as_ref()
            .map(|(_, store, _)| vec![people_probe(store.clone())])
            .unwrap_or_default();
        tokio::spawn(crate::metrics::listener::serve(
            listener,
            handle,
            probes,
            ct.clone(),
        ));
    }
    if let (Some(opts), Some(listener)) = (http, listener) {
        let mut readiness = transport::readiness::Readiness::new(draining);
        if let Some((_, store, on_redis)) = &sign_in {
            readiness = readiness.with_store(store.clone(), *on_redis);
        }
        if let Some(conn) = shared_conn {
            readiness = readiness.with_redis(conn);
        }
        let sign_in = sign_in.map(|(service, _, _)| service);
        // One server for every HTTP session: one portal client, one pacing, one pool.
        return match transport::http::serve(server, opts, listener, sign_in, readiness, ct).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{}", redact::redact(&format!("{e:#}")));
                ExitCode::FAILURE
            }
        };
    }
    if std::io::stdin().is_terminal() {
        eprintln!(
            "bitrix24-task-results-mcp speaks MCP (JSON-RPC) on stdin/stdout: start it from an MCP client, e.g.\n  \
             claude mcp add bitrix24 -e BITRIX24_WEBHOOK_URL=https://PORTAL/rest/USER_ID/SECRET/ -- {}\n\
             Waiting for a client on stdin; press Ctrl-C to quit.",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "bitrix24-task-results-mcp".into())
        );
    }
    match transport::stdio::serve(server, ct).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds `--metrics-listen` and installs the recorder: from here on the layers record.
async fn start_metrics(
    addr: std::net::SocketAddr,
) -> Result<(tokio::net::TcpListener, PrometheusHandle), String> {
    let listener = crate::metrics::listener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for metrics (--metrics-listen): {e}"))?;
    let handle = crate::metrics::install().map_err(|e| format!("cannot start the metrics: {e}"))?;
    Ok((listener, handle))
}

/// The people signed in, read from the store at scrape time.
fn people_probe(store: Arc<dyn Store>) -> Probe {
    Arc::new(move || {
        let store = store.clone();
        Box::pin(async move {
            if let Ok(people) = store.people().await {
                crate::metrics::people_signed_in(people.len());
            }
        })
    })
}

/// Why the identity cannot be shared: settings (exit 2) or Redis (exit 1).
pub enum SharedIdentityError {
    /// Exit code 2: the settings do not fit.
    Usage(String),
    /// Exit code 1: Redis is away.
    Unreachable(String),
}

impl SharedIdentityError {
    /// What to tell the user (no secret in it).
    pub fn message(&self) -> &str {
        match self {
            SharedIdentityError::Usage(m) | SharedIdentityError::Unreachable(m) => m,
        }
    }
}

/// Replicas with one configured OAuth identity share its pair through Redis, so that one
/// refreshes and the others adopt the new pair (a second refresh would be refused).
pub async fn shared_identity(
    url: &RedisUrl,
    store_key: Option<&SecretString>,
    origin: &str,
    config: &mut OAuthConfig,
) -> Result<(), SharedIdentityError> {
    let key = store_key.ok_or_else(|| {
        SharedIdentityError::Usage(
            "a Redis store with OAuth refresh (BITRIX24_CLIENT_ID, BITRIX24_CLIENT_SECRET) needs \
             --store-key (MCP_STORE_KEY, 64 hex characters, e.g. `openssl rand -hex 32`), the same \
             on every replica: the replicas share the identity's tokens, sealed with it"
                .into(),
        )
    })?;
    let key = StoreKey::from_hex(key.expose_secret())
        .map_err(|e| SharedIdentityError::Usage(format!("MCP_STORE_KEY: {e}")))?;
    let unreachable = |e: String| {
        SharedIdentityError::Unreachable(format!(
            "cannot reach the Redis store {}: {e}",
            url.shown()
        ))
    };
    let pair = RedisPair::connect(url, key, origin, &config.client_id)
        .await
        .map_err(unreachable)?;
    config.shared = Some(Shared::load(Arc::new(pair)).await.map_err(unreachable)?);
    tracing::info!(store = %url.shown(), "the OAuth identity's tokens are shared with the other replicas");
    Ok(())
}

/// Sign-in at `public_url`: the store, the application (the sandbox's own on the
/// sandbox), and the portal client's portal and pool. Also returns the store, and whether
/// it is on Redis, for the readiness check.
async fn sign_in_service(
    s: SignInSettings,
    public_url: reqwest::Url,
    sandbox_app: Option<(App, String)>,
    client: &Client,
    own: crate::sign_in::documents::OwnNames,
) -> Result<(SignIn, Arc<dyn Store>, bool), String> {
    // Without --public-url the address is the loopback one listened on (see `serve`).
    let follow_loopback_host = s.public_url.is_none();
    let store = open_store(&s.store, s.store_key.as_ref()).await?;
    let on_redis = matches!(s.store, StoreLocation::Redis(_));
    if sandbox_app.is_some() {
        end_sandbox_sign_ins(store.as_ref()).await?;
    }
    let consent_key = consent_key(&s)?;
    let (app, oauth_url) = match (sandbox_app, s.app) {
        (Some((app, base)), _) => (app, reqwest::Url::parse(&base).ok()),
        (None, Some(app)) => (app, s.oauth_url),
        (None, None) => {
            return Err("--oauth needs BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET".into());
        }
    };
    let service = SignIn::new(
        SignInOptions {
            public_url,
            app,
            oauth_url,
            token_lifetime: s.token_lifetime,
            refresh_grace: s.refresh_grace,
            consent_key,
            consent_max_age: s.consent_max_age,
            clients: crate::sign_in::clients::ClientOptions {
                documents: s.client_documents,
                own,
            },
            trusted_proxies: s.trusted_proxies,
            follow_loopback_host,
        },
        store.clone(),
        client.portal().clone(),
        client.pool().clone(),
    );
    Ok((service, store, on_redis))
}

/// The sandbox keeps its users' Bitrix24 tokens in memory only, so after a restart the
/// tokens a persistent store holds for them are dead: their sign-ins end here, at once and
/// with a reason in the log, rather than on each person's next call with a refusal that
/// names no cause. Their clients get `401` and sign in again.
async fn end_sandbox_sign_ins(store: &dyn Store) -> Result<(), String> {
    let people = store
        .people()
        .await
        .map_err(|e| format!("reading the sign-in store: {e}"))?;
    if people.is_empty() {
        return Ok(());
    }
    for person in &people {
        store
            .revoke_person(Some(&person.member_id), person.user_id)
            .await
            .map_err(|e| format!("ending the sandbox's old sign-ins: {e}"))?;
    }
    tracing::warn!(
        people = people.len(),
        "the sandbox portal restarted and forgot its sign-ins: the people signed in to it \
         before must sign in again (their clients are asked to)"
    );
    Ok(())
}

/// The consent cookies' signing key, derived from the store key (as `open_store` found
/// it, which has already created the SQLite key file when there was none), so replicas
/// sharing a store honour each other's remembered approvals.
fn consent_key(s: &SignInSettings) -> Result<ConsentKey, String> {
    let key = match (&s.store_key, &s.store) {
        (Some(hex), _) => StoreKey::from_hex(hex.expose_secret()),
        (None, StoreLocation::Sqlite(path)) => {
            StoreKey::load_or_create(&crate::store::default_key_path(path)).map(|(key, _)| key)
        }
        (None, StoreLocation::Redis(_)) => {
            return Err("a Redis store needs --store-key (MCP_STORE_KEY)".into());
        }
    };
    key.and_then(|k| ConsentKey::from_store_key(&k))
        .map_err(|e| e.to_string())
}
