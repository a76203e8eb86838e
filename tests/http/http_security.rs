//! The HTTP transport's security rules, each on every MCP route (`/mcp`, `/sse`,
//! `/message`): bearer token, Host allow-list, Origin validation, body size limit, and
//! the refusal to listen on a non-loopback address without a token.

use crate::support::http_support;

use http_support::*;
use reqwest::StatusCode;
use serde_json::json;

#[derive(Clone, Copy, Debug)]
enum Route {
    Mcp,
    Sse,
    Message,
}

const ROUTES: [Route; 3] = [Route::Mcp, Route::Sse, Route::Message];

/// A request to `route` as a client would send it, before headers under test.
fn request(server: &HttpServer, route: Route) -> reqwest::RequestBuilder {
    let http = http();
    match route {
        Route::Mcp => http
            .post(server.mcp_url())
            .header("Accept", "application/json, text/event-stream")
            .json(&initialize_body()),
        Route::Sse => http
            .get(format!("{}/sse", server.base))
            .header("Accept", "text/event-stream"),
        // No such session: a request that gets past the checks answers 404.
        Route::Message => http
            .post(format!("{}/message?sessionId=none", server.base))
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})),
    }
}

/// The status a request that passed every check gets on `route`.
fn passed(route: Route) -> StatusCode {
    match route {
        Route::Mcp | Route::Sse => StatusCode::OK,
        Route::Message => StatusCode::NOT_FOUND,
    }
}

#[tokio::test]
async fn every_mcp_route_needs_the_bearer_token() {
    let server = spawn_http(&["--sandbox", "--auth-token", TOKEN], &[]).await;
    for route in ROUTES {
        for (label, auth) in [
            ("no token", None),
            ("wrong token", Some("Bearer test-token-5f2c9a7e41d8b4")),
            ("other scheme", Some("Basic dGVzdDp0ZXN0")),
        ] {
            let mut req = request(&server, route);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let reply = req.send().await.unwrap();
            assert_eq!(reply.status(), 401, "{route:?} {label}");
            let challenge = reply
                .headers()
                .get("www-authenticate")
                .unwrap_or_else(|| panic!("{route:?} {label}: no WWW-Authenticate"))
                .to_str()
                .unwrap();
            assert!(
                challenge.starts_with("Bearer"),
                "{route:?} {label}: {challenge}"
            );
        }
        let reply = request(&server, route)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), passed(route), "{route:?} with the token");
    }

    // rmcp's own client: refused without or with a wrong token, served with it.
    assert!(connect(&server.mcp_url(), None).await.is_err());
    assert!(
        connect(&server.mcp_url(), Some("not-the-token"))
            .await
            .is_err()
    );
    let client = connect(&server.mcp_url(), Some(TOKEN))
        .await
        .expect("with the token");
    assert_eq!(
        client.list_all_tools().await.unwrap().len(),
        bitrix24_task_results_mcp::tools::REGISTRY.len()
    );
    client.cancel().await.unwrap();

    // The health check stays open and says nothing.
    let health = server.healthz().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    let log = server.stderr();
    assert!(
        !log.contains(TOKEN) && !log.contains("5f2c9a7e41d8b4"),
        "token in the log:\n{log}"
    );
}

#[tokio::test]
async fn a_foreign_host_is_refused_on_every_route() {
    let server = spawn_http(&["--sandbox"], &[]).await;
    let port = server.authority().rsplit(':').next().unwrap().to_string();
    for route in ROUTES {
        for host in [
            "evil.example".to_string(),
            format!("evil.example:{port}"),
            format!("192.0.2.7:{port}"),
        ] {
            let reply = request(&server, route)
                .header("Host", &host)
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 403, "{route:?} Host: {host}");
            // rmcp's check judges every route, so every route answers in its words.
            assert_eq!(
                reply.text().await.unwrap(),
                "Forbidden: Host header is not allowed",
                "{route:?} Host: {host}"
            );
        }
        for host in [
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            "localhost".to_string(),
        ] {
            let reply = request(&server, route)
                .header("Host", &host)
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), passed(route), "{route:?} Host: {host}");
        }
    }
}

