//! Finding a task (issue 21): `task_search`'s overhead over a direct POST of its v1 body,
//! as a ratio to `task_result_list`'s over its own direct POST, interleaved call by call;
//! and `completion/complete` latency while this server's own rate-limit bucket is full.

use std::time::Instant;

use bitrix24_task_results_mcp::sandbox::Sandbox;

use crate::direct::Direct;
use crate::http::{NO_PACING, pending, supports};
use crate::peer::Peer;
use crate::stats::Samples;
use crate::{Bins, Opts, Row, server_command};

/// The tools compared: (tool, arguments, REST method the sandbox sees).
const SEARCH: (&str, &str, &str) = ("task_search", "{\"query\":\"report\"}", "tasks.task.list");
const LIST: (&str, &str, &str) = (
    "task_result_list",
    "{\"taskId\":51}",
    "tasks.task.result.list",
);

/// Completions timed under a saturated bucket.
const COMPLETIONS: usize = 20;

fn timed(peer: &mut Peer, line: (u64, String)) -> f64 {
    let (id, line) = line;
    let started = Instant::now();
    peer.send(&line);
    let at = peer.wait_for_fast(id);
    at.duration_since(started).as_secs_f64() * 1e6
}

/// A checked call of `tool`, then a direct POST of the REST body it sent.
fn direct_for(
    peer: &mut Peer,
    sandbox: &Sandbox,
    (tool, args, method): (&str, &str, &str),
) -> Direct {
    let (id, line) = peer.call_line(tool, args);
    peer.send(&line);
    let (answer, _) = peer.wait_for(id);
    assert_ne!(
        answer["result"]["isError"],
        serde_json::Value::Bool(true),
        "{answer}"
    );
    let sent = sandbox
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path.ends_with(method))
        .expect("the sandbox saw the REST call");
    let direct = Direct::new(format!("{}{}", sandbox.base_url(), sent.path), sent.body);
    assert_eq!(direct.post().1, 200, "direct POST of {method}");
    direct
}

fn completion_line(peer: &mut Peer, value: &str) -> (u64, String) {
    let id = peer.id();
    (
        id,
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"completion/complete\",\"params\":{{\"ref\":{{\"type\":\"ref/prompt\",\"name\":\"record_result\"}},\"argument\":{{\"name\":\"taskId\",\"value\":\"{value}\"}}}}}}\n"
        ),
    )
}

pub fn run(bins: &Bins, sandbox: &Sandbox, opts: &Opts) -> Vec<Row> {
    println!();
    println!(
        "## Finding a task: task_search overhead vs task_result_list's, completion under a full bucket"
    );
    let measure =
        "task_search overhead over a direct POST, as a ratio to task_result_list's".to_string();
    if !supports(bins, &["task_search"]) {
        println!("pending: this build has no task_search (issue 21)");
        return vec![pending(measure, "≤ 1.25x")];
    }
    let url = sandbox.webhook_url();
    let mut ours = Peer::spawn(&mut server_command(
        bins,
        &NO_PACING,
        &[("BITRIX24_WEBHOOK_URL", url.as_str())],
    ));
    ours.initialize();
    let search_direct = direct_for(&mut ours, sandbox, SEARCH);
    let list_direct = direct_for(&mut ours, sandbox, LIST);
    let warmup = (opts.calls / 10).max(50);
    let mut t: [Vec<f64>; 4] = Default::default();
    for i in 0..warmup + opts.calls {
        let mut sample = [0.0f64; 4];
        for k in 0..4 {
            match (i + k) % 4 {
                0 => {
                    let line = ours.call_line(SEARCH.0, SEARCH.1);
                    sample[0] = timed(&mut ours, line);
                }
                1 => sample[1] = search_direct.post().0.as_secs_f64() * 1e6,
                2 => {
                    let line = ours.call_line(LIST.0, LIST.1);
                    sample[2] = timed(&mut ours, line);
                }
                _ => sample[3] = list_direct.post().0.as_secs_f64() * 1e6,
            }
        }
        if i >= warmup {
            for (all, s) in t.iter_mut().zip(sample) {
                all.push(s);
            }
        }
    }
    ours.close();
    let [search, search_d, list, list_d] = t.map(Samples::new);
    println!(
        "task_search tools/call      : {}",
        search.line(1000.0, "ms")
    );
    println!(
        "tasks.task.list direct POST : {}",
        search_d.line(1000.0, "ms")
    );
    println!("task_result_list tools/call : {}", list.line(1000.0, "ms"));
    println!(
        "tasks.task.result.list POST : {}",
        list_d.line(1000.0, "ms")
    );
    let over_search = search.median() - search_d.median();
    let over_list = list.median() - list_d.median();
    let ratio = over_search / over_list.max(1.0);
    println!(
        "overhead: task_search +{:.3} ms, task_result_list +{:.3} ms, ratio {ratio:.2}",
        over_search / 1000.0,
        over_list / 1000.0
    );

    // One slot every 2 s, burst 1: after a tool call every completion finds the bucket
    // full for ~2 s and must answer within its bound without waiting for a slot.
    let mut tight = Peer::spawn(&mut server_command(
        bins,
        &["--rate", "0.5", "--burst", "1"],
        &[("BITRIX24_WEBHOOK_URL", url.as_str())],
    ));
    tight.initialize();
    let (id, line) = tight.call_line("task_get", "{\"taskId\":51}");
    tight.send(&line);
    tight.wait_for(id);
    let mut waits = Vec::new();
    for i in 0..COMPLETIONS {
        let line = completion_line(&mut tight, &(i % 10).to_string());
        let id = line.0;
        let started = Instant::now();
        tight.send(&line.1);
        let (answer, at) = tight.wait_for(id);
        assert!(
            answer["result"]["completion"]["values"].is_array(),
            "{answer}"
        );
        waits.push(at.duration_since(started).as_secs_f64() * 1e6);
    }
    tight.close();
    let waits = Samples::new(waits);
    println!(
        "completion under a full bucket: {}",
        waits.line(1000.0, "ms")
    );
    vec![
        Row {
            measure: format!("{measure} (median, n={})", opts.calls),
            ours: format!("+{:.3} ms", over_search / 1000.0),
            reference: format!("+{:.3} ms (task_result_list)", over_list / 1000.0),
            result: format!("{ratio:.2}x"),
            target: "≤ 1.25x (or within 0.05 ms)".into(),
            met: Some(ratio <= 1.25 || over_search - over_list <= 50.0),
        },
        Row {
            measure: format!(
                "completion/complete with the rate-limit bucket full (max of {COMPLETIONS})"
            ),
            ours: format!("{:.1} ms", waits.max() / 1000.0),
            reference: format!("{:.1} ms median", waits.median() / 1000.0),
            result: format!("{:.1} ms", waits.max() / 1000.0),
            target: "≤ 1000 ms".into(),
            met: Some(waits.max() <= 1_000_000.0),
        },
    ]
}
