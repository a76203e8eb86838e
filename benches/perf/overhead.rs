//! Per-call overhead: the same `tools/call` through the server versus a direct POST of the
//! same REST body to the same sandbox, plus the bare rmcp floor's trivial tool, all
//! interleaved call by call in one run.

use std::process::Command;
use std::time::Instant;

use bitrix24_task_results_mcp::sandbox::Sandbox;

use crate::direct::Direct;
use crate::http::NO_PACING;
use crate::peer::Peer;
use crate::stats::Samples;
use crate::{Bins, Opts, Row, server_command};

const TOOL: &str = "task_result_list";
const ARGS: &str = "{\"taskId\":51}";
const REST_METHOD: &str = "tasks.task.result.list";

/// Times one prepared `tools/call` line, in microseconds.
fn timed_call(peer: &mut Peer, tool: &str, args: &str) -> f64 {
    let (id, line) = peer.call_line(tool, args);
    let started = Instant::now();
    peer.send(&line);
    let at = peer.wait_for_fast(id);
    at.duration_since(started).as_secs_f64() * 1e6
}

pub fn run(bins: &Bins, sandbox: &Sandbox, _rt: &tokio::runtime::Runtime, opts: &Opts) -> Vec<Row> {
    println!();
    println!(
        "## Per-call overhead: tools/call {TOOL} {ARGS} vs a direct POST of the same REST body"
    );
    let url = sandbox.webhook_url();
    // Thousands of calls: pacing must not wait (the pacer is still consulted on every
    // call, so its cost is measured).
    let mut ours = Peer::spawn(&mut server_command(
        bins,
        &NO_PACING,
        &[("BITRIX24_WEBHOOK_URL", url.as_str())],
    ));
    ours.initialize();
    let mut bare = Peer::spawn(&mut Command::new(&bins.bare));
    bare.initialize();

    // One checked call each: the tool must succeed, and it tells us the REST body sent.
    let (id, line) = ours.call_line(TOOL, ARGS);
    ours.send(&line);
    let (answer, _) = ours.wait_for(id);
    assert_ne!(
        answer["result"]["isError"],
        serde_json::Value::Bool(true),
        "{answer}"
    );
    let sent = sandbox
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path.ends_with(REST_METHOD))
        .expect("the sandbox saw the REST call");
    println!("REST body: {}", sent.body);
    let direct = Direct::new(format!("{}{}", sandbox.base_url(), sent.path), sent.body);
    let (_, status, len) = direct.post();
    assert_eq!(status, 200, "direct POST");
    println!("REST answer: {} bytes", len.0);
    let (id, line) = bare.call_line("echo", "{\"text\":\"ping\"}");
    bare.send(&line);
    let (answer, _) = bare.wait_for(id);
    assert_eq!(answer["result"]["content"][0]["text"], "ping", "{answer}");

    let warmup = (opts.calls / 10).max(50);
    let (mut t_ours, mut t_direct, mut t_bare) = (vec![], vec![], vec![]);
    for i in 0..warmup + opts.calls {
        let mut sample = [0.0f64; 3];
        // Rotate the order so that no side always follows another.
        for k in 0..3 {
            match (i + k) % 3 {
                0 => sample[0] = timed_call(&mut ours, TOOL, ARGS),
                1 => sample[1] = direct.post().0.as_secs_f64() * 1e6,
                _ => sample[2] = timed_call(&mut bare, "echo", "{\"text\":\"ping\"}"),
            }
        }
        if i >= warmup {
            t_ours.push(sample[0]);
            t_direct.push(sample[1]);
            t_bare.push(sample[2]);
        }
    }
    ours.close();
    bare.close();
    let (t_ours, t_direct, t_bare) = (
        Samples::new(t_ours),
        Samples::new(t_direct),
        Samples::new(t_bare),
    );
    println!("server tools/call : {}", t_ours.line(1000.0, "ms"));
    println!("direct POST       : {}", t_direct.line(1000.0, "ms"));
    println!("floor  tools/call : {}", t_bare.line(1000.0, "ms"));
    let over_med = t_ours.median() - t_direct.median();
    let over_p99 = t_ours.p99() - t_direct.p99();
    let net_med = over_med - t_bare.median();
    let net_p99 = over_p99 - t_bare.p99();
    println!(
        "overhead over direct POST: median {:.3} ms, p99 {:.3} ms",
        over_med / 1000.0,
        over_p99 / 1000.0
    );
    println!(
        "net of the floor's own round trip: median {:.3} ms, p99 {:.3} ms",
        net_med / 1000.0,
        net_p99 / 1000.0
    );
    vec![
        Row {
            measure: format!(
                "tools/call overhead over a direct POST (median, n={})",
                opts.calls
            ),
            ours: format!("{:.3} ms", t_ours.median() / 1000.0),
            reference: format!("{:.3} ms (direct POST)", t_direct.median() / 1000.0),
            result: format!("+{:.3} ms", over_med / 1000.0),
            target: "≤ 0.2 ms".into(),
            met: Some(over_med <= 200.0),
        },
        Row {
            measure: "tools/call overhead over a direct POST (p99)".into(),
            ours: format!("{:.3} ms", t_ours.p99() / 1000.0),
            reference: format!("{:.3} ms (direct POST)", t_direct.p99() / 1000.0),
            result: format!("+{:.3} ms", over_p99 / 1000.0),
            target: "reported".into(),
            met: Some(true),
        },
        Row {
            measure: "overhead net of the bare rmcp round trip (median)".into(),
            ours: format!("+{:.3} ms", over_med / 1000.0),
            reference: format!("{:.3} ms (bare rmcp tools/call)", t_bare.median() / 1000.0),
            result: format!("{:+.3} ms", net_med / 1000.0),
            target: "≈ 0.05 ms".into(),
            met: Some(net_med <= 75.0),
        },
    ]
}
