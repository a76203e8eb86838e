//! Sign-in for the HTTP transport (`--oauth`): each person signs in with their own
//! Bitrix24 account, by the MCP authorization spec (2025-11-25, 2026-07-28).
//!
//! This process is the OAuth 2.1 resource server (`resource.rs`: every MCP request
//! carries one of our bearer tokens) and the authorization server its clients talk to
//! (metadata, registration, authorize, callback, token, revoke), because Bitrix24's own
//! OAuth server offers no PKCE, registration or metadata. Behind it, Bitrix24's
//! authorization-code flow signs the person in; their Bitrix24 tokens stay here
//! (encrypted in the store) and are never handed to the client, and our tokens are never
//! passed on to Bitrix24.

mod approval;
mod audited;
mod authorize;
mod browser;
pub mod client_rules;
pub mod clients;
mod consent;
pub mod documents;
mod fence;
pub mod host;
pub mod limits;
mod metadata;
mod page;
pub mod person;
mod register;
pub mod resource;
pub mod secret;
mod token;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use reqwest::Url;
use tower_http::cors::CorsLayer;

use crate::bitrix::Portal;
use crate::bitrix::grant::App;
use crate::store::Store;

pub use approval::ConsentKey;
pub use person::People;

/// The one scope this server issues: the task-result tools.
pub const SCOPE: &str = "task_results";
/// Path of the portal's redirect back to this server (register it in the Bitrix24 app).
pub const CALLBACK_PATH: &str = "/oauth/callback";
/// How long a pending sign-in (between /authorize and the callback) stays open.
const PENDING_TTL: i64 = 600;
/// How long this server's authorization code lives (the spec allows at most 60 s).
const CODE_TTL: i64 = 60;
/// How long a refresh token lives; each use rotates it.
const REFRESH_TTL: i64 = 30 * 24 * 3600;
/// How often expired records leave the store.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// How sign-in is configured.
#[derive(Debug, Clone)]
pub struct SignInOptions {
    /// The base address clients reach, e.g. `https://mcp.example.com`.
    pub public_url: Url,
    /// The Bitrix24 application people sign in through.
    pub app: App,
    /// The OAuth server override (`--oauth-url`); default `https://oauth.bitrix.info`.
    pub oauth_url: Option<Url>,
    /// Life of the access tokens this server issues.
    pub token_lifetime: Duration,
    /// How long a repeat of a refresh gets the pair its first use issued
    /// ([`DEFAULT_REFRESH_GRACE`]); zero: every repeat counts as a reuse.
    pub refresh_grace: Duration,
    /// Signs the consent page's remembered approvals (derived from the store key).
    pub consent_key: ConsentKey,
    /// How long a browser's approval of a client is remembered; zero: always ask.
    pub consent_max_age: Duration,
    /// How clients may identify themselves (metadata documents on or off, own names).
    pub clients: clients::ClientOptions,
    /// Proxies whose forwarded client address the per-source limits believe.
    pub trusted_proxies: limits::TrustedProxies,
    /// On a loopback address without `--public-url`: answer with the loopback name each
    /// request used (`localhost`, `127.0.0.1`, `[::1]`), see [`host`].
    pub follow_loopback_host: bool,
}

/// How long after a refresh token's first use a repeat of it gets the same new pair back
/// instead of revoking the sign-in: long enough for a client to retry a refresh whose
/// answer was lost (a dropped connection, a proxy timeout, a retry with backoff) and for
/// two processes sharing one stored token to race; short enough that a stolen token
/// replayed later still trips reuse detection. 30 s is also Okta's default grace period
/// for refresh token rotation.
pub const DEFAULT_REFRESH_GRACE: u64 = 30;

/// Sign-in, ready to serve: options, the store, and the people signed in.
#[derive(Clone)]
pub struct SignIn {
    inner: Arc<Inner>,
}

struct Inner {
    /// The configured issuer first, then its other loopback names (see [`host`]).
    issuers: Vec<String>,
    /// Sign-ins begun on another loopback name, for their callback's `iss`.
    begun: host::Begun,
    /// The portal's redirect address: the configured one, registered in the application.
    callback: String,
    app: App,
    oauth_url: Option<Url>,
    token_lifetime: i64,
    refresh_grace: i64,
    store: Arc<dyn Store>,
    clients: clients::Clients,
    limits: limits::Limits,
    portal: Portal,
    pool: reqwest::Client,
    people: People,
    consent_key: ConsentKey,
    consent_max_age: i64,
    /// Client names for the audit trail.
    client_names: audited::ClientNames,
}

