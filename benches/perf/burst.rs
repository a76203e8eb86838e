//! Paced burst: 200 writes fired at once through one stdio session, against a sandbox
//! whose leaky bucket matches the server's pacing (a 2/s, burst-50 bucket scaled up to
//! 200/s, burst 50, so the run is short), versus the bucket's theoretical minimum makespan.

use std::time::Instant;

use bitrix24_task_results_mcp::sandbox::{RateLimit, Sandbox, SandboxOptions};

use crate::http::{pending, supports};
use crate::peer::Peer;
use crate::{Bins, Opts, Row, server_command};

const WRITES: usize = 200;
const RATE: f64 = 200.0;
const BURST: u32 = 50;

pub fn run(bins: &Bins, rt: &tokio::runtime::Runtime, _opts: &Opts) -> Vec<Row> {
    println!();
    println!(
        "## Paced burst: {WRITES} task_result_add at once, server paced at {RATE}/s burst {BURST}, portal bucket the same"
    );
    // The first BURST go at once; each later one waits for 1/RATE s of drain.
    let minimum = (WRITES as f64 - f64::from(BURST)).max(0.0) / RATE;
    let measure = format!("paced burst: {WRITES} writes, bucket {RATE:.0}/s burst {BURST}");
    if !supports(bins, &["--rate", "--burst"]) {
        println!("pending: this build has no --rate/--burst (issue 4)");
        return vec![pending(
            measure,
            "≤ 1.1x the minimum, 0 QUERY_LIMIT_EXCEEDED",
        )];
    }
    let sandbox = rt
        .block_on(Sandbox::start(SandboxOptions {
            rate: Some(RateLimit {
                drain_per_sec: RATE,
                burst: BURST,
            }),
            ..SandboxOptions::default()
        }))
        .expect("sandbox");
    let url = sandbox.webhook_url();
    let (rate, burst) = (RATE.to_string(), BURST.to_string());
    let mut peer = Peer::spawn(&mut server_command(
        bins,
        &["--rate", &rate, "--burst", &burst],
        &[("BITRIX24_WEBHOOK_URL", url.as_str())],
    ));
    peer.initialize();
    // The bucket starts empty: let the handshake's moment pass before firing.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut text = String::new();
    let mut ids = Vec::new();
    for i in 0..WRITES {
        let (id, line) = peer.call_line(
            "task_result_add",
            &format!("{{\"taskId\":51,\"text\":\"burst write {i}\"}}"),
        );
        ids.push(id);
        text.push_str(&line);
    }
    let started = Instant::now();
    peer.send(&text);
    let mut last = started;
    let mut tool_errors = 0;
    // Answers come back in any order.
    let mut pending: std::collections::HashSet<u64> = ids.into_iter().collect();
    while !pending.is_empty() {
        let (answer, at) = peer.next_message();
        let Some(id) = answer.get("id").and_then(serde_json::Value::as_u64) else {
            continue;
        };
        if !pending.remove(&id) {
            continue;
        }
        last = last.max(at);
        if answer.get("error").is_some()
            || answer["result"]["isError"] == serde_json::Value::Bool(true)
        {
            tool_errors += 1;
            if tool_errors <= 3 {
                println!("error: {answer}");
            }
        }
    }
    let makespan = last.duration_since(started).as_secs_f64();
    peer.close();
    let requests = sandbox.requests();
    let adds = requests
        .iter()
        .filter(|r| r.path.ends_with("tasks.task.result.add"))
        .count();
    let refused = requests.iter().filter(|r| r.status == 503).count();
    sandbox.shutdown();
    let ratio = makespan / minimum;
    println!(
        "makespan {makespan:.3} s vs theoretical minimum {minimum:.3} s: {ratio:.3}x; \
         {adds} add requests reached the portal, {refused} answered 503 QUERY_LIMIT_EXCEEDED, \
         {tool_errors} isError results"
    );
    vec![Row {
        measure,
        ours: format!("{makespan:.3} s"),
        reference: format!("{minimum:.3} s (theoretical minimum)"),
        result: format!("{ratio:.3}x, {refused} QUERY_LIMIT_EXCEEDED, {tool_errors} isError"),
        target: "≤ 1.1x, 0 QUERY_LIMIT_EXCEEDED".into(),
        met: Some(ratio <= 1.1 && refused == 0 && tool_errors == 0),
    }]
}
