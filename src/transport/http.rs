//! MCP over HTTP: rmcp's streamable HTTP service at `/mcp`, the legacy SSE shim at
//! `/sse` + `/message`, `/healthz` and `/readyz` ([`readiness`]), and a graceful shutdown
//! (after the SIGTERM drain, which only turns `/readyz` to 503: see `crate::shutdown`).
//!
//! Every session shares the one [`TaskResultsServer`] handed in (cloned per session), so
//! the portal client's pacing and connection pool are per process. Host and Origin are
//! judged by rmcp's own check on every MCP route (inside its service on `/mcp`, through
//! [`host_origin::enforce`] first on the legacy routes), the caller (bearer token or
//! signed-in person) by ours; every route has a body size limit. Under sign-in a session
//! belongs to the person who opened it ([`sessions::bind_to_person`]); browsers get CORS
//! answers from the same allow-list ([`cors`]); connections are served by [`conn`], with
//! a header-read timeout and a bound on how many are open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;

use super::bearer::{self, BearerAuth};
use super::conn::{self, ConnLimits};
use super::cors;
use super::health;
use super::host_origin::{self, HostOriginPolicy, RmcpCheck};
use super::http_jsonrpc;
use super::inflight::{self, InFlight};
use super::legacy_sse;
use super::readiness::{self, Readiness};
use super::sessions::{self, BoundedSessions, SessionLimits, SessionSlots};
use crate::server::TaskResultsServer;
use crate::sign_in::SignIn;

/// Path of the streamable HTTP endpoint.
pub const MCP_PATH: &str = "/mcp";
/// Largest request body accepted on any route. A valid tool call is far smaller (text
/// is capped at 30,000 characters, at most 6 bytes each once JSON-escaped).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a shutdown waits for calls in flight before closing their sessions.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connections get to close once sessions are gone.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything the HTTP transport needs, validated by `config`.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Address to bind; port 0 picks a free one (the bound address is logged).
    pub listen: SocketAddr,
    /// Plain JSON replies without `Mcp-Session-Id` sessions.
    pub stateless: bool,
    /// Bearer token every MCP route requires; `None` only on loopback addresses.
    pub auth_token: Option<SecretString>,
    /// Host and Origin allow-lists.
    pub policy: HostOriginPolicy,
    /// Request body limit for every route.
    pub max_body_bytes: usize,
    /// Bound on waiting for calls in flight at shutdown.
    pub drain_timeout: Duration,
    /// `--drain-seconds`: after SIGTERM, how long the server goes on serving (new calls
    /// too) with `/readyz` at 503 before it stops; zero stops at once.
    pub drain_period: Duration,
    /// How many sessions may be open and for how long idle.
    pub sessions: SessionLimits,
    /// Timeouts and the bound on client connections.
    pub connections: ConnLimits,
}

/// The whole application. `sessions` ends every MCP session and event stream when
/// cancelled; `inflight` counts the calls a shutdown waits for; `readiness` answers
/// `/readyz`.
pub fn router(
    server: TaskResultsServer,
    opts: &HttpOptions,
    sign_in: Option<&SignIn>,
    sessions: CancellationToken,
    inflight: InFlight,
    readiness: Readiness,
) -> Router {
    // rmcp's Host/Origin check runs inside its service, so on /mcp it comes after the
    // caller check: a foreign Host without a token is told 401 rather than 403.
    let config = opts
        .policy
        .configure(StreamableHttpServerConfig::default())
        .with_legacy_session_mode(!opts.stateless)
        .with_json_response(opts.stateless)
        .with_max_request_body_bytes(opts.max_body_bytes)
        .with_cancellation_token(sessions.child_token());
    // One pool for both transports: a session costs the same whichever way it came.
    let slots = SessionSlots::new(opts.sessions.max_sessions);
    let factory_server = server.clone();
    let bounded = Arc::new(BoundedSessions::new(
        slots.clone(),
        opts.sessions.idle_timeout,
    ));
    let mcp =
        StreamableHttpService::new(move || Ok(factory_server.clone()), bounded.clone(), config);

    // Who is calling: a signed-in person's token, or the one static token.
    let who = |routes: Router| match sign_in {
        Some(s) => routes.route_layer(from_fn_with_state(
            s.clone(),
            crate::sign_in::resource::require,
        )),
        None => routes.route_layer(from_fn_with_state(
            BearerAuth::new(opts.auth_token.as_ref()),
            bearer::require_bearer,
        )),
    };

    let mut streamable = Router::new().route_service(MCP_PATH, mcp);
    if !opts.stateless {
        // Inside the body check, which marks an `initialize`.
        streamable = streamable
            .route_layer(from_fn_with_state(
                slots.clone(),
                sessions::refuse_when_full,
            ))
            .route_layer(axum::middleware::from_fn(sessions::delete_status));
    }
    streamable = streamable
        // Bodies are judged only once the caller passed every check.
        .route_layer(axum::middleware::from_fn(http_jsonrpc::check))
        .route_layer(from_fn_with_state(inflight.clone(), inflight::track_posts));
    if sign_in.is_some() && !opts.stateless {
        // Right inside the caller check, which names the person.
        streamable = streamable.route_layer(from_fn_with_state(bounded, sessions::bind_to_person));
    }
    let streamable = who(streamable);
    let legacy = who(legacy_sse::router(
        server,
        inflight,
        sessions,
        legacy_sse::Bounds {
            slots,
            idle_timeout: opts.sessions.idle_timeout,
        },
    ))
    // Outermost: a foreign Host or Origin is refused before anything else is looked at.
    .route_layer(from_fn_with_state(
        RmcpCheck::new(&opts.policy),
        host_origin::enforce,
    ));
    let check = RmcpCheck::new(&opts.policy);
    // Outside the caller check: browsers send preflights without a token.
    let protected = streamable
        .merge(legacy)
        .route_layer(cors::layer(check.clone()))
        .route_layer(from_fn_with_state(check, cors::refuse_foreign_preflight));

    let app = Router::new()
        .merge(protected)
        .merge(sign_in.map(SignIn::routes).unwrap_or_default())
        .route("/healthz", get(health::healthz))
        .route(
            "/readyz",
            get(readiness::readyz).with_state(readiness.clone()),
        )
        // Content-Length over the limit is refused at once; longer chunked bodies fail
        // while being read. axum's own default (2 MB) would otherwise apply to extractors.
        .layer(RequestBodyLimitLayer::new(opts.max_body_bytes))
        .layer(DefaultBodyLimit::disable())
        .layer(from_fn_with_state(
            readiness,
            readiness::close_when_draining,
        ))
        .layer(axum::middleware::from_fn(super::metered::count_requests));
    match sign_in {
        // The loopback name a request used picks the issuer of its answers.
        Some(s) => app.layer(from_fn_with_state(s.clone(), crate::sign_in::host::follow)),
        None => app,
    }
}

