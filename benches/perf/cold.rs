//! Cold start: spawn -> initialize -> initialized -> tools/list answer, and peak RSS,
//! for the server and the bare rmcp floor, interleaved run by run.

use std::process::Command;
use std::time::Instant;

use bitrix24_task_results_mcp::sandbox::Sandbox;

use crate::peer::Peer;
use crate::stats::Samples;
use crate::{Bins, Opts, Row, server_command};

/// One cold start: (microseconds to the tools/list answer, VmHWM KiB, tools listed).
fn once(mut cmd: Command) -> (f64, u64, usize) {
    let start = Instant::now();
    let mut peer = Peer::spawn(&mut cmd);
    peer.initialize();
    let id = peer.id();
    peer.send(&format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/list\"}}\n"
    ));
    let (answer, at) = peer.wait_for(id);
    let micros = at.duration_since(start).as_secs_f64() * 1e6;
    let tools = answer["result"]["tools"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    // Just before closing stdin: the peak of a whole session's start.
    let hwm = peer.vm_hwm_kib();
    peer.close();
    (micros, hwm, tools)
}

pub fn run(bins: &Bins, sandbox: &Sandbox, opts: &Opts) -> Vec<Row> {
    println!();
    println!("## Cold start: spawn -> tools/list answer, peak RSS (VmHWM)");
    // A user's real start: a webhook URL to a portal that is already up.
    let url = sandbox.webhook_url();
    let ours = || server_command(bins, &[], &[("BITRIX24_WEBHOOK_URL", url.as_str())]);
    let bare = || Command::new(&bins.bare);

    // Warm the page cache and check both answer with their tools.
    for _ in 0..3 {
        let (_, _, n) = once(ours());
        assert!(n >= 5, "the server must list its tools, listed {n}");
        let (_, _, n) = once(bare());
        assert_eq!(n, 1, "the floor lists one tool");
    }
    let (mut t_ours, mut t_bare, mut m_ours, mut m_bare) = (vec![], vec![], vec![], vec![]);
    for i in 0..opts.runs {
        // Alternate which goes first so drift hits both alike.
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_ours in order {
            if is_ours {
                let (t, m, _) = once(ours());
                t_ours.push(t);
                m_ours.push(m as f64);
            } else {
                let (t, m, _) = once(bare());
                t_bare.push(t);
                m_bare.push(m as f64);
            }
        }
    }
    let (t_ours, t_bare) = (Samples::new(t_ours), Samples::new(t_bare));
    let (m_ours, m_bare) = (Samples::new(m_ours), Samples::new(m_bare));
    println!("server  first tools/list: {}", t_ours.line(1000.0, "ms"));
    println!("floor   first tools/list: {}", t_bare.line(1000.0, "ms"));
    println!("server  VmHWM: {}", m_ours.line(1024.0, "MiB"));
    println!("floor   VmHWM: {}", m_bare.line(1024.0, "MiB"));
    let t_ratio = t_ours.median() / t_bare.median();
    let m_ratio = m_ours.median() / m_bare.median();
    println!("ratio (medians): time {t_ratio:.2}x, peak RSS {m_ratio:.2}x");
    vec![
        Row {
            measure: format!("first tools/list after spawn (median of {})", opts.runs),
            ours: format!("{:.2} ms", t_ours.median() / 1000.0),
            reference: format!("{:.2} ms (bare rmcp)", t_bare.median() / 1000.0),
            result: format!("{t_ratio:.2}x"),
            target: "≤ 1.5x".into(),
            met: Some(t_ratio <= 1.5),
        },
        Row {
            measure: "peak RSS (VmHWM, median)".into(),
            ours: format!("{:.1} MiB", m_ours.median() / 1024.0),
            reference: format!("{:.1} MiB (bare rmcp)", m_bare.median() / 1024.0),
            result: format!("{m_ratio:.2}x"),
            target: "≤ 2x".into(),
            met: Some(m_ratio <= 2.0),
        },
    ]
}
