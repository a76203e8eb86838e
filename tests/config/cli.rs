//! The command line outside the MCP session: `doctor`, `print-config` and `--help`.

use crate::support::common;

use std::process::Output;

use bitrix24_task_results_mcp::sandbox::{Sandbox, SandboxOptions};
use common::*;
use serde_json::Value;

const SECRET: &str = "s3cr3tw3bh00kvalue";

async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run the binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn doctor_is_happy_with_the_sandbox() {
    let o = run(&["doctor", "--sandbox"], &[]).await;
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    for needle in [
        "credential mode: built-in sandbox",
        "scope tasks (REST 3.0 task methods): confirmed",
        "scope task (REST v1 tasks.task.list, for task_search and task id completion): confirmed",
        "scope im: confirmed",
        "pacing plan: 2 requests/s, burst 50 (standard plan)",
        "ms (round trip)",
        "result: usable",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
}

#[tokio::test]
async fn doctor_on_a_webhook_reports_scopes_and_never_the_secret() {
    let sandbox = Sandbox::start(SandboxOptions {
        webhook_secret: SECRET.into(),
        webhook_scopes: vec!["tasks".into()],
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let url = sandbox.webhook_url();
    let o = run(
        &["doctor", "--task-id", "51"],
        &[("BITRIX24_WEBHOOK_URL", url.as_str())],
    )
    .await;
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "usable without im: {out}");
    assert!(out.contains("inbound webhook of user 1"), "{out}");
    assert!(out.contains("task 51: its results are readable"), "{out}");
    assert!(out.contains("scope im: missing"), "{out}");
    assert!(out.contains("scope task (REST v1 tasks.task.list"), "{out}");
    assert!(out.contains("task id completion): missing"), "{out}");
    assert!(!out.contains(SECRET) && !stderr(&o).contains(SECRET));

    // Without the tasks scope nothing works: exit 1.
    let sandbox = Sandbox::start(SandboxOptions {
        webhook_secret: SECRET.into(),
        webhook_scopes: vec!["im".into()],
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let url = sandbox.webhook_url();
    let o = run(&["doctor"], &[("BITRIX24_WEBHOOK_URL", url.as_str())]).await;
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("scope tasks (REST 3.0 task methods, every task-result tool): missing"),
        "{out}"
    );
    assert!(out.contains("task id completion): missing"), "{out}");
    assert!(!out.contains(SECRET));
}

#[tokio::test]
async fn doctor_fails_on_an_unreachable_portal_and_a_bad_configuration() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let url = format!("http://127.0.0.1:1/rest/1/{SECRET}/");
    let o = run(&["doctor"], &[("BITRIX24_WEBHOOK_URL", url.as_str())]).await;
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("cannot reach http://127.0.0.1:1"), "{out}");
    assert!(out.contains("NOT usable"), "{out}");
    assert!(!out.contains(SECRET) && !stderr(&o).contains(SECRET));

    let o = run(&["doctor"], &[]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("BITRIX24_WEBHOOK_URL"),
        "{}",
        stdout(&o)
    );

    let o = run(&["doctor", "--sandbox", "--tools", "nope"], &[]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("unknown tool"));
}

const CLIENTS: [&str; 5] = ["claude-code", "cursor", "codex", "vscode", "claude-desktop"];

#[tokio::test]
async fn print_config_parses_as_each_clients_format_without_secrets() {
    let exe = std::fs::canonicalize(BIN).unwrap();
    let exe = exe.to_str().unwrap();
    for transport in ["stdio", "http"] {
        for client in CLIENTS {
            let o = run(
                &["print-config", "--client", client, "--transport", transport],
                &[
                    (
                        "BITRIX24_WEBHOOK_URL",
                        &format!("https://p.example/rest/1/{SECRET}/"),
                    ),
                    ("MCP_AUTH_TOKEN", SECRET),
                ],
            )
            .await;
            assert_eq!(
                o.status.code(),
                Some(0),
                "{client} {transport}: {}",
                stderr(&o)
            );
            let out = stdout(&o);
            let all = format!("{out}{}", stderr(&o));
            assert!(!all.contains(SECRET), "{client} {transport} leaks: {all}");
            let (config, server) = if client == "codex" {
                let t: toml::Table = toml::from_str(&out)
                    .unwrap_or_else(|e| panic!("codex {transport}: {e}\n{out}"));
                let v = serde_json::to_value(&t).unwrap();
                let server = v["mcp_servers"]["bitrix24"].clone();
                assert!(server["startup_timeout_sec"].is_number());
                assert!(server["tool_timeout_sec"].is_number());
                (v, server)
            } else {
                let v: Value = serde_json::from_str(&out)
                    .unwrap_or_else(|e| panic!("{client} {transport}: {e}\n{out}"));
                let key = if client == "vscode" {
                    "servers"
                } else {
                    "mcpServers"
                };
                let server = v[key]["bitrix24"].clone();
                (v, server)
            };
            assert!(server.is_object(), "{client} {transport}: {config}");
            if transport == "stdio" {
                assert_eq!(server["command"], exe, "{client}: absolute path");
                if client == "codex" {
                    assert_eq!(
                        server["env_vars"],
                        serde_json::json!(["BITRIX24_WEBHOOK_URL"])
                    );
                } else {
                    assert!(
                        server["env"]["BITRIX24_WEBHOOK_URL"].is_string(),
                        "{config}"
                    );
                }
            } else {
                assert!(out.contains("http://127.0.0.1:8000/mcp"), "{out}");
                if client == "codex" {
                    assert_eq!(server["bearer_token_env_var"], "MCP_AUTH_TOKEN");
                } else if client != "vscode" {
                    assert!(all.contains("MCP_AUTH_TOKEN"), "{all}");
                }
            }
        }
    }
    // Claude Code also gets the one-line form.
    let o = run(&["print-config", "--client", "claude-code"], &[]).await;
    assert!(
        stderr(&o).contains(&format!(
            "claude mcp add bitrix24 -e BITRIX24_WEBHOOK_URL=\"$BITRIX24_WEBHOOK_URL\" -- {exe}"
        )),
        "{}",
        stderr(&o)
    );
    // The selection flags travel into the snippet.
    let o = run(&["print-config", "--client", "cursor", "--read-only"], &[]).await;
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["mcpServers"]["bitrix24"]["args"],
        serde_json::json!(["--read-only"])
    );
}

