//! Wiring: settings into a portal client, a server and a transport. `serve` runs here;
//! `doctor` borrows the portal part ([`start_sandbox`], [`portal_client`]).

use std::io::IsTerminal;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::bitrix::{Caller, Client, Endpoint, Refresher};
use crate::redact;
use crate::sandbox::{Sandbox, SandboxOptions};
use crate::server::TaskResultsServer;
use crate::settings::{Pacing, Portal, PortalChoice, Settings};
use crate::transport;

/// Starts the built-in sandbox portal and the webhook endpoint that reaches it.
pub async fn start_sandbox() -> std::io::Result<(Endpoint, Sandbox)> {
    let sandbox = Sandbox::start(SandboxOptions::default()).await?;
    let endpoint =
        Endpoint::webhook(&sandbox.webhook_url()).map_err(|e| std::io::Error::other(e.0))?;
    Ok((endpoint, sandbox))
}

/// The one place settings become a portal client: the endpoint (portal and its
/// credentials), pacing and budget, and with OAuth refresh the refresher that keeps the
/// token fresh. Reads the token file.
pub fn portal_client(
    mut endpoint: Endpoint,
    portal: &Portal,
    pacing: &Pacing,
) -> Result<(Client, Caller), String> {
    let options = pacing.client_options(portal);
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
    eprintln!("error: {}", redact::redact(e));
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
    let (portal, pacing) = match (settings.portal, settings.pacing) {
        (Err(e), _) | (_, Err(e)) => return usage(&e),
        (Ok(portal), Ok(pacing)) => (portal, pacing),
    };
    // Kept alive for the whole session: dropping it would not stop it, but holding it
    // makes the ownership plain.
    let (endpoint, _sandbox) = match &portal.choice {
        PortalChoice::Portal(endpoint) => {
            if !endpoint.is_https() && !endpoint.is_loopback() {
                tracing::warn!(portal = %endpoint.portal(), "the portal URL is plain http; Bitrix24 cloud portals require https");
            }
            (endpoint.clone(), None)
        }
        PortalChoice::Sandbox => match start_sandbox().await {
            Ok((endpoint, sandbox)) => {
                tracing::warn!(
                    address = %sandbox.base_url(),
                    "SANDBOX MODE: calls go to the built-in emulator of a Bitrix24 portal, not to a real portal; nothing leaves this machine"
                );
                (endpoint, Some(sandbox))
            }
            Err(e) => {
                eprintln!("error: cannot start the sandbox portal: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    tracing::info!(portal = %endpoint.describe(), version = env!("CARGO_PKG_VERSION"), "bitrix24-task-results-mcp starting");
    let (client, caller) = match portal_client(endpoint, &portal, &pacing) {
        Ok(pair) => pair,
        Err(e) => return usage(&e),
    };
    if inventory.read_only() {
        tracing::info!("read-only mode: write tools are hidden and refused");
    }
    let server = TaskResultsServer::new(client, caller, inventory);

    let ct = CancellationToken::new();
    tokio::spawn(cancel_on_signal(ct.clone()));
    if let Some(opts) = http {
        // One server for every HTTP session: one portal client, one pacing, one pool.
        return match transport::http::serve(server, opts, ct).await {
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

async fn cancel_on_signal(ct: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("signal received, shutting down");
    ct.cancel();
}