impl SignIn {
    /// Sign-in for `portal`, whose connection pool also takes the OAuth exchanges.
    pub fn new(
        options: SignInOptions,
        store: Arc<dyn Store>,
        portal: Portal,
        pool: reqwest::Client,
    ) -> SignIn {
        let public = options.public_url.clone();
        let issuer = public.as_str().trim_end_matches('/').to_string();
        let callback = callback_url(&public);
        let issuers = host::issuers(
            &issuer,
            options.follow_loopback_host && is_loopback(&public),
        );
        let loopback = is_loopback(&public);
        let people = People::new(
            store.clone(),
            options.app.clone(),
            options.oauth_url.clone(),
        );
        let sign_in = SignIn {
            inner: Arc::new(Inner {
                issuers,
                begun: host::Begun::default(),
                callback,
                token_lifetime: i64::try_from(options.token_lifetime.as_secs()).unwrap_or(3600),
                refresh_grace: i64::try_from(options.refresh_grace.as_secs()).unwrap_or(0),
                consent_key: options.consent_key,
                consent_max_age: i64::try_from(options.consent_max_age.as_secs())
                    .unwrap_or(i64::MAX),
                app: options.app,
                oauth_url: options.oauth_url,
                clients: clients::Clients::new(store.clone(), loopback, options.clients),
                limits: limits::Limits::new(options.trusted_proxies),
                store,
                portal,
                pool,
                people,
                client_names: audited::ClientNames::default(),
            }),
        };
        sign_in.spawn_purge();
        sign_in
    }

    /// Removes expired codes, tokens and abandoned registrations every few minutes, for
    /// as long as this sign-in is in use.
    fn spawn_purge(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(PURGE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = inner.upgrade() else { return };
                if let Err(e) = inner.store.purge_expired(crate::clock::now_s()).await {
                    tracing::warn!("purging expired sign-in records failed: {e}");
                }
            }
        });
    }

    /// The authorization server's issuer: the public base address (on loopback without
    /// `--public-url`, under the loopback name the request used: see [`host`]).
    pub fn issuer(&self) -> &str {
        let issuers = &self.inner.issuers;
        issuers.get(host::current()).unwrap_or(&issuers[0])
    }

    /// The protected resource (RFC 8707 audience): `<issuer>/mcp`.
    pub fn resource(&self) -> String {
        format!("{}/mcp", self.issuer())
    }

    /// Where Bitrix24 sends people back: `<public-url>/oauth/callback`, whatever name
    /// the request used (the portal accepts only the address registered with it).
    pub fn callback_url(&self) -> String {
        self.inner.callback.clone()
    }

    /// The protected resource metadata address named in every 401.
    pub fn resource_metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/mcp", self.issuer())
    }

    /// The discovery, registration and token routes (no bearer needed). Browser-based
    /// clients read metadata and call /token and /register from another origin, so
    /// those answer CORS requests; /authorize and the callback are page navigations.
    pub fn routes(&self) -> Router {
        let cors = CorsLayer::new()
            .allow_origin(tower_http::cors::Any)
            .allow_methods([http::Method::GET, http::Method::POST])
            .allow_headers(tower_http::cors::Any);
        let api = Router::new()
            .route(
                "/.well-known/oauth-protected-resource",
                get(metadata::protected_resource),
            )
            .route(
                "/.well-known/oauth-protected-resource/mcp",
                get(metadata::protected_resource),
            )
            .route(
                "/.well-known/oauth-authorization-server",
                get(metadata::authorization_server),
            )
            .route(
                "/.well-known/openid-configuration",
                get(metadata::authorization_server),
            )
            .route(
                "/register",
                post(register::register).route_layer(axum::middleware::from_fn_with_state(
                    self.clone(),
                    limits::register_gate,
                )),
            )
            .route("/token", post(token::token))
            .route("/revoke", post(token::revoke))
            .layer(cors);
        Router::new()
            .merge(api)
            .route(
                "/authorize",
                get(authorize::authorize).route_layer(axum::middleware::from_fn_with_state(
                    self.clone(),
                    limits::authorize_gate,
                )),
            )
            .route(consent::CONSENT_PATH, post(consent::decide))
            .route(CALLBACK_PATH, get(authorize::callback))
            .with_state(self.clone())
    }

    fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }
}

/// The redirect address to register in the Bitrix24 application for `public_url`.
pub fn callback_url(public_url: &Url) -> String {
    format!(
        "{}{CALLBACK_PATH}",
        public_url.as_str().trim_end_matches('/')
    )
}

/// Whether `url` names this machine: a loopback address or `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}
