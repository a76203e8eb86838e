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
    let env = [("BITRIX24_WEBHOOK_URL", url.as_str())];
    // Every binary of the run, interleaved run by run; "server" and "floor" always, a
    // previous build (and its floor) when given.
    let mut names = vec![
        ("server", bins.server.clone(), true),
        ("floor", bins.bare.clone(), false),
    ];
    if let Some(before) = &opts.before {
        names.push(("before", before.clone(), true));
    }
    if let Some(floor) = &opts.before_floor {
        names.push(("floor-before", floor.clone(), false));
    }
    let command = |(_, path, is_server): &(&str, std::path::PathBuf, bool)| {
        if *is_server {
            server_command(
                &Bins {
                    server: path.clone(),
                    bare: bins.bare.clone(),
                },
                &[],
                &env,
            )
        } else {
            Command::new(path)
        }
    };

    // Warm the page cache and check each answers with its tools.
    for _ in 0..3 {
        for entry in &names {
            let (_, _, n) = once(command(entry));
            if entry.2 {
                assert!(n >= 5, "{} must list its tools, listed {n}", entry.0);
            } else {
                assert_eq!(n, 1, "the floor lists one tool");
            }
        }
    }
    let mut times = vec![Vec::new(); names.len()];
    let mut peaks = vec![Vec::new(); names.len()];
    for i in 0..opts.runs {
        // Rotate which goes first so drift hits all alike.
        for k in 0..names.len() {
            let j = (i + k) % names.len();
            let (t, m, _) = once(command(&names[j]));
            times[j].push(t);
            peaks[j].push(m as f64);
        }
    }
    let times: Vec<Samples> = times.into_iter().map(Samples::new).collect();
    let peaks: Vec<Samples> = peaks.into_iter().map(Samples::new).collect();
    for (k, (name, _, _)) in names.iter().enumerate() {
        println!(
            "{name:<13} first tools/list: {}",
            times[k].line(1000.0, "ms")
        );
    }
    for (k, (name, _, _)) in names.iter().enumerate() {
        println!("{name:<13} VmHWM: {}", peaks[k].line(1024.0, "MiB"));
    }
    let ratio = |a: usize, b: usize| {
        (
            times[a].median() / times[b].median(),
            peaks[a].median() / peaks[b].median(),
        )
    };
    let (t_ratio, m_ratio) = ratio(0, 1);
    println!("ratio server/floor (medians): time {t_ratio:.2}x, peak RSS {m_ratio:.2}x");
    if names.len() > 2 {
        let (t, m) = ratio(0, 2);
        println!("ratio server/before (medians): time {t:.2}x, peak RSS {m:.2}x");
        let floor = if names.len() > 3 { 3 } else { 1 };
        let (t, m) = ratio(2, floor);
        println!(
            "ratio before/{} (medians): time {t:.2}x, peak RSS {m:.2}x",
            names[floor].0
        );
    }
    let (t_ours, t_bare, m_ours, m_bare) = (&times[0], &times[1], &peaks[0], &peaks[1]);
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