#[tokio::test]
async fn the_token_does_not_excuse_a_foreign_host() {
    // On /mcp rmcp's Host check runs inside its service, after our bearer check: a
    // request with the token must still meet it.
    let server = spawn_http(&["--sandbox", "--auth-token", TOKEN], &[]).await;
    for route in ROUTES {
        let reply = request(&server, route)
            .bearer_auth(TOKEN)
            .header("Host", "evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 403, "{route:?}");
    }
}

#[tokio::test]
async fn allowed_host_admits_a_name_on_every_route() {
    let server = spawn_http(
        &["--sandbox", "--allowed-host", "mcp.example.com"],
        &[(
            "MCP_ALLOWED_HOSTS",
            "ignored-when-the-flag-is-given.example",
        )],
    )
    .await;
    for route in ROUTES {
        let reply = request(&server, route)
            .header("Host", "mcp.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), passed(route), "{route:?}");
        let reply = request(&server, route)
            .header("Host", "other.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 403, "{route:?}");
    }
    // The environment form, comma-separated.
    let server = spawn_http(
        &["--sandbox"],
        &[("MCP_ALLOWED_HOSTS", "a.example, b.example:9")],
    )
    .await;
    for (host, status) in [
        ("a.example", 200),
        ("b.example:9", 200),
        ("b.example:10", 403),
    ] {
        let reply = request(&server, Route::Sse)
            .header("Host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), status, "Host: {host}");
    }
}

#[tokio::test]
async fn a_foreign_origin_is_refused_on_every_route() {
    let server = spawn_http(
        &["--sandbox", "--allowed-origin", "https://app.example.com"],
        &[],
    )
    .await;
    let own = format!("http://{}", server.authority());
    for route in ROUTES {
        for origin in [
            "http://evil.example",
            "https://app.example.com:8443",
            "null",
        ] {
            let reply = request(&server, route)
                .header("Origin", origin)
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 403, "{route:?} Origin: {origin}");
        }
        for origin in [
            own.as_str(),
            "http://localhost:6274",
            "https://app.example.com",
        ] {
            let reply = request(&server, route)
                .header("Origin", origin)
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), passed(route), "{route:?} Origin: {origin}");
        }
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let server = spawn_http(&["--sandbox"], &[]).await;
    // Over our 1 MiB limit, under axum's and rmcp's own defaults, so only our rule stops it.
    let text = "x".repeat(1536 * 1024);
    let big = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                     "params": {"name": "task_result_add", "arguments": {"taskId": 51, "text": text}}});
    let reply = http()
        .post(server.mcp_url())
        .header("Accept", "application/json, text/event-stream")
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413, "/mcp");

    let mut client = LegacyClient::open(&server.base, None).await;
    client.handshake().await;
    let reply = http()
        .post(format!("{}{}", server.base, client.endpoint))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413, "/message");
    // The session is unharmed.
    let pong = client.request(3, "ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
}

#[tokio::test]
async fn a_non_loopback_address_needs_a_token() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let (status, stderr) = run_to_exit(
            &["--sandbox", "--transport", "http", "--listen", listen],
            &[],
        )
        .await;
        assert_eq!(status.code(), Some(2), "{listen}: {stderr}");
        assert!(
            stderr.contains("refusing to listen") && stderr.contains("MCP_AUTH_TOKEN"),
            "{listen}: {stderr}"
        );
    }
    // With a token it starts, and loopback clients with the token get in.
    let server = spawn_http_on("0.0.0.0:0", &["--sandbox"], &[("MCP_AUTH_TOKEN", TOKEN)]).await;
    let port = server.authority().rsplit(':').next().unwrap();
    let url = format!("http://127.0.0.1:{port}/mcp");
    assert!(connect(&url, None).await.is_err());
    let client = connect(&url, Some(TOKEN)).await.expect("with the token");
    assert_eq!(
        client.list_all_tools().await.unwrap().len(),
        bitrix24_task_results_mcp::tools::REGISTRY.len()
    );
    client.cancel().await.unwrap();
}
