//! The HTTP transport made safe for a team (issue 20), end to end against the binary:
//! a session belongs to the person who opened it (another person's token gets 404 on
//! POST, GET and DELETE and leaves it open), `DELETE /mcp` answers 200 or 404, CORS
//! preflights are answered without a token for allowed origins only, the loopback
//! names each get their own issuer, and connections that send nothing are closed while
//! an event stream stays open.

use crate::support::{http_support, sign_in_support};

use std::time::Duration;

use http_support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sign_in_support::{Client, no_redirects};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `--sandbox --oauth` on a free loopback port, its store in `dir`.
async fn team_server(dir: &tempfile::TempDir, extra: &[&str]) -> HttpServer {
    let store = format!("sqlite:{}", dir.path().join("s.db").display());
    let mut args = vec!["--sandbox", "--oauth"];
    args.extend_from_slice(extra);
    spawn_http(&args, &[("MCP_STORE", &store)]).await
}

/// A request on /mcp with `token` (if any) in session `session` (if any).
fn mcp(
    server: &HttpServer,
    method: reqwest::Method,
    token: Option<&str>,
    session: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut request = no_redirects()
        .request(method, server.mcp_url())
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2025-06-18");
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    if let Some(id) = session {
        request = request.header("Mcp-Session-Id", id);
    }
    request
}

/// initialize + notifications/initialized as the holder of `token`; the session id.
async fn open_session(server: &HttpServer, token: Option<&str>) -> String {
    let reply = mcp(server, reqwest::Method::POST, token, None)
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "initialize");
    let id = reply.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = reply.text().await;
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = mcp(server, reqwest::Method::POST, token, Some(&id))
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    id
}

/// A ping in session `id` as the holder of `token`: status and body.
async fn ping(server: &HttpServer, token: Option<&str>, id: &str) -> (StatusCode, String) {
    let r = mcp(server, reqwest::Method::POST, token, Some(id))
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}))
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap_or_default())
}

