//! The MCP conformance suite's `authorization` command against this server's sign-in
//! (`--sandbox --transport http --oauth`): metadata, then the authorization code grant
//! with `iss`, `state`, the exact `redirect_uri` and `Cache-Control: no-store`. The suite
//! prints an address for a browser and waits on its own callback port; this test plays
//! the browser: the consent page (its cookie, then Allow), the sandbox's sign-in page
//! (its first user), the callback, and on to the suite's port.
//!
//! Ignored by plain `cargo test`: it needs Node.js and the npm registry (the suite, and
//! Node 22 through the `node` package when the installed one is older, as the suite
//! needs). `.ci/run` runs it.

use crate::support::{http_support, sign_in_support};

use std::process::Stdio;
use std::time::Duration;

use http_support::spawn_http;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sign_in_support::{consent_form, free_port, location, no_redirects};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const SUITE: &str = "@modelcontextprotocol/conformance@0.2.0-alpha.12";
/// How long the suite may take in all (npx may download it first).
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);

/// The suite's command line: through `npx`, with Node 22 when the installed Node is older
/// (the suite uses `fs.globSync`).
fn suite() -> Command {
    let major = std::process::Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse::<u32>().ok())
        })
        .expect("Node.js is installed (`node --version`)");
    let mut cmd = Command::new("npx");
    cmd.arg("-y");
    if major < 22 {
        cmd.args(["-p", "node@22", "-p", SUITE, "--", "conformance"]);
    } else {
        cmd.args([SUITE]);
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and the npm registry: .ci/run runs it"]
async fn the_conformance_suites_authorization_server_checks_pass_through_the_consent_page() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("s.db").display());
    let server = spawn_http(&["--sandbox", "--oauth"], &[("MCP_STORE", &store)]).await;
    let issuer = server.base.clone();
    let callback_port = free_port();
    let redirect = format!("http://127.0.0.1:{callback_port}/callback");
    let browser = no_redirects();
    let reg: Value = browser
        .post(format!("{issuer}/register"))
        .json(
            &json!({"redirect_uris": [redirect], "client_name": "MCP conformance suite",
            "token_endpoint_auth_method": "none"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = reg["client_id"].as_str().expect("registered").to_string();

    let mut child = suite()
        .args(["authorization", "--url", &issuer, "--client-id", &client_id])
        .args(["--resource", &server.mcp_url()])
        .args(["-p", &callback_port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("run npx");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut output = String::new();
    let run = async {
        let (mut address, mut browser_done) = (None, None);
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("{line}");
            output.push_str(&line);
            output.push('\n');
            if line.starts_with(&format!("{issuer}/authorize?")) {
                address = Some(line.trim().to_string());
            }
            // The browser comes once the suite listens for its callback.
            if line.starts_with("Callback server started")
                && let Some(address) = address.take()
            {
                browser_done = Some(tokio::spawn(play_browser(browser.clone(), address)));
            }
        }
        browser_done
    };
    let browser_done = tokio::time::timeout(SUITE_TIMEOUT, run)
        .await
        .expect("the suite finished in time")
        .expect("the suite printed an address for the browser and listened");
    browser_done.await.expect("the browser's trip");
    let status = child.wait().await.unwrap();
    assert!(
        output.contains("Total: 3 passed, 0 failed"),
        "the suite's summary: {output}"
    );
    assert!(status.success(), "the suite exited with {status}: {output}");
}

/// The person at the browser: opens `address`, allows on the consent page, picks the
/// sandbox's first user, and follows the redirects to the suite's callback.
async fn play_browser(browser: reqwest::Client, address: String) {
    let page = browser.get(&address).send().await.unwrap();
    let consent = consent_form(page).await;
    let issuer = address.split("/authorize?").next().unwrap().to_string();
    let r = browser
        .post(format!("{issuer}/authorize/consent"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("consent={consent}&decision=allow"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let portal_page = location(&r);
    let html = browser
        .get(&portal_page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let first_user = html
        .split("href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the sandbox's sign-in page lists users")
        .replace("&amp;", "&");
    let chosen = reqwest::Url::parse(&portal_page)
        .unwrap()
        .join(&first_user)
        .unwrap();
    let mut next = chosen.to_string();
    // The portal's redirect to our callback, then our redirect to the suite.
    for _ in 0..3 {
        let r = browser.get(&next).send().await.unwrap();
        if r.status() != StatusCode::FOUND {
            assert!(r.status().is_success(), "{next}: {}", r.status());
            return;
        }
        next = location(&r);
    }
    panic!("too many redirects, last {next}");
}
