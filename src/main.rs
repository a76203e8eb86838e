//! Command line and start-up only: parse, log to stderr, dispatch. Everything else lives
//! in the library (`app` wires the server).

use std::process::ExitCode;
use std::time::Duration;

use bitrix24_task_results_mcp::cli::{Cli, Command, Given, LogFormat, Transport};
use bitrix24_task_results_mcp::panic_hook;
use bitrix24_task_results_mcp::redact::RedactingStderr;
use bitrix24_task_results_mcp::settings::Settings;
use bitrix24_task_results_mcp::{app, doctor, print_config, users};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> ExitCode {
    let (cli, given) = Cli::parse_given();
    init_logging(&cli.log_level, cli.log_format);
    panic_hook::install();
    let runtime = match runtime_builder(&cli).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli, given));
    // A stdin read parked on the blocking pool must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_millis(300));
    code
}

/// The stdio server serves one client and waits on the portal, so one thread does; a
/// worker per core would only add threads and memory to the start of every client window
/// that spawns it. HTTP (many sessions) and the other commands keep a worker per core.
fn runtime_builder(cli: &Cli) -> tokio::runtime::Builder {
    let serving = matches!(cli.command, None | Some(Command::Serve));
    if serving && cli.http.transport == Transport::Stdio {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
}

async fn run(cli: Cli, given: Given) -> ExitCode {
    let settings = Settings::from_cli(&cli);
    match cli.command.clone().unwrap_or(Command::Serve) {
        Command::Serve => app::serve(settings).await,
        Command::Doctor(args) => {
            let report = doctor::run(&settings, &args).await;
            print!("{}", report.text());
            if report.usable() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::PrintConfig(args) => print_config::print(&cli, &given, &settings, &args),
        Command::Users(args) => users::run(&cli, &args).await,
    }
}

fn init_logging(filter: &str, format: LogFormat) {
    // At the default level rmcp's per-message info lines are noise; an explicit filter keeps them.
    let filter = if filter == "info" {
        "info,rmcp=warn"
    } else {
        filter
    };
    // Targets (`target=level` directives), not EnvFilter: the flag only ever takes levels
    // per target, and EnvFilter's span and field matching brings a regex engine into the
    // binary, its build and the code every start touches.
    let filter: Targets = filter
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(Level::INFO));
    // Both formats write each event in one call through the redacting writer.
    // The builder's own filter (INFO by default) lets everything through: Targets decides.
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::level_filters::LevelFilter::TRACE)
        .with_writer(RedactingStderr)
        .with_ansi(false)
        .with_target(false);
    bitrix24_task_results_mcp::log_lines::use_json(format == LogFormat::Json);
    match format {
        LogFormat::Text => builder.finish().with(filter).init(),
        // Flattened: the message and the event's fields at the top level, as the text
        // format shows them on one line.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(filter)
            .init(),
    }
}