#[tokio::test]
async fn mcp_json_example_is_what_print_config_prints_for_claude_code() {
    let o = run(&["print-config", "--client", "claude-code"], &[]).await;
    let mut printed: Value = serde_json::from_str(&stdout(&o)).unwrap();
    // The example assumes the binary is on PATH (cargo install); print-config gives its absolute path.
    printed["mcpServers"]["bitrix24"]["command"] = "bitrix24-task-results-mcp".into();
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/mcp.json.example")).unwrap(),
    )
    .unwrap();
    assert_eq!(example, printed);
}

#[tokio::test]
async fn help_lists_every_flag_with_its_variable_and_hides_secrets() {
    let o = run(
        &["--help"],
        &[
            (
                "BITRIX24_WEBHOOK_URL",
                &format!("https://p.example/rest/1/{SECRET}/"),
            ),
            ("BITRIX24_ACCESS_TOKEN", SECRET),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0));
    let help = stdout(&o);
    assert!(!help.contains(SECRET), "{help}");
    for (flag, var, default) in [
        ("--webhook-url", "BITRIX24_WEBHOOK_URL", None),
        ("--portal-url", "BITRIX24_PORTAL_URL", None),
        ("--access-token", "BITRIX24_ACCESS_TOKEN", None),
        ("--sandbox", "BITRIX24_SANDBOX", Some("[default: off]")),
        ("--timeout", "BITRIX24_TIMEOUT", Some("[default: 65]")),
        ("--read-only", "BITRIX24_READ_ONLY", Some("[default: off]")),
        ("--tools", "BITRIX24_TOOLS", Some("[default: every tool]")),
        (
            "--exclude-tools",
            "BITRIX24_EXCLUDE_TOOLS",
            Some("[default: none]"),
        ),
        ("--log-level", "RUST_LOG", Some("[default: info]")),
        ("--log-format", "MCP_LOG_FORMAT", Some("[default: text]")),
        ("--drain-seconds", "MCP_DRAIN_SECONDS", Some("[default: 5]")),
        ("--audit-log", "MCP_AUDIT_LOG", Some("[default: off]")),
    ] {
        // The flag's own entry starts a line; other entries may mention it in their text.
        let start = help
            .find(&format!("\n      {flag} "))
            .or_else(|| help.find(&format!("\n      {flag}\n")));
        let start = start.unwrap_or_else(|| panic!("{flag} missing: {help}"));
        let section = &help[start + 1..];
        let end = section[2..]
            .find("\n      --")
            .map_or(section.len(), |e| e + 2);
        let section = &section[..end];
        assert!(
            section.contains(&format!("[env: {var}")),
            "{flag}: {section}"
        );
        if let Some(d) = default {
            assert!(section.contains(d), "{flag}: {section}");
        }
    }
    for sub in ["doctor", "print-config"] {
        assert!(help.contains(sub), "{help}");
    }
    let o = run(&["print-config", "--help"], &[]).await;
    let help = stdout(&o);
    for needle in [
        "claude-code",
        "cursor",
        "codex",
        "vscode",
        "claude-desktop",
        "stdio",
        "http",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}
