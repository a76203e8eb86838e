//! The cost of sign-in per call: `tools/call` over `/mcp` as a signed-in person (bearer
//! token hashed and looked up in the SQLite store, the person's Bitrix24 token taken from
//! memory) against the same call on a webhook server, both on one sandbox, pacing off,
//! calls alternated so that both see the same machine.

use std::time::Instant;

use bitrix24_task_results_mcp::sandbox::{OAuthApp, Sandbox, SandboxOptions};
use serde_json::Value;

use crate::http::{HttpServer, HttpSession, NO_PACING, free_port, http_client, supports};
use crate::stats::Samples;
use crate::{Bins, Opts, Row};

const APP: &str = "local.bench.app";
const SECRET: &str = "bench-app-secret-0123456789";

pub fn run(bins: &Bins, rt: &tokio::runtime::Runtime, opts: &Opts) -> Vec<Row> {
    println!();
    println!("## Sign-in: per-call cost of a signed-in person over a webhook, /mcp, pacing off");
    let measure = "added per call by sign-in (median, p99)".to_string();
    if !supports(bins, &["--oauth", "--store"]) {
        println!("pending: this build has no --oauth");
        return vec![crate::http::pending(measure, "≤ 0.1 ms median")];
    }
    let port = free_port();
    let sandbox = rt
        .block_on(Sandbox::start(SandboxOptions {
            oauth: Some(
                OAuthApp::new(APP, SECRET, "unused-refresh-0123456789")
                    .with_redirect_uri(format!("http://127.0.0.1:{port}/oauth/callback")),
            ),
            ..SandboxOptions::default()
        }))
        .expect("sandbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let base = sandbox.base_url();
    let store = format!("sqlite:{}", dir.path().join("store.sqlite3").display());
    let mut extra = vec!["--oauth"];
    extra.extend_from_slice(&NO_PACING);
    let signed = HttpServer::start_on(
        bins,
        port,
        &extra,
        &[
            ("BITRIX24_PORTAL_URL", &base),
            ("BITRIX24_CLIENT_ID", APP),
            ("BITRIX24_CLIENT_SECRET", SECRET),
            ("BITRIX24_OAUTH_URL", &base),
            ("MCP_STORE", &store),
        ],
    );
    let webhook = HttpServer::start(bins, &sandbox.webhook_url(), &NO_PACING);
    let client = http_client();
    let (ours, theirs) = rt.block_on(async {
        let token = sign_in(&format!("http://127.0.0.1:{port}")).await;
        let mut a = HttpSession::open_as(client.clone(), &signed.url, Some(&token)).await;
        let mut b = HttpSession::open(client.clone(), &webhook.url).await;
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for i in 0..opts.calls + 100 {
            for (session, samples) in [(&mut a, &mut ours), (&mut b, &mut theirs)] {
                let t = Instant::now();
                let ok = session.call("task_result_list", "{\"taskId\":51}").await;
                assert_eq!(ok, Ok(true), "a benchmark call failed");
                if i >= 100 {
                    samples.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
        (Samples::new(ours), Samples::new(theirs))
    });
    drop((signed, webhook));
    sandbox.shutdown();
    let (dm, dp) = (
        (ours.median() - theirs.median()) / 1000.0,
        (ours.p99() - theirs.p99()) / 1000.0,
    );
    println!(
        "signed in: median {:.3} ms, p99 {:.3} ms; webhook: median {:.3} ms, p99 {:.3} ms; {} calls each",
        ours.median() / 1000.0,
        ours.p99() / 1000.0,
        theirs.median() / 1000.0,
        theirs.p99() / 1000.0,
        ours.len()
    );
    vec![Row {
        measure,
        ours: format!("{:.3} ms", ours.median() / 1000.0),
        reference: format!("{:.3} ms (webhook)", theirs.median() / 1000.0),
        result: format!("+{dm:.3} ms, p99 +{dp:.3} ms"),
        target: "≤ 0.1 ms median".into(),
        met: Some(dm <= 0.1),
    }]
}

/// The MCP sign-in of user 1, headless: register, authorize, the sandbox's page, the
/// callback, the token request. Returns the access token.
async fn sign_in(base: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // The consent page binds its form to this browser's cookie.
        .cookie_store(true)
        .build()
        .expect("client");
    let redirect = "http://127.0.0.1:1/cb";
    let reg: Value = http
        .post(format!("{base}/register"))
        .json(&serde_json::json!({"redirect_uris": [redirect]}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("registration");
    let client_id = reg["client_id"].as_str().expect("client_id").to_string();
    let verifier = format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut url = reqwest::Url::parse(&format!("{base}/authorize")).expect("url");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "bench");
    // /authorize -> the consent page (Allow) -> the portal's page (user 1 chosen) -> our
    // callback -> the client.
    let page = http
        .get(url)
        .send()
        .await
        .expect("authorize")
        .text()
        .await
        .expect("the consent page");
    let consent = page
        .split("name=\"consent\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the consent form");
    let allowed = http
        .post(format!("{base}/authorize/consent"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("consent={consent}&decision=allow"))
        .send()
        .await
        .expect("consent");
    let mut next = allowed.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    for hop in 1..3 {
        if hop == 1 {
            next.push_str("&user_id=1");
        }
        let r = http.get(&next).send().await.expect("hop");
        next = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
    }
    let code = reqwest::Url::parse(&next)
        .expect("redirect")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", redirect)
        .append_pair("client_id", &client_id)
        .append_pair("code_verifier", &verifier)
        .finish();
    let tokens: Value = http
        .post(format!("{base}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("tokens");
    tokens["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}