/// Binds the listening socket (before anything else starts, so that the address clients
/// reach is known to whatever needs it, e.g. the sign-in callback).
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
}

/// Serves on `listener` until `shutdown` is cancelled, then: stops accepting, waits up to
/// `drain_timeout` for calls in flight, closes sessions and event streams, returns.
pub async fn serve(
    server: TaskResultsServer,
    opts: HttpOptions,
    listener: TcpListener,
    sign_in: Option<SignIn>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("reading the bound address")?;
    let sessions = CancellationToken::new();
    let inflight = InFlight::default();
    if let Some(s) = &sign_in {
        tracing::info!(
            resource = %s.resource(),
            "sign-in on: people sign in with their Bitrix24 accounts; register {} as the redirect \
             address of the Bitrix24 application",
            s.callback_url()
        );
    }
    let app = router(
        server,
        &opts,
        sign_in.as_ref(),
        sessions.clone(),
        inflight.clone(),
        readiness,
    );

    tracing::info!(
        stateless = opts.stateless,
        auth = if sign_in.is_some() {
            "sign-in (MCP authorization)"
        } else if opts.auth_token.is_some() {
            "bearer token"
        } else {
            "none (loopback only)"
        },
        "listening on http://{addr}{MCP_PATH} (legacy SSE clients: http://{addr}{})",
        legacy_sse::SSE_PATH
    );
    if !addr.ip().is_loopback() && opts.policy.only_loopback_hosts() {
        tracing::warn!(
            "listening on a non-loopback address but only loopback Host names are allowed: \
             add the name clients use with --allowed-host (MCP_ALLOWED_HOSTS), or they get 403"
        );
    }

    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    let stop_accepting = shutdown.clone();
    let mut serving = tokio::spawn(conn::serve(
        listener,
        app,
        opts.connections,
        stop_accepting,
        move || {
            let _ = closed_tx.send(());
        },
    ));
    tokio::select! {
        _ = shutdown.cancelled() => {}
        finished = &mut serving => {
            // The accept loop ends only on the signal; a panic is the one other way out.
            return match finished {
                Ok(()) => Ok(()),
                Err(e) => Err(anyhow::anyhow!("the HTTP server task failed: {e}")),
            };
        }
    }

    // The accept loop drops the listener once it has seen the signal; from then on
    // connects fail.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closed_rx).await;
    let busy = inflight.count();
    tracing::info!(
        in_flight = busy,
        "stopped accepting connections; letting calls in flight finish"
    );
    if !inflight.drain(opts.drain_timeout).await {
        tracing::warn!(
            in_flight = inflight.count(),
            "calls still running after {:?}; closing their sessions anyway",
            opts.drain_timeout
        );
    }
    sessions.cancel();
    match tokio::time::timeout(CLOSE_TIMEOUT, &mut serving).await {
        Ok(Ok(())) => tracing::info!("HTTP server stopped"),
        Ok(Err(e)) => tracing::warn!("HTTP server task failed: {e}"),
        Err(_) => {
            serving.abort();
            tracing::warn!("connections still open after {CLOSE_TIMEOUT:?}; closing them");
        }
    }
    Ok(())
}
