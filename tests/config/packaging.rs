//! Packaging: the versions every package declares follow Cargo.toml, and (with Node.js)
//! the artifacts of `cargo xtask dist` install and answer MCP as users run them: the npm
//! packages through the launcher, the bundle the way its manifest says.

use crate::support::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use bitrix24_task_results_mcp::sandbox::{Sandbox, SandboxOptions};
use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;
use serde_json::Value;
use tokio::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PLATFORMS: [&str; 5] = [
    "darwin-arm64",
    "darwin-x64",
    "linux-arm64",
    "linux-x64",
    "win32-x64",
];

fn json(path: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_package_declares_the_version_of_cargo_toml() {
    let version = env!("CARGO_PKG_VERSION");
    let manifest = json("manifest.json");
    assert_eq!(manifest["version"], version, "manifest.json");

    let server = json("server.json");
    assert_eq!(server["version"], version, "server.json");
    for package in server["packages"].as_array().expect("server.json packages") {
        assert_eq!(package["version"], version, "server.json: {package}");
        if package["registryType"] == "mcpb" {
            let url = package["identifier"].as_str().unwrap();
            assert!(url.contains(&format!("/v{version}/")), "{url}");
            assert!(url.contains(&format!("-{version}-")), "{url}");
        }
    }

    let main = json("npm/bitrix24-task-results-mcp/package.json");
    assert_eq!(main["version"], version, "npm main package");
    assert_eq!(
        main["mcpName"], server["name"],
        "the registry checks mcpName"
    );
    let deps = main["optionalDependencies"].as_object().unwrap();
    let launcher = std::fs::read_to_string(
        Path::new(ROOT).join("npm/bitrix24-task-results-mcp/bin/bitrix24-task-results-mcp.js"),
    )
    .unwrap();
    assert_eq!(deps.len(), PLATFORMS.len());
    for platform in PLATFORMS {
        let name = format!("@bitrix24-task-results-mcp/{platform}");
        assert_eq!(deps[&name], version, "optionalDependencies {name}");
        assert!(
            launcher.contains(&format!("\"{platform}\": \"{name}\"")),
            "the launcher knows {platform}"
        );
        let package = json(&format!("npm/platforms/{platform}/package.json"));
        assert_eq!(package["name"], name);
        assert_eq!(package["version"], version, "{name}");
        let (os, cpu) = platform.split_once('-').unwrap();
        assert_eq!(package["os"], serde_json::json!([os]), "{name}");
        assert_eq!(package["cpu"], serde_json::json!([cpu]), "{name}");
    }
}

/// Runs `cmd`, fails the test with its output unless it succeeds; returns stdout.
fn run(cmd: &mut std::process::Command) -> String {
    let output = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `cargo xtask dist` into `out`; returns the artifacts it printed.
fn xtask_dist(out: &Path) -> Vec<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    // Cargo's per-package variables for this test would reach the inner build's build
    // scripts and rebuild the TLS stack (see benches/perf/main.rs).
    for (k, _) in std::env::vars() {
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
            || matches!(
                k.as_str(),
                "OUT_DIR" | "CARGO_TARGET_TMPDIR" | "CARGO_RUSTC_CURRENT_DIR"
            )
        {
            cmd.env_remove(k);
        }
    }
    // The test checks the packaging, not the optimizer: by default it packs the dev binary
    // `cargo test` just built instead of building the dist profile (~9 min on 2 cores).
    let profile = std::env::var("PACKAGING_PROFILE").unwrap_or_else(|_| "dev".into());
    cmd.current_dir(ROOT)
        .args(["xtask", "dist", "--out"])
        .arg(out)
        .args(["--profile", &profile]);
    run(&mut cmd).lines().map(PathBuf::from).collect()
}

fn artifact(artifacts: &[PathBuf], pred: impl Fn(&str) -> bool) -> &Path {
    artifacts
        .iter()
        .find(|p| pred(p.file_name().unwrap().to_str().unwrap()))
        .unwrap_or_else(|| panic!("no such artifact among {artifacts:?}"))
}

/// Speaks MCP over stdio to `program` (with a clean portal environment) and returns the
/// names of the tools it offers.
async fn tool_names(
    program: &Path,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut cmd = Command::new(program);
    for var in common::PORTAL_VARS {
        cmd.env_remove(var);
    }
    cmd.args(args).envs(env);
    let (transport, _stderr) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let client = ().serve(transport).await.expect("MCP handshake");
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    let _ = client.cancel().await;
    names
}

/// A client stopping the server signals the launcher's pid: the server must see the
/// signal (it logs it and exits 0), and the launcher must exit as the server did.
#[cfg(unix)]
async fn sigterm_reaches_the_server(launcher: &Path, env: &BTreeMap<String, String>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut cmd = Command::new(launcher);
    for var in common::PORTAL_VARS {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"0\"}}}\n",
        )
        .await
        .unwrap();
    // The answer means the server is up, its signal handlers with it.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    assert!(line.contains("\"id\":1"), "{line}");
    let pid = child.id().unwrap().to_string();
    run(std::process::Command::new("kill").args(["-TERM", &pid]));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    let status = child.wait().await.unwrap();
    drop(stdin);
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("signal received"), "{stderr}");
}

