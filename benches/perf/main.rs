//! Performance benchmarks: `cargo bench --bench perf` (options after `--`, see `--help`).
//!
//! Builds the release server and the bare rmcp floor (`examples/bare_server.rs`), starts
//! a sandbox portal in this process, and measures side by side, in one run:
//! cold start and peak memory, per-call overhead over a direct REST POST, HTTP
//! throughput, a paced burst against the portal's leaky bucket, and the cost of metrics.
//! Nothing here runs under `cargo test`: timings are reported, never asserted.

mod burst;
mod cold;
mod direct;
mod http;
mod lookup;
mod metrics;
mod overhead;
mod peer;
mod shared_bucket;
mod sign_in;
mod stats;

use std::path::PathBuf;
use std::process::Command;

use bitrix24_task_results_mcp::sandbox::{Sandbox, SandboxOptions};

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Cold starts per binary.
    pub runs: usize,
    /// Timed tool calls per side in the overhead benchmark.
    pub calls: usize,
    /// Concurrent HTTP sessions.
    pub sessions: usize,
    /// Seconds of the HTTP throughput measurement.
    pub seconds: f64,
    /// Only these sections (cold, call, lookup, http, burst, signin, bucket, metrics); empty = all.
    pub only: Vec<String>,
    /// A previous build of the server (and of the floor) to start side by side with this
    /// one in the cold section, for before/after figures from one run.
    pub before: Option<PathBuf>,
    /// The floor built the previous way.
    pub before_floor: Option<PathBuf>,
}

impl Opts {
    fn parse() -> Opts {
        let mut o = Opts {
            runs: 30,
            calls: 2000,
            sessions: 8,
            seconds: 5.0,
            only: Vec::new(),
            before: None,
            before_floor: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut num = |name: &str| -> f64 {
                args.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{name} takes a number"))
            };
            match a.as_str() {
                "--runs" => o.runs = num("--runs") as usize,
                "--calls" => o.calls = num("--calls") as usize,
                "--sessions" => o.sessions = num("--sessions") as usize,
                "--seconds" => o.seconds = num("--seconds"),
                "--only" => o.only.extend(
                    args.next()
                        .expect("--only takes cold,call,lookup,http,burst,signin,bucket,metrics")
                        .split(',')
                        .map(String::from),
                ),
                "--before" => o.before = args.next().map(PathBuf::from),
                "--before-floor" => o.before_floor = args.next().map(PathBuf::from),
                // cargo bench passes --bench to harness-less benches.
                "--bench" => {}
                "--help" | "-h" => {
                    println!(
                        "cargo bench --bench perf [-- --runs N] [--calls N] [--sessions N] [--seconds S] [--only cold,call,lookup,http,burst,signin,bucket,metrics] [--before OLD_SERVER [--before-floor OLD_FLOOR]]"
                    );
                    std::process::exit(0);
                }
                other => eprintln!("perf: ignoring unknown argument {other}"),
            }
        }
        o
    }

    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

/// The two binaries under test.
pub struct Bins {
    pub server: PathBuf,
    pub bare: PathBuf,
}

/// Builds the floor next to the server (a no-op when it is up to date). The `bench`
/// profile is the one `cargo bench` just built the server with; it inherits every setting
/// of `[profile.release]`, so both binaries are what `cargo build --release` ships, and
/// the server is not linked a second time.
fn build() -> Bins {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // The variables cargo sets for this bench process (CARGO_PKG_*, CARGO_MANIFEST_*,
    // OUT_DIR, ...) would reach the inner build's build scripts; ring's and others'
    // rerun-if-env-changed then see a change and rebuild the TLS stack, and the next
    // `cargo bench` rebuilds it back. Only the user's own cargo settings pass through.
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str()
            && cargo_set(k)
        {
            cmd.env_remove(k);
        }
    }
    let status = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--profile",
            "bench",
            "--quiet",
            "--bin",
            "bitrix24-task-results-mcp",
            "--example",
            "bare_server",
        ])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --profile bench failed");
    let server = PathBuf::from(env!("CARGO_BIN_EXE_bitrix24-task-results-mcp"));
    let bare = server
        .parent()
        .expect("target dir")
        .join("examples")
        .join("bare_server");
    assert!(bare.exists(), "{} was not built", bare.display());
    Bins { server, bare }
}

/// Whether cargo set `k` for the process it runs (as opposed to a setting of the user's,
/// such as CARGO_TARGET_DIR, CARGO_HOME or CARGO_BUILD_JOBS, which the inner build keeps).
fn cargo_set(k: &str) -> bool {
    const PREFIXES: [&str; 5] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_BIN_",
        "CARGO_CRATE_",
        "CARGO_PRIMARY_",
    ];
    PREFIXES.iter().any(|p| k.starts_with(p))
        || matches!(
            k,
            "OUT_DIR" | "CARGO_TARGET_TMPDIR" | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// A command for the server with a clean portal environment.
pub fn server_command(bins: &Bins, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(&bins.server);
    for (k, _) in std::env::vars() {
        if k.starts_with("BITRIX24_") || k.starts_with("MCP_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// One line of the summary table.
pub struct Row {
    pub measure: String,
    pub ours: String,
    pub reference: String,
    pub result: String,
    pub target: String,
    pub met: Option<bool>,
}

fn main() {
    let opts = Opts::parse();
    let bins = build();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sandbox: Sandbox = runtime
        .block_on(Sandbox::start(SandboxOptions::default()))
        .expect("start the sandbox");
    let machine = machine();
    println!("perf: {machine}");
    println!("perf: server {}", bins.server.display());
    println!("perf: floor  {}", bins.bare.display());
    println!("perf: {opts:?}");

    let mut rows = Vec::new();
    if opts.wants("cold") {
        rows.extend(cold::run(&bins, &sandbox, &opts));
    }
    if opts.wants("call") {
        rows.extend(overhead::run(&bins, &sandbox, &runtime, &opts));
    }
    if opts.wants("lookup") {
        rows.extend(lookup::run(&bins, &sandbox, &opts));
    }
    if opts.wants("http") {
        rows.extend(http::run(&bins, &runtime, &opts));
    }
    if opts.wants("burst") {
        rows.extend(burst::run(&bins, &runtime, &opts));
    }
    if opts.wants("signin") {
        rows.extend(sign_in::run(&bins, &runtime, &opts));
    }
    if opts.wants("bucket") {
        rows.extend(shared_bucket::run(&runtime, &opts));
    }
    if opts.wants("metrics") {
        rows.extend(metrics::run(&bins, &sandbox, &opts));
    }

    println!();
    println!("## Summary ({machine})");
    println!();
    println!("| measure | ours | reference | result | target | met |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "pending",
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.measure, r.ours, r.reference, r.result, r.target, met
        );
    }
    sandbox.shutdown();
}

/// Cores, CPU model and kernel, for the record.
fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cores} cores, {cpu}, Linux {kernel}")
}
