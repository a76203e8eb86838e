//! Configuration rules a user hits first: one rule for every on/off variable (issue 10
//! item 5), and every portal, pacing and OAuth flag before or after the subcommand (item 6).

use crate::support::{common, http_support};

use std::process::Output;

use common::*;
use http_support::*;

async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = command(args, &[]);
    cmd.env_remove("MCP_STATELESS").envs(env.iter().copied());
    cmd.stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run the binary")
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const ON: [&str; 6] = ["1", "true", "TRUE", "yes", "On", "on"];
const OFF: [&str; 6] = ["", "0", "false", "No", "OFF", "off"];

#[tokio::test]
async fn bitrix24_sandbox_takes_every_on_and_off_word() {
    for (value, on) in ON
        .map(|v| (v, true))
        .into_iter()
        .chain(OFF.map(|v| (v, false)))
    {
        let o = run(&["doctor"], &[("BITRIX24_SANDBOX", value)]).await;
        let all = out(&o);
        if on {
            assert_eq!(o.status.code(), Some(0), "{value:?}: {all}");
            assert!(
                all.contains("credential mode: built-in sandbox"),
                "{value:?}: {all}"
            );
        } else {
            assert_eq!(o.status.code(), Some(1), "{value:?}: {all}");
            assert!(
                all.contains("no Bitrix24 portal configured"),
                "{value:?}: {all}"
            );
        }
    }
}

#[tokio::test]
async fn a_word_that_is_neither_on_nor_off_stops_start_up_and_says_which_words_work() {
    for (var, flag) in [
        ("BITRIX24_SANDBOX", "--sandbox"),
        ("BITRIX24_READ_ONLY", "--read-only"),
        ("MCP_STATELESS", "--stateless"),
    ] {
        let o = run(&["doctor", "--sandbox"], &[(var, "maybe")]).await;
        let all = out(&o);
        assert_eq!(o.status.code(), Some(2), "{var}: {all}");
        assert!(
            all.contains(flag) && all.contains("1, true, yes, on"),
            "{var}: {all}"
        );
    }
}

#[tokio::test]
async fn mcp_stateless_takes_the_same_words() {
    for (value, on) in [
        ("1", true),
        ("Yes", true),
        ("on", true),
        ("0", false),
        ("off", false),
    ] {
        let server = spawn_http(&["--sandbox"], &[("MCP_STATELESS", value)]).await;
        let answer = http()
            .post(server.mcp_url())
            .header("Accept", "application/json, text/event-stream")
            .json(&initialize_body())
            .send()
            .await
            .expect("initialize");
        assert!(answer.status().is_success(), "{value}: {}", answer.status());
        // Stateless: a plain JSON reply and no session; with sessions: an Mcp-Session-Id.
        assert_eq!(
            answer.headers().get("mcp-session-id").is_none(),
            on,
            "MCP_STATELESS={value}: {:?}",
            answer.headers()
        );
        server.sigterm().await;
    }
}

#[tokio::test]
async fn portal_pacing_and_oauth_flags_work_after_every_subcommand() {
    let o = run(&["doctor", "--plan", "enterprise", "--sandbox"], &[]).await;
    let all = out(&o);
    assert_eq!(o.status.code(), Some(0), "{all}");
    assert!(
        all.contains("pacing plan: 5 requests/s, burst 250 (enterprise plan)"),
        "{all}"
    );
    // Before and after give the same result.
    let o = run(&["--plan", "enterprise", "doctor", "--sandbox"], &[]).await;
    assert!(out(&o).contains("(enterprise plan)"), "{}", out(&o));
    let o = run(
        &[
            "doctor",
            "--sandbox",
            "--rate",
            "3",
            "--burst",
            "7",
            "--call-budget",
            "9",
            "--timeout",
            "20",
        ],
        &[],
    )
    .await;
    let all = out(&o);
    assert_eq!(o.status.code(), Some(0), "{all}");
    assert!(
        all.contains("3 requests/s, burst 7 (standard plan, overridden); a call waits at most 9 s"),
        "{all}"
    );
    // OAuth flags after `doctor`: parsed (they then conflict with the sandbox, as before).
    let o = run(
        &[
            "doctor",
            "--sandbox",
            "--client-id",
            "app",
            "--client-secret",
            "s3cr3t-value",
            "--refresh-token",
            "r3fr3sh-value",
        ],
        &[],
    )
    .await;
    let all = out(&o);
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(
        all.contains("do not apply to a webhook or the sandbox"),
        "{all}"
    );
    assert!(
        !all.contains("s3cr3t-value") && !all.contains("r3fr3sh-value"),
        "{all}"
    );
    let o = run(
        &[
            "doctor",
            "--portal-url",
            "https://p.example",
            "--token-file",
            "/nonexistent/t.json",
            "--oauth-url",
            "nope",
        ],
        &[],
    )
    .await;
    assert!(!out(&o).contains("unexpected argument"), "{}", out(&o));
    // print-config and serve take them too.
    let o = run(
        &[
            "print-config",
            "--client",
            "cursor",
            "--plan",
            "enterprise",
            "--sandbox",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let server = spawn_http(
        &[
            "serve",
            "--plan",
            "enterprise",
            "--sandbox",
            "--call-budget",
            "5",
        ],
        &[],
    )
    .await;
    server.sigterm().await;
}
