//! `print-config` (issue 10 item 7, issue 14): every variable the configuration in force
//! uses is named in every client's snippet, never its value; `--launcher npx`; and a
//! snapshot of what each client is given, per client and transport.

use crate::support::common;

use std::collections::BTreeSet;
use std::process::Output;

use common::*;
use serde_json::Value;

const CLIENTS: [&str; 5] = ["claude-code", "cursor", "codex", "vscode", "claude-desktop"];

const HOOK_SECRET: &str = "w3bh00ks3cr3tv4lue";

/// (variable, value) of the webhook setup.
fn webhook_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "BITRIX24_WEBHOOK_URL",
            format!("https://hook.example/rest/1/{HOOK_SECRET}/"),
        ),
        ("BITRIX24_PLAN", "enterprise".into()),
        ("BITRIX24_READ_ONLY", "1".into()),
    ]
}

/// (variable, value) of an OAuth setup with refresh.
fn oauth_env() -> Vec<(&'static str, String)> {
    vec![
        ("BITRIX24_PORTAL_URL", "https://oauthportal.example".into()),
        ("BITRIX24_CLIENT_ID", "local.app-id-value".into()),
        ("BITRIX24_CLIENT_SECRET", "cl13nts3cr3tv4lue".into()),
        ("BITRIX24_REFRESH_TOKEN", "r3fr3sht0k3nv4lue".into()),
        ("BITRIX24_TOKEN_FILE", "/tmp/token-file-value.json".into()),
        (
            "BITRIX24_OAUTH_URL",
            "https://oauth-server-value.example".into(),
        ),
        ("BITRIX24_PLAN", "unlimited".into()),
        ("BITRIX24_TOOLS", "task_result_list,task_result_add".into()),
    ]
}