/// `${user_config.KEY}` and `${__dirname}` replaced as Claude Desktop does.
fn substitute(s: &str, dir: &Path, user: &BTreeMap<&str, String>) -> String {
    let mut s = s.replace("${__dirname}", dir.to_str().unwrap());
    for (k, v) in user {
        s = s.replace(&format!("${{user_config.{k}}}"), v);
    }
    assert!(!s.contains("${"), "unsubstituted variable in {s}");
    s
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Node.js and npm (and the npm registry for mcpb): .ci/run runs it"]
async fn dist_artifacts_install_and_answer_tools_list() {
    let version = env!("CARGO_PKG_VERSION");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("dist");
    let artifacts = xtask_dist(&out);
    let main_tgz = artifact(&artifacts, |n| {
        n == format!("bitrix24-task-results-mcp-{version}.tgz")
    });
    let plat_tgz = artifact(&artifacts, |n| n.contains("-linux-") && n.ends_with(".tgz"));
    let mcpb = artifact(&artifacts, |n| n.ends_with(".mcpb"));
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    for a in [main_tgz, plat_tgz, mcpb] {
        assert!(
            sums.contains(a.file_name().unwrap().to_str().unwrap()),
            "{sums}"
        );
    }

    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let portal = BTreeMap::from([("BITRIX24_WEBHOOK_URL".to_string(), sandbox.webhook_url())]);
    let all = tool_names(Path::new(common::BIN), &[], &portal).await;
    assert!(all.contains(&"task_result_add".to_string()), "{all:?}");

    // npm: both packages into a fresh global prefix, as `npx` would put them in its cache.
    // Optional dependencies are left out: the other platforms' packages are not published
    // from here, and the linux one is installed from its tarball.
    let prefix = tmp.path().join("prefix");
    run(std::process::Command::new("npm")
        .args([
            "install",
            "--global",
            "--omit=optional",
            "--no-audit",
            "--no-fund",
            "--prefix",
        ])
        .arg(&prefix)
        .arg(plat_tgz)
        .arg(main_tgz));
    let launcher = prefix.join("bin/bitrix24-task-results-mcp");
    let printed = run(std::process::Command::new(&launcher).arg("--version"));
    assert!(printed.contains(version), "--version printed {printed:?}");
    // Exit codes pass through: a usage error is clap's exit 2, as with the binary itself.
    let bad = std::process::Command::new(&launcher)
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(bad.stdout.is_empty(), "stdout is the protocol's: {bad:?}");
    assert_eq!(tool_names(&launcher, &[], &portal).await, all);
    #[cfg(unix)]
    sigterm_reaches_the_server(&launcher, &portal).await;

    // The bundle: unpack, validate, start as the manifest says.
    let unpacked = tmp.path().join("bundle");
    let mcpb_cli = ["-y", "@anthropic-ai/mcpb@2.1.2"];
    run(std::process::Command::new("npx")
        .args(mcpb_cli)
        .arg("unpack")
        .arg(mcpb)
        .arg(&unpacked));
    run(std::process::Command::new("npx")
        .args(mcpb_cli)
        .arg("validate")
        .arg(unpacked.join("manifest.json")));
    let text = std::fs::read_to_string(unpacked.join("manifest.json")).unwrap();
    let manifest: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(manifest["version"], version);
    assert_eq!(manifest["server"]["type"], "binary");
    assert_eq!(manifest["user_config"]["webhook_url"]["sensitive"], true);
    // A user's choices: read-only on, so the answer shows the options reach the server.
    let user = BTreeMap::from([
        ("webhook_url", sandbox.webhook_url()),
        ("read_only", "true".to_string()),
        ("plan", "enterprise".to_string()),
    ]);
    let config = &manifest["server"]["mcp_config"];
    let command = substitute(config["command"].as_str().unwrap(), &unpacked, &user);
    let args: Vec<String> = config["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| substitute(a.as_str().unwrap(), &unpacked, &user))
        .collect();
    let env: BTreeMap<String, String> = config["env"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), substitute(v.as_str().unwrap(), &unpacked, &user)))
        .collect();
    assert_eq!(
        tool_names(Path::new(&command), &args, &env).await,
        [
            "task_chat_messages_list",
            "task_get",
            "task_result_list",
            "task_search"
        ]
    );
}