async fn delete(server: &HttpServer, token: Option<&str>, id: &str) -> StatusCode {
    mcp(server, reqwest::Method::DELETE, token, Some(id))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_persons_token_on_a_session_gets_404_and_the_session_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let server = team_server(&dir, &[]).await;
    let client = Client::discover_and_register(&server).await;
    let one = client.sign_in(1).await.access;
    let two = client.sign_in(2).await.access;
    let id = open_session(&server, Some(&one)).await;

    let (status, _) = ping(&server, Some(&two), &id).await;
    assert_eq!(status, 404, "POST with another person's token");
    let stream = mcp(&server, reqwest::Method::GET, Some(&two), Some(&id))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 404, "GET with another person's token");
    assert_eq!(
        delete(&server, Some(&two), &id).await,
        404,
        "DELETE with another person's token"
    );

    // The owner's session is as it was: calls and its stream work.
    let (status, body) = ping(&server, Some(&one), &id).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"result\""), "{body}");
    let stream = mcp(&server, reqwest::Method::GET, Some(&one), Some(&id))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200, "the owner's GET stream");
    drop(stream);

    // Logged once per refusal, at warn, without the session id or either token.
    let log = server.stderr();
    assert_eq!(
        log.matches("a session another person opened").count(),
        3,
        "{log}"
    );
    for secret in [&id, &one, &two] {
        assert!(!log.contains(secret.as_str()), "{log}");
    }
    assert_eq!(delete(&server, Some(&one), &id).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_persons_token_on_a_legacy_sse_session_gets_404() {
    let dir = tempfile::tempdir().unwrap();
    let server = team_server(&dir, &[]).await;
    let client = Client::discover_and_register(&server).await;
    let one = client.sign_in(1).await.access;
    let two = client.sign_in(2).await.access;
    let mut legacy = LegacyClient::open(&server.base, Some(&one)).await;
    legacy.handshake().await;

    let intruder = http()
        .post(format!("{}{}", server.base, legacy.endpoint))
        .bearer_auth(&two)
        .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(intruder.status(), 404, "another person's message");

    // The owner's next request is answered on the owner's stream, and only theirs.
    let reply = legacy.request(10, "tools/list", json!({})).await;
    assert!(reply["result"]["tools"].is_array(), "{reply}");
    let log = server.stderr();
    assert_eq!(
        log.matches("a legacy SSE session another person opened")
            .count(),
        1,
        "{log}"
    );
    assert!(!log.contains(&legacy.endpoint), "{log}");
}

#[tokio::test]
async fn delete_answers_200_for_a_session_it_closed_and_404_for_an_unknown_one() {
    let server = spawn_http(&["--sandbox"], &[]).await;
    let id = open_session(&server, None).await;
    assert_eq!(delete(&server, None, &id).await, 200);
    assert_eq!(delete(&server, None, &id).await, 404, "already closed");
    assert_eq!(ping(&server, None, &id).await.0, 404);
    assert_eq!(
        delete(&server, None, "00000000-0000-4000-8000-000000000000").await,
        404,
        "never known"
    );
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_are_answered_without_a_token_for_allowed_origins_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = team_server(&dir, &[]).await;
    let http = no_redirects();
    let allowed = "http://localhost:6274";
    for path in ["/mcp", "/sse", "/message?sessionId=x"] {
        let r = http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", server.base))
            .header("Origin", allowed)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type,mcp-session-id,mcp-protocol-version,last-event-id",
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        assert_eq!(header(&r, "access-control-allow-origin"), allowed, "{path}");
        let headers = header(&r, "access-control-allow-headers");
        for h in [
            "authorization",
            "content-type",
            "mcp-session-id",
            "mcp-protocol-version",
            "last-event-id",
        ] {
            assert!(headers.contains(h), "{path}: {h} in {headers}");
        }
        assert!(
            header(&r, "access-control-allow-methods").contains("post"),
            "{path}"
        );

        let r = http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", server.base))
            .header("Origin", "http://evil.example")
            .header("Access-Control-Request-Method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}: a foreign origin's preflight");
        for h in [
            "access-control-allow-origin",
            "access-control-allow-headers",
            "access-control-allow-methods",
        ] {
            assert!(r.headers().get(h).is_none(), "{path}: {h}");
        }
    }

    // The actual answer (here the 401 that starts a sign-in) is readable by the page.
    let r = http
        .post(server.mcp_url())
        .header("Origin", allowed)
        .header("Accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "access-control-allow-origin"), allowed);
    let exposed = header(&r, "access-control-expose-headers");
    assert!(
        exposed.contains("mcp-session-id") && exposed.contains("www-authenticate"),
        "{exposed}"
    );
    let r = http
        .post(server.mcp_url())
        .header("Origin", "http://evil.example")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

/// The discovery documents and a sign-in through `base` (a loopback name of `server`):
/// the issuer they name, and whether the token works there.
async fn sign_in_through(server: &mut HttpServer, base: &str) -> (String, Option<String>) {
    let real = std::mem::replace(&mut server.base, base.to_string());
    let client = Client::discover_and_register(server).await;
    let authorized = client.authorize(1).await;
    let tokens = client.exchange(&authorized).await;
    let session = connect(&server.mcp_url(), Some(&tokens.access))
        .await
        .expect("the token works under the name it was got through");
    let listed = session.list_all_tools().await.expect("tools/list");
    assert!(!listed.is_empty());
    session.cancel().await.ok();
    server.base = real;
    (client.base, authorized.iss)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_loopback_name_gets_its_own_issuer_and_a_working_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = team_server(&dir, &[]).await;
    let port = server.authority().rsplit(':').next().unwrap().to_string();
    for name in ["localhost", "127.0.0.1"] {
        let base = format!("http://{name}:{port}");
        // The challenge names this name's metadata, which names this name's issuer.
        let r = no_redirects()
            .post(format!("{base}/mcp"))
            .json(&initialize_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(
            header(&r, "www-authenticate").contains(&format!(
                "resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\""
            )),
            "{name}: {:?}",
            r.headers()
        );
        let (issuer, iss) = sign_in_through(&mut server, &base).await;
        assert_eq!(issuer, base, "the issuer under {name}");
        assert_eq!(iss.as_deref(), Some(base.as_str()), "iss under {name}");
    }
}

#[tokio::test]
async fn with_a_public_url_the_issuer_stays_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let port = sign_in_support::free_port();
    let public = format!("http://127.0.0.1:{port}");
    let store = format!("sqlite:{}", dir.path().join("s.db").display());
    let server = spawn_http_on(
        &format!("127.0.0.1:{port}"),
        &["--sandbox", "--oauth", "--public-url", &public],
        &[("MCP_STORE", &store)],
    )
    .await;
    let _ = &server;
    let prm: Value = http()
        .get(format!(
            "http://localhost:{port}/.well-known/oauth-protected-resource/mcp"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], json!(format!("{public}/mcp")));
    assert_eq!(prm["authorization_servers"][0], json!(public));
}

/// Reads until the server closes the connection; panics if it never does.
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(HANG, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for {HANG:?}"),
        }
    }
}

#[tokio::test]
async fn silent_connections_are_closed_while_an_event_stream_stays_open() {
    let server = spawn_http(&["--sandbox", "--http-header-timeout", "1"], &[]).await;

    // Half a request: the head never ends.
    let mut half = tokio::net::TcpStream::connect(server.authority())
        .await
        .unwrap();
    half.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
        .await
        .unwrap();
    closed_by_server(&mut half).await;

    // A keep-alive connection, idle after its answer.
    let mut idle = tokio::net::TcpStream::connect(server.authority())
        .await
        .unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&closed_by_server(&mut idle).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("connection: close"), "{answer}");

    // An event stream outlives both bounds several times over and still delivers.
    let mut legacy = LegacyClient::open(&server.base, None).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let init = legacy.handshake().await;
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    let reply = legacy.request(2, "tools/list", json!({})).await;
    assert!(reply["result"]["tools"].is_array(), "{reply}");
}

#[tokio::test]
async fn past_the_connection_bound_a_connection_waits_for_a_free_one() {
    let server = spawn_http(&["--sandbox", "--max-connections", "1"], &[]).await;
    let mut first = tokio::net::TcpStream::connect(server.authority())
        .await
        .unwrap();
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    // The second connection is not served while the first stays open...
    let mut second = tokio::net::TcpStream::connect(server.authority())
        .await
        .unwrap();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf)).await;
    assert!(early.is_err(), "answered past the bound: {early:?}");
    // ...and is once it closes.
    drop(first);
    let answer = String::from_utf8_lossy(&closed_by_server(&mut second).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