async fn print_config(args: &[&str], env: &[(&'static str, String)]) -> Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut all = vec!["print-config"];
    all.extend_from_slice(args);
    command(&all, &env)
        .env_remove("MCP_TRANSPORT")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run print-config")
}

/// The variables a snippet names, read the way the client reads them.
fn named(client: &str, stdout: &str) -> BTreeSet<String> {
    if client == "codex" {
        let t: toml::Table = toml::from_str(stdout).unwrap();
        let v = serde_json::to_value(&t).unwrap();
        v["mcp_servers"]["bitrix24"]["env_vars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    } else {
        let v: Value = serde_json::from_str(stdout).unwrap();
        let key = if client == "vscode" {
            "servers"
        } else {
            "mcpServers"
        };
        v[key]["bitrix24"]["env"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }
}

/// stdout and stderr with the machine-specific binary path replaced.
fn shown(o: &Output) -> String {
    let exe = std::fs::canonicalize(BIN).unwrap();
    format!(
        "{}--- stderr ---\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
    .replace(exe.to_str().unwrap(), "[EXE]")
}

#[tokio::test]
async fn every_variable_in_force_is_named_by_every_client_and_no_value_appears() {
    for (mode, env) in [("webhook", webhook_env()), ("oauth", oauth_env())] {
        let expected: BTreeSet<String> = env.iter().map(|(k, _)| k.to_string()).collect();
        for client in CLIENTS {
            let o = print_config(&["--client", client], &env).await;
            assert_eq!(o.status.code(), Some(0), "{client} {mode}: {}", shown(&o));
            let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
            assert_eq!(
                named(client, &stdout),
                expected,
                "{client} {mode}: {stdout}"
            );
            let all = shown(&o);
            for (_, value) in &env {
                if value.len() > 2 {
                    assert!(
                        !all.contains(value.as_str()),
                        "{client} {mode} shows {value}: {all}"
                    );
                }
            }
            if client == "claude-code" {
                for name in &expected {
                    assert!(
                        all.contains(&format!("-e {name}=\"${name}\"")),
                        "{name}: {all}"
                    );
                }
            }
            insta::assert_snapshot!(format!("{client}_stdio_{mode}"), all);
        }
    }
}

#[tokio::test]
async fn http_snippets_per_client() {
    for client in CLIENTS {
        let o = print_config(&["--client", client, "--transport", "http"], &webhook_env()).await;
        assert_eq!(o.status.code(), Some(0), "{client}: {}", shown(&o));
        insta::assert_snapshot!(format!("{client}_http"), shown(&o));
    }
}

#[tokio::test]
async fn sign_in_snippets_carry_no_token_and_say_how_to_sign_in() {
    for client in CLIENTS {
        let o = print_config(&["--client", client, "--transport", "http", "--oauth"], &[]).await;
        assert_eq!(o.status.code(), Some(0), "{client}: {}", shown(&o));
        let all = shown(&o);
        assert!(!all.contains("MCP_AUTH_TOKEN"), "{client}: {all}");
        assert!(!all.contains("Authorization"), "{client}: {all}");
        assert!(all.contains("sign"), "{client}: {all}");
        // Sign-in has no token and no variable: a guide that speaks of them misleads.
        let lower = all.to_lowercase();
        for word in ["environment", "env_vars", "bearer", "${"] {
            assert!(!lower.contains(word), "{client} mentions {word}: {all}");
        }
        assert!(all.contains("consent page"), "{client}: {all}");
        let step = match client {
            "claude-code" => "claude mcp login bitrix24",
            "codex" => "codex mcp login bitrix24",
            "cursor" => "Settings > MCP",
            "vscode" => "authenticate",
            _ => "mcp-remote",
        };
        assert!(all.contains(step), "{client}: {all}");
        insta::assert_snapshot!(format!("{client}_http_sign_in"), all);
    }
}

#[tokio::test]
async fn with_documents_off_the_sign_in_guides_drop_the_metadata_document_advice() {
    for client in CLIENTS {
        let args = [
            "--client",
            client,
            "--transport",
            "http",
            "--oauth",
            "--client-metadata-documents",
            "off",
        ];
        let o = print_config(&args, &[]).await;
        assert_eq!(o.status.code(), Some(0), "{client}: {}", shown(&o));
        let all = shown(&o);
        assert!(all.contains("consent page"), "{client}: {all}");
        assert!(!all.contains("metadata document"), "{client}: {all}");
        assert!(
            !all.contains("--oauth-client-registration"),
            "{client}: {all}"
        );
    }
    // With documents on (the default) the advice is there.
    let o = print_config(
        &["--client", "codex", "--transport", "http", "--oauth"],
        &[],
    )
    .await;
    assert!(shown(&o).contains("--oauth-client-registration dcr"));
}

#[tokio::test]
async fn launcher_npx_starts_the_npm_package() {
    for client in CLIENTS {
        let o = print_config(
            &["--client", client, "--launcher", "npx", "--read-only"],
            &[],
        )
        .await;
        assert_eq!(o.status.code(), Some(0), "{client}: {}", shown(&o));
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        let server = if client == "codex" {
            let t: toml::Table = toml::from_str(&stdout).unwrap();
            serde_json::to_value(&t).unwrap()["mcp_servers"]["bitrix24"].clone()
        } else {
            let v: Value = serde_json::from_str(&stdout).unwrap();
            let key = if client == "vscode" {
                "servers"
            } else {
                "mcpServers"
            };
            v[key]["bitrix24"].clone()
        };
        assert_eq!(server["command"], "npx", "{client}: {stdout}");
        assert_eq!(
            server["args"],
            serde_json::json!(["-y", "bitrix24-task-results-mcp", "--read-only"]),
            "{client}: {stdout}"
        );
        insta::assert_snapshot!(format!("{client}_stdio_npx"), shown(&o));
    }
}

#[tokio::test]
async fn flags_travel_as_flags_and_secret_flags_by_name() {
    let o = print_config(
        &[
            "--client",
            "cursor",
            "--plan",
            "enterprise",
            "--webhook-url",
            &format!("https://h.example/rest/1/{HOOK_SECRET}/"),
        ],
        &[],
    )
    .await;
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!shown(&o).contains(HOOK_SECRET), "{}", shown(&o));
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let server = &v["mcpServers"]["bitrix24"];
    assert_eq!(server["args"], serde_json::json!(["--plan", "enterprise"]));
    assert_eq!(
        named("cursor", &stdout),
        BTreeSet::from(["BITRIX24_WEBHOOK_URL".to_string()])
    );
    // A configuration the server would refuse gets no snippet.
    let o = print_config(
        &["--client", "cursor", "--plan", "unlimited", "--burst", "5"],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", shown(&o));
}
