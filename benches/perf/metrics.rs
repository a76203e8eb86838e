//! Metrics and the audit trail (issue 22): the per-call cost of `--metrics-listen` and
//! `--audit-log` on `task_result_add`: one server with both off, one with metrics on
//! (scraped every second, as Prometheus would) and one with metrics and the audit trail
//! on (a file), interleaved call by call in one run; and the peak memory of each.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bitrix24_task_results_mcp::sandbox::Sandbox;

use crate::http::NO_PACING;
use crate::peer::Peer;
use crate::stats::Samples;
use crate::{Bins, Opts, Row, server_command};

const TOOL: &str = "task_result_add";
const ARGS: &str = "{\"taskId\":51,\"text\":\"perf: a result of the metrics benchmark\"}";
/// The most metrics may add to a call (issue 22).
const TARGET_MS: f64 = 0.05;

fn timed_call(peer: &mut Peer) -> f64 {
    let (id, line) = peer.call_line(TOOL, ARGS);
    let started = Instant::now();
    peer.send(&line);
    let at = peer.wait_for_fast(id);
    at.duration_since(started).as_secs_f64() * 1e6
}

/// `GET /metrics` over a plain socket: the body.
fn scrape(addr: &str) -> String {
    let mut conn = TcpStream::connect(addr).expect("connect to /metrics");
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the scrape");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("read the scrape");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").to_string()
}

pub fn run(bins: &Bins, sandbox: &Sandbox, opts: &Opts) -> Vec<Row> {
    println!();
    println!(
        "## Metrics: tools/call {TOOL} with metrics off vs on (--metrics-listen, scraped every 1 s)"
    );
    let url = sandbox.webhook_url();
    let env = [("BITRIX24_WEBHOOK_URL", url.as_str())];
    let mut off = Peer::spawn(&mut server_command(bins, &NO_PACING, &env));
    off.initialize();
    let addr = free_addr();
    let mut args: Vec<&str> = NO_PACING.to_vec();
    args.extend(["--metrics-listen", addr.as_str()]);
    let mut on = Peer::spawn(&mut server_command(bins, &args, &env));
    on.initialize();
    let audit_dir = std::env::temp_dir().join(format!("perf-audit-{}", std::process::id()));
    std::fs::create_dir_all(&audit_dir).expect("a temporary directory");
    let audit_file = audit_dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&audit_file);
    let addr_both = free_addr();
    let audit_path = audit_file.display().to_string();
    let mut args_both: Vec<&str> = NO_PACING.to_vec();
    args_both.extend([
        "--metrics-listen",
        addr_both.as_str(),
        "--audit-log",
        audit_path.as_str(),
    ]);
    let mut both = Peer::spawn(&mut server_command(bins, &args_both, &env));
    both.initialize();

    // Prometheus's part: a scrape every second while the calls run.
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let (stop, addr) = (stop.clone(), addr.clone());
        std::thread::spawn(move || {
            let mut scrapes = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if !scrape(&addr).is_empty() {
                    scrapes += 1;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            scrapes
        })
    };

    let warmup = (opts.calls / 10).max(50);
    let (mut t_off, mut t_on, mut t_both) = (vec![], vec![], vec![]);
    for i in 0..warmup + opts.calls {
        // Rotate the order so that no side always follows another.
        let mut took = [0.0; 3];
        for k in 0..3 {
            let side = (i + k) % 3;
            let peer = match side {
                0 => &mut off,
                1 => &mut on,
                _ => &mut both,
            };
            took[side] = timed_call(peer);
        }
        if i >= warmup {
            t_off.push(took[0]);
            t_on.push(took[1]);
            t_both.push(took[2]);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let scrapes = scraper.join().unwrap_or(0);
    // The "on" side really counted: every call of it is in the exposition.
    let exposition = scrape(&addr);
    let counted = exposition
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "bitrix24_mcp_tool_calls_total{tool=\"task_result_add\",outcome=\"ok\"} ",
            )
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as usize;
    assert_eq!(
        counted,
        warmup + opts.calls,
        "calls counted with metrics on"
    );
    let (hwm_off, hwm_on) = (off.vm_hwm_kib(), on.vm_hwm_kib());
    let hwm_both = both.vm_hwm_kib();
    off.close();
    on.close();
    both.close();
    // The audited side really recorded: one line per write.
    let lines = std::fs::read_to_string(&audit_file)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let _ = std::fs::remove_dir_all(&audit_dir);
    assert_eq!(lines, warmup + opts.calls, "audit lines with the trail on");

    let (t_off, t_on, t_both) = (
        Samples::new(t_off),
        Samples::new(t_on),
        Samples::new(t_both),
    );
    println!("metrics off          : {}", t_off.line(1000.0, "ms"));
    println!("metrics on           : {}", t_on.line(1000.0, "ms"));
    println!("metrics and audit on : {}", t_both.line(1000.0, "ms"));
    println!("scrapes while measuring: {scrapes}; calls counted: {counted}; audit lines: {lines}");
    println!("peak memory (VmHWM): off {hwm_off} KiB, metrics {hwm_on} KiB, both {hwm_both} KiB");
    let added_med = (t_on.median() - t_off.median()) / 1000.0;
    let added_p99 = (t_on.p99() - t_off.p99()) / 1000.0;
    let both_med = (t_both.median() - t_off.median()) / 1000.0;
    let both_p99 = (t_both.p99() - t_off.p99()) / 1000.0;
    println!("added by metrics: median {added_med:+.3} ms, p99 {added_p99:+.3} ms");
    println!("added by metrics and audit: median {both_med:+.3} ms, p99 {both_p99:+.3} ms");
    vec![
        Row {
            measure: format!(
                "{TOOL} with metrics and audit on vs off (median, n={})",
                opts.calls
            ),
            ours: format!("{:.3} ms (on)", t_both.median() / 1000.0),
            reference: format!("{:.3} ms (off)", t_off.median() / 1000.0),
            result: format!("{both_med:+.3} ms"),
            target: format!("≤ {TARGET_MS} ms"),
            met: Some(both_med <= TARGET_MS),
        },
        Row {
            measure: format!("{TOOL} with metrics and audit on vs off (p99)"),
            ours: format!("{:.3} ms (on)", t_both.p99() / 1000.0),
            reference: format!("{:.3} ms (off)", t_off.p99() / 1000.0),
            result: format!("{both_p99:+.3} ms"),
            target: "reported".into(),
            met: Some(true),
        },
        Row {
            measure: format!("{TOOL} with metrics on vs off (median, n={})", opts.calls),
            ours: format!("{:.3} ms (on)", t_on.median() / 1000.0),
            reference: format!("{:.3} ms (off)", t_off.median() / 1000.0),
            result: format!("{added_med:+.3} ms"),
            target: format!("≤ {TARGET_MS} ms"),
            met: Some(added_med <= TARGET_MS),
        },
        Row {
            measure: format!("{TOOL} with metrics on vs off (p99)"),
            ours: format!("{:.3} ms (on)", t_on.p99() / 1000.0),
            reference: format!("{:.3} ms (off)", t_off.p99() / 1000.0),
            result: format!("{added_p99:+.3} ms"),
            target: "reported".into(),
            met: Some(true),
        },
        Row {
            measure: "peak memory with metrics on vs off (VmHWM)".into(),
            ours: format!("{hwm_on} KiB (on)"),
            reference: format!("{hwm_off} KiB (off)"),
            result: format!("{:+} KiB", hwm_on as i64 - hwm_off as i64),
            target: "reported".into(),
            met: Some(true),
        },
    ]
}
