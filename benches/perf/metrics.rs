//! Metrics (issue 22): the per-call cost of `--metrics-listen` on `task_result_add`, one
//! server with metrics off and one with them on (scraped every second, as Prometheus
//! would), interleaved call by call in one run; and the peak memory of each.

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
    let (mut t_off, mut t_on) = (vec![], vec![]);
    for i in 0..warmup + opts.calls {
        // Alternate the order so that neither side always follows the other.
        let (a, b) = if i % 2 == 0 {
            let a = timed_call(&mut off);
            (a, timed_call(&mut on))
        } else {
            let b = timed_call(&mut on);
            (timed_call(&mut off), b)
        };
        if i >= warmup {
            t_off.push(a);
            t_on.push(b);
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
    off.close();
    on.close();

    let (t_off, t_on) = (Samples::new(t_off), Samples::new(t_on));
    println!("metrics off: {}", t_off.line(1000.0, "ms"));
    println!("metrics on : {}", t_on.line(1000.0, "ms"));
    println!("scrapes while measuring: {scrapes}; calls counted: {counted}");
    println!("peak memory (VmHWM): off {hwm_off} KiB, on {hwm_on} KiB");
    let added_med = (t_on.median() - t_off.median()) / 1000.0;
    let added_p99 = (t_on.p99() - t_off.p99()) / 1000.0;
    println!("added by metrics: median {added_med:+.3} ms, p99 {added_p99:+.3} ms");
    vec![
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
