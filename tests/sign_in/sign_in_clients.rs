//! How clients identify themselves to the sign-in server, end to end against the spawned
//! binary and the sandbox portal: client metadata documents (the fence around their
//! fetch, the setting that turns them off, what is logged and shown when one cannot be
//! used), what registration accepts, and the per-source and per-client limits.

use crate::support::{common, http_support, sign_in_support};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::header;
use http_support::HttpServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sign_in_support::{
    CLIENT_REDIRECT, Client, Team, free_port, location, no_redirects, pkce, query, redacted,
};

/// A document server on loopback counting every request it gets: `/good.json` names
/// itself and the test's redirect URI; anything else is 404.
struct Documents {
    base: String,
    hits: Arc<AtomicUsize>,
}

impl Documents {
    async fn start() -> Documents {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let good = json!({"client_id": format!("{base}/good.json"), "client_name": "document test",
            "redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "none"});
        let counter = hits.clone();
        let app = axum::Router::new()
            .route(
                "/good.json",
                axum::routing::get(move || async move { axum::Json(good) }),
            )
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    next.run(req)
                },
            ));
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Documents { base, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// `/authorize` for the client `client_id`, with the standard parameters.
async fn authorize_as(server: &HttpServer, client_id: &str) -> reqwest::Response {
    let c = Client {
        base: server.base.clone(),
        client_id: client_id.to_string(),
        http: no_redirects(),
    };
    let (_, challenge) = pkce();
    c.authorize_raw(&c.authorize_params(&challenge, "st-clients"))
        .await
}

/// The answer is an HTML page with `status` (never a redirect); its text.
async fn page(r: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(
        r.headers().get(header::LOCATION),
        None,
        "a page, not a redirect"
    );
    let got = r.status();
    let html = r.text().await.unwrap();
    assert_eq!(got, status, "{html}");
    assert!(html.starts_with("<!doctype html>"), "{html}");
    html
}

/// The answer sends the browser on to the portal's sign-in page.
fn to_portal(r: &reqwest::Response, server: &HttpServer) {
    assert_eq!(r.status(), StatusCode::FOUND);
    let to = location(r);
    assert!(!to.starts_with(CLIENT_REDIRECT), "{to}");
    assert!(!to.starts_with(&server.base), "{to}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_referencing_and_malformed_document_ids_are_refused_without_any_fetch() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let docs = Documents::start().await;
    let good = format!("{}/good.json", docs.base);
    let nested = format!("{}/authorize?client_id={good}", server.base);
    let localhost = format!("http://localhost:{}/authorize?client_id={nested}", env.port);
    // The review's one-request denial of service: the server fetched itself, nested.
    let html = page(
        authorize_as(&server, &nested).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(html.contains("cannot be used"), "{html}");
    assert_eq!(docs.hits(), 0, "the nested document was fetched");
    for id in [
        format!("{nested}&response_type=code"),
        localhost,
        format!("{}/good.json", server.base),
        format!("{good}?x=1"),
        format!("{good}#f"),
        format!("{}/{}", docs.base, "a".repeat(300)),
        format!("{}/x/../good.json", docs.base),
        format!("{}/%2e%2e/good.json", docs.base),
        format!("{good}\n2026-12-07T17:20:00Z  INFO person signed in client=FORGED"),
        good.replace("http://", "http://user@"),
    ] {
        let html = page(authorize_as(&server, &id).await, StatusCode::BAD_REQUEST).await;
        assert!(html.contains("cannot be used"), "{id:?}: {html}");
    }
    assert_eq!(docs.hits(), 0, "nothing may be fetched for these ids");

    // A document fetch that reaches /authorize never fetches in turn.
    let mut nested_fetch = reqwest::Url::parse(&format!("{}/authorize", server.base)).unwrap();
    nested_fetch
        .query_pairs_mut()
        .append_pair("client_id", &good);
    let r = no_redirects()
        .get(nested_fetch)
        .header("x-mcp-client-metadata-fetch", "1")
        .send()
        .await
        .unwrap();
    page(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(docs.hits(), 0);

    // The genuine document is fetched (once: it is cached).
    to_portal(&authorize_as(&server, &good).await, &server);
    to_portal(&authorize_as(&server, &good).await, &server);
    assert_eq!(docs.hits(), 1);

    // The forged line never reaches the log as a line of its own.
    let log = server.stderr();
    assert!(
        !log.lines().any(|l| l.starts_with("2026-12-07T17:20:00Z")),
        "{log}"
    );
    assert!(log.contains("\\n2026-12-07T17:20:00Z"), "{log}");
}

/// A proxy that counts the connections it gets and answers none of them.
async fn recording_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_fetched_directly_never_through_an_environment_proxy() {
    let env = Team::new().await;
    let (proxy, seen) = recording_proxy().await;
    let server = env
        .server(
            &[],
            &[
                ("HTTPS_PROXY", &proxy),
                ("HTTP_PROXY", &proxy),
                ("ALL_PROXY", &proxy),
                ("https_proxy", &proxy),
                ("http_proxy", &proxy),
                ("all_proxy", &proxy),
                ("NO_PROXY", ""),
                ("no_proxy", ""),
            ],
        )
        .await;
    let docs = Documents::start().await;
    let r = authorize_as(&server, &format!("{}/good.json", docs.base)).await;
    to_portal(&r, &server);
    assert_eq!(docs.hits(), 1);
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the proxy saw a connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_documents_off_clients_are_told_to_register_and_can() {
    let env = Team::new().await;
    let server = env
        .server(&[], &[("MCP_CLIENT_METADATA_DOCUMENTS", "off")])
        .await;
    let asm: Value = no_redirects()
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            server.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(asm["client_id_metadata_document_supported"], json!(false));
    insta::assert_json_snapshot!(
        "authorization_server_documents_off",
        redacted(&asm, &server.base)
    );

    let docs = Documents::start().await;
    let r = authorize_as(&server, &format!("{}/good.json", docs.base)).await;
    let html = page(r, StatusCode::BAD_REQUEST).await;
    assert!(html.contains("turned off"), "{html}");
    assert!(html.contains("--client-metadata-documents off"), "{html}");
    assert!(html.contains("registers here"), "{html}");
    assert_eq!(docs.hits(), 0);

    let client = Client::discover_and_register(&server).await;
    let t = client.sign_in(1).await;
    assert_eq!(
        sign_in_support::mcp_status(&server.mcp_url(), &t.access).await,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_document_is_logged_with_its_cause_and_the_page_names_it() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let docs = Documents::start().await;

    let closed = format!("http://127.0.0.1:{}/client.json", free_port());
    let html = page(
        authorize_as(&server, &closed).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(html.contains("could not connect"), "{html}");
    assert!(html.contains("--client-metadata-documents off"), "{html}");
    assert!(!html.contains("error sending request"), "{html}");
    server.wait_for_log("cause=\"connect\"").await;

    let missing = format!("{}/missing.json", docs.base);
    let html = page(
        authorize_as(&server, &missing).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(html.contains("not with the document"), "{html}");
    assert!(
        !html.contains("404"),
        "no upstream status on the page: {html}"
    );
    server.wait_for_log("cause=\"status\"").await;

    let log = server.stderr();
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains("a client metadata document cannot be used") && l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}:\n{log}"))
            .to_string()
    };
    let connect = line("cause=\"connect\"");
    assert!(connect.contains("WARN"), "{connect}");
    assert!(connect.contains(&format!("url=\"{closed}\"")), "{connect}");
    let status = line("cause=\"status\"");
    assert!(status.contains("WARN"), "{status}");
    assert!(status.contains("HTTP 404"), "{status}");
}

/// `POST /register` with `body`, from `forwarded_for` when given; status and JSON.
async fn register(
    server: &HttpServer,
    body: &Value,
    forwarded_for: Option<&str>,
) -> (StatusCode, Value, Option<String>) {
    let mut req = no_redirects()
        .post(format!("{}/register", server.base))
        .json(body);
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", ip);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let retry = r
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.json().await.unwrap_or(Value::Null), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_disguised_foreign_and_oversized_redirects() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let long = format!("https://a.example/{}", "a".repeat(3000));
    for (uris, error) in [
        (
            json!(["https://mcp.example.com:443@evil.example/y"]),
            "invalid_redirect_uri",
        ),
        (
            json!(["https://user@app.example/cb"]),
            "invalid_redirect_uri",
        ),
        (json!(["ms-msdt:/id PCWDiagnostic"]), "invalid_redirect_uri"),
        (json!(["myapp://callback"]), "invalid_redirect_uri"),
        (json!([long]), "invalid_redirect_uri"),
        (json!(vec![CLIENT_REDIRECT; 11]), "invalid_redirect_uri"),
        (json!([]), "invalid_redirect_uri"),
    ] {
        let (status, body, _) = register(&server, &json!({"redirect_uris": uris}), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uris}: {body}");
        assert_eq!(body["error"], json!(error), "{uris}: {body}");
    }
    for name in [
        "a".repeat(201),
        "Claude\nINFO forged".to_string(),
        "Claude \u{202e}edoC".to_string(),
    ] {
        let (status, body, _) = register(
            &server,
            &json!({"redirect_uris": [CLIENT_REDIRECT], "client_name": name}),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], json!("invalid_client_metadata"), "{body}");
    }
    let many_long: Vec<String> = (0..10)
        .map(|n| format!("https://a.example/{n}/{}", "a".repeat(1500)))
        .collect();
    let (status, body, _) = register(&server, &json!({"redirect_uris": many_long}), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    for uri in [
        "cursor://anysphere.cursor-mcp/oauth/callback",
        "com.example.app:/oauth2redirect",
        "http://127.0.0.1:33418",
        "https://vscode.dev/redirect",
    ] {
        let (status, body, _) = register(
            &server,
            &json!({"redirect_uris": [uri], "client_name": "Cursor"}),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{uri}: {body}");
    }
}

/// Registers from `source` until one is refused; how many were accepted, and the
/// refusal's body and Retry-After.
async fn register_until_refused(server: &HttpServer, source: &str) -> (usize, Value, String) {
    let body = json!({"redirect_uris": [CLIENT_REDIRECT]});
    for accepted in 0..60 {
        let (status, answer, retry) = register(server, &body, Some(source)).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return (accepted, answer, retry.expect("Retry-After"));
        }
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    panic!("60 registrations from {source} were all accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_limited_per_source_and_forwarded_sources_only_behind_a_trusted_proxy() {
    let env = Team::new().await;
    let behind_proxy = env
        .server(&[], &[("MCP_TRUSTED_PROXIES", "127.0.0.1")])
        .await;
    let (accepted, body, retry) = register_until_refused(&behind_proxy, "203.0.113.1").await;
    assert!(accepted >= 20, "{accepted}");
    assert_eq!(body["error"], json!("temporarily_unavailable"), "{body}");
    assert!(retry.parse::<u64>().unwrap() > 0, "{retry}");
    // Another address behind the same proxy has its own budget.
    let (status, body, _) = register(
        &behind_proxy,
        &json!({"redirect_uris": [CLIENT_REDIRECT]}),
        Some("203.0.113.2"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    drop(behind_proxy);

    // Without a trusted proxy the header is the client's own claim: every request
    // counts against the peer, whatever it says.
    let direct = Team::new().await.server(&[], &[]).await;
    let body = json!({"redirect_uris": [CLIENT_REDIRECT]});
    let mut refused = false;
    for n in 0..60 {
        let (status, _, _) = register(&direct, &body, Some(&format!("198.51.100.{n}"))).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(n >= 20, "{n}");
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "the forwarded header of an untrusted peer was believed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_started_are_limited_per_source() {
    let env = Team::new().await;
    let server = env
        .server(&[], &[("MCP_TRUSTED_PROXIES", "127.0.0.1")])
        .await;
    let client = Client::discover_and_register(&server).await;
    // This browser approves the client first, so /authorize goes on to the portal.
    client.sign_in(1).await;
    let (_, challenge) = pkce();
    let params = client.authorize_params(&challenge, "st-limit");
    let mut url = reqwest::Url::parse(&format!("{}/authorize", server.base)).unwrap();
    url.query_pairs_mut().extend_pairs(&params);
    let from = |ip: &'static str| {
        client
            .http
            .get(url.clone())
            .header("x-forwarded-for", ip)
            .send()
    };
    let mut accepted = 0;
    let refusal = loop {
        let r = from("203.0.113.9").await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            break r;
        }
        to_portal(&r, &server);
        accepted += 1;
        assert!(accepted < 200, "never limited");
    };
    assert!(accepted >= 60, "{accepted}");
    assert!(refusal.headers().contains_key(header::RETRY_AFTER));
    let html = page(refusal, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(html.contains("Too many sign-ins"), "{html}");
    to_portal(&from("203.0.113.10").await.unwrap(), &server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pending_pool_still_has_a_global_bound() {
    // Spread over 200 addresses and ten clients, each within its own limits, 10,000
    // pending sign-ins fill the store's pool; the next is temporarily_unavailable.
    let env = Team::new().await;
    let server = env
        .server(&[], &[("MCP_TRUSTED_PROXIES", "127.0.0.1")])
        .await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        let client = Client::discover_and_register(&server).await;
        // This browser approves the client first, so /authorize goes on to the portal.
        client.sign_in(1).await;
        clients.push(Arc::new(client));
    }
    let (_, challenge) = pkce();
    let mut workers = Vec::new();
    for source in 0..200 {
        let client = clients[source % clients.len()].clone();
        let params = client.authorize_params(&challenge, "st-full");
        workers.push(tokio::spawn(async move {
            let mut url = reqwest::Url::parse(&format!("{}/authorize", client.base)).unwrap();
            url.query_pairs_mut().extend_pairs(&params);
            for _ in 0..50 {
                let r = client
                    .http
                    .get(url.clone())
                    .header("x-forwarded-for", format!("198.18.{}.1", source))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::FOUND);
                assert!(!location(&r).starts_with(CLIENT_REDIRECT), "a portal page");
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let client = &clients[0];
    let mut url = reqwest::Url::parse(&format!("{}/authorize", client.base)).unwrap();
    url.query_pairs_mut()
        .extend_pairs(client.authorize_params(&challenge, "st-full"));
    let r = client
        .http
        .get(url)
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let q = query(&location(&r));
    assert_eq!(
        q.get("error").map(String::as_str),
        Some("temporarily_unavailable")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_the_documents_setting_and_whether_they_can_be_fetched() {
    let env = Team::new().await;
    let vars = env.vars();
    let doctor = |documents: &'static str| {
        let mut env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.push(("MCP_CLIENT_METADATA_DOCUMENTS", documents));
        let cmd = common::command(
            &[
                "doctor",
                "--transport",
                "http",
                "--oauth",
                "--listen",
                "127.0.0.1:8123",
            ],
            &env,
        );
        async move {
            let mut cmd = cmd;
            let out = cmd.output().await.unwrap();
            (out.status, String::from_utf8_lossy(&out.stdout).to_string())
        }
    };
    let (status, text) = doctor("on").await;
    assert!(status.success(), "{text}");
    assert!(text.contains("client metadata documents on"), "{text}");
    for url in [
        "https://claude.ai/oauth/claude-code-client-metadata",
        "https://chatgpt.com/oauth/codex/client.json",
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(url))
            .unwrap_or_else(|| panic!("no line for {url}:\n{text}"));
        // This machine may or may not reach the internet; either way the report says
        // which, and what to do when it cannot.
        if line.contains("cannot be fetched") {
            assert!(line.contains("warn"), "{line}");
        } else {
            assert!(line.contains("can be fetched"), "{line}");
        }
    }
    if text.contains("cannot be fetched (dns)")
        || text.contains("cannot be fetched (connect)")
        || text.contains("cannot be fetched (timeout)")
    {
        assert!(
            text.contains("start the server with --client-metadata-documents off"),
            "{text}"
        );
    }
    let (status, text) = doctor("off").await;
    assert!(status.success(), "{text}");
    assert!(text.contains("client metadata documents off"), "{text}");
    assert!(!text.contains("claude.ai"), "{text}");
}
