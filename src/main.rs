//! Command line and start-up only; everything else lives in the library.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use bitrix24_task_results_mcp::bitrix::Endpoint;
use bitrix24_task_results_mcp::config::{
    Cli, Command, HttpArgs, PortalChoice, PrintConfigArgs, ToolArgs,
};
use bitrix24_task_results_mcp::panic_hook;
use bitrix24_task_results_mcp::redact::{self, RedactingStderr};
use bitrix24_task_results_mcp::sandbox::{Sandbox, SandboxOptions};
use bitrix24_task_results_mcp::server::TaskResultsServer;
use bitrix24_task_results_mcp::transport;
use bitrix24_task_results_mcp::{doctor, print_config};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    panic_hook::install();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli));
    // A stdin read parked on the blocking pool must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_millis(300));
    code
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command.clone().unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.portal, cli.tools, cli.http).await,
        Command::Doctor(args) => {
            let report = doctor::run(&cli.portal, &cli.tools.selection(), &args).await;
            print!("{}", report.text());
            if report.usable() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::PrintConfig(args) => {
            print_client_config(&cli.portal, &cli.tools, cli.http.transport, &args)
        }
    }
}

/// `print-config`: the snippet on stdout, where it goes on stderr.
fn print_client_config(
    portal: &bitrix24_task_results_mcp::config::PortalArgs,
    tools: &ToolArgs,
    transport: bitrix24_task_results_mcp::config::Transport,
    args: &PrintConfigArgs,
) -> ExitCode {
    if let Err(e) = tools.selection().resolve() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let exe = match std::env::current_exe().and_then(|p| p.canonicalize()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot find the path of this binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut server_args = Vec::new();
    let mut env = Vec::new();
    if portal.sandbox {
        server_args.push("--sandbox".to_string());
    } else if portal.portal_url.is_some() || portal.access_token.is_some() {
        env.extend(["BITRIX24_PORTAL_URL", "BITRIX24_ACCESS_TOKEN"]);
    } else {
        env.push("BITRIX24_WEBHOOK_URL");
    }
    server_args.extend(tools.as_args());
    let snippet = print_config::render(&print_config::Request {
        client: args.client,
        transport,
        name: &args.name,
        exe: &exe,
        args: server_args,
        env,
        url: &args.url,
    });
    eprintln!("{}", snippet.guide);
    print!("{}", snippet.config);
    ExitCode::SUCCESS
}

async fn serve(
    portal: bitrix24_task_results_mcp::config::PortalArgs,
    tools: ToolArgs,
    http: HttpArgs,
) -> ExitCode {
    let http = match http.resolve() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {}", redact::redact(&e));
            return ExitCode::from(2);
        }
    };
    let inventory = match tools.selection().resolve() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let choice = match portal.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", redact::redact(&e));
            return ExitCode::from(2);
        }
    };
    // Kept alive for the whole session: dropping it would not stop it, but holding it
    // makes the ownership plain.
    let (endpoint, _sandbox) = match choice {
        PortalChoice::Portal(endpoint) => {
            if !endpoint.is_https() && !endpoint.is_loopback() {
                tracing::warn!(portal = %endpoint.portal(), "the portal URL is plain http; Bitrix24 cloud portals require https");
            }
            (endpoint, None)
        }
        PortalChoice::Sandbox => match start_sandbox().await {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("error: cannot start the sandbox portal: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    tracing::info!(portal = %endpoint.describe(), version = env!("CARGO_PKG_VERSION"), "bitrix24-task-results-mcp starting");
    let (client, caller) = match portal.connect(endpoint) {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("error: {}", redact::redact(&e));
            return ExitCode::from(2);
        }
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

async fn start_sandbox() -> std::io::Result<(Endpoint, Option<Sandbox>)> {
    let sandbox = Sandbox::start(SandboxOptions::default()).await?;
    tracing::warn!(
        address = %sandbox.base_url(),
        "SANDBOX MODE: calls go to the built-in emulator of a Bitrix24 portal, not to a real portal; nothing leaves this machine"
    );
    let endpoint =
        Endpoint::webhook(&sandbox.webhook_url()).map_err(|e| std::io::Error::other(e.0))?;
    Ok((endpoint, Some(sandbox)))
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

fn init_logging(filter: &str) {
    // At the default level rmcp's per-message info lines are noise; an explicit filter keeps them.
    let filter = if filter == "info" {
        "info,rmcp=warn"
    } else {
        filter
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr)
        .with_ansi(false)
        .with_target(false)
        .init();
}
