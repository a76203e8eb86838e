//! A headless MCP client's sign-in, driven with reqwest the way Claude Code or the
//! Python SDK do it: the 401 challenge, both metadata documents, registration, PKCE,
//! the browser's redirects through the portal's sign-in page (the sandbox's, which lists
//! its users), and the token request.
#![allow(dead_code)]

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::http_support::{self, HttpServer, initialize_body};

/// Where the test client says it listens; nothing listens: the test reads the
/// redirect's Location instead of following it.
pub const CLIENT_REDIRECT: &str = "http://127.0.0.1:1/callback";

/// A client registered with the server.
pub struct Client {
    pub base: String,
    pub client_id: String,
    pub http: reqwest::Client,
}

/// What the token endpoint gave.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub expires_in: i64,
}

/// A code on its way back to the client, with what the token request needs.
pub struct Authorized {
    pub code: String,
    pub verifier: String,
    pub state: String,
    pub iss: Option<String>,
}

/// reqwest that never follows redirects, as a test of each hop needs; it keeps cookies
/// like a browser (one jar per client made, shared by its clones), so the consent page's
/// cookies reach the form's POST and a remembered approval the next `/authorize`.
pub fn no_redirects() -> reqwest::Client {
    let _ = http_support::http();
    reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// The query parameters of a URL.
pub fn query(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url)
        .expect("a URL")
        .query_pairs()
        .into_owned()
        .collect()
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get(reqwest::header::LOCATION)
        .unwrap_or_else(|| panic!("no Location on HTTP {}", r.status()))
        .to_str()
        .unwrap()
        .to_string()
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = format!("v-{}-{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

impl Client {
    /// Discovers the server from its 401 and registers, as an MCP client does first.
    pub async fn discover_and_register(server: &HttpServer) -> Client {
        let http = no_redirects();
        let r = http
            .post(server.mcp_url())
            .header("accept", "application/json, text/event-stream")
            .json(&initialize_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        let prm_url = challenge
            .split("resource_metadata=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("resource_metadata in the challenge")
            .to_string();
        let prm: Value = http
            .get(&prm_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(prm["resource"], json!(server.mcp_url()));
        let issuer = prm["authorization_servers"][0]
            .as_str()
            .unwrap()
            .to_string();
        let meta: Value = http
            .get(format!("{issuer}/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(meta["issuer"], json!(issuer));
        let reg = http
            .post(meta["registration_endpoint"].as_str().unwrap())
            .json(
                &json!({"redirect_uris": [CLIENT_REDIRECT], "client_name": "sign-in test",
                "token_endpoint_auth_method": "none"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(reg.status(), StatusCode::CREATED);
        let reg: Value = reg.json().await.unwrap();
        Client {
            base: issuer,
            client_id: reg["client_id"].as_str().unwrap().to_string(),
            http,
        }
    }

    /// The standard authorization request's parameters.
    pub fn authorize_params(&self, challenge: &str, state: &str) -> Vec<(String, String)> {
        [
            ("response_type", "code"),
            ("client_id", &self.client_id),
            ("redirect_uri", CLIENT_REDIRECT),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("state", state),
            ("scope", "task_results"),
            ("resource", &format!("{}/mcp", self.base)),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// `/authorize` with `params` as a person who allows the client: when the consent
    /// page shows (checked by [`consent_form`]), its Allow is posted and that answer
    /// returned; otherwise (an error page, a redirect) the answer of `/authorize`.
    pub async fn authorize_raw(&self, params: &[(String, String)]) -> reqwest::Response {
        let r = self.authorize_page(params).await;
        if r.status() != StatusCode::OK {
            return r;
        }
        let consent = consent_form(r).await;
        self.answer_consent(&consent, "allow").await
    }

    /// `/authorize` with `params`, its answer as is (the consent page, for a client this
    /// browser has not approved).
    pub async fn authorize_page(&self, params: &[(String, String)]) -> reqwest::Response {
        let mut url = reqwest::Url::parse(&format!("{}/authorize", self.base)).unwrap();
        url.query_pairs_mut().extend_pairs(params);
        self.http.get(url).send().await.unwrap()
    }

    /// Posts the consent page's form with `decision` (`allow` or `deny`) from this
    /// client's browser (its cookies).
    pub async fn answer_consent(&self, consent: &str, decision: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/authorize/consent", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[("consent", consent), ("decision", decision)]))
            .send()
            .await
            .unwrap()
    }

    /// The browser's whole trip: /authorize, the portal's page (user `user_id` chosen),
    /// the callback; ends at the client's redirect URI with our code.
    pub async fn authorize(&self, user_id: i64) -> Authorized {
        let (verifier, challenge) = pkce();
        let state = format!("st-{}", uuid::Uuid::new_v4());
        let r = self
            .authorize_raw(&self.authorize_params(&challenge, &state))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::FOUND,
            "authorize: {:?}",
            r.text().await
        );
        let portal_page = location(&r);
        let back = self.through_portal(&portal_page, user_id).await;
        let q = query(&back);
        assert!(back.starts_with(CLIENT_REDIRECT), "{back}");
        assert_eq!(q.get("state"), Some(&state));
        Authorized {
            code: q.get("code").cloned().expect("a code"),
            verifier,
            state,
            iss: q.get("iss").cloned(),
        }
    }

    /// From the portal's sign-in page (user `user_id` chosen) through our callback; the
    /// Location the callback answers with.
    pub async fn through_portal(&self, portal_page: &str, user_id: i64) -> String {
        let page = self.http.get(portal_page).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(
            html.contains("user_id="),
            "the sign-in page lists users: {html}"
        );
        let chosen = self
            .http
            .get(format!("{portal_page}&user_id={user_id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(chosen.status(), StatusCode::FOUND);
        let callback = location(&chosen);
        assert!(callback.contains("/oauth/callback"), "{callback}");
        let r = self.http.get(&callback).send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::FOUND,
            "callback: {:?}",
            r.text().await
        );
        location(&r)
    }

    /// `/token` with `form`; status and JSON body.
    pub async fn token_raw(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/token", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(form))
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Exchanges an authorized code for tokens.
    pub async fn exchange(&self, a: &Authorized) -> Tokens {
        let resource = format!("{}/mcp", self.base);
        let (status, body) = self
            .token_raw(&[
                ("grant_type", "authorization_code"),
                ("code", &a.code),
                ("redirect_uri", CLIENT_REDIRECT),
                ("client_id", &self.client_id),
                ("code_verifier", &a.verifier),
                ("resource", &resource),
            ])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens(&body)
    }

    /// The whole sign-in of `user_id`.
    pub async fn sign_in(&self, user_id: i64) -> Tokens {
        let a = self.authorize(user_id).await;
        self.exchange(&a).await
    }

    /// A refresh.
    pub async fn refresh(&self, refresh: &str) -> (StatusCode, Value) {
        let resource = format!("{}/mcp", self.base);
        self.token_raw(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &self.client_id),
            ("resource", &resource),
        ])
        .await
    }
}

/// The consent page in `r`, checked as a person would need it (an HTML page that names
/// where the browser goes back, with Allow and Deny and a cookie binding it to this
/// browser); the consent id of its form.
pub async fn consent_form(r: reqwest::Response) -> String {
    assert_eq!(r.status(), StatusCode::OK, "the consent page");
    let kind = r.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap();
    assert_eq!(kind, "text/html; charset=utf-8");
    assert!(
        r.headers().get(reqwest::header::SET_COOKIE).is_some(),
        "the page binds itself to the browser with a cookie"
    );
    let html = r.text().await.unwrap();
    for part in [
        "action=\"/authorize/consent\"",
        "value=\"allow\"",
        "value=\"deny\"",
        "read, add, change and delete task results as you",
        "host <code>",
    ] {
        assert!(html.contains(part), "the consent page shows {part}: {html}");
    }
    html.split("name=\"consent\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the form's consent id")
        .to_string()
}

/// An `application/x-www-form-urlencoded` body.
pub fn form_body(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

pub fn tokens(body: &Value) -> Tokens {
    assert_eq!(body["token_type"], json!("Bearer"), "{body}");
    Tokens {
        access: body["access_token"].as_str().unwrap().to_string(),
        refresh: body["refresh_token"].as_str().unwrap().to_string(),
        expires_in: body["expires_in"].as_i64().unwrap(),
    }
}

/// A free loopback port, so the sandbox app can register the callback before the server
/// starts (the OS may reuse it in between; then the test fails loudly, never silently).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Client {
    /// From the portal's sign-in page (user `user_id` chosen) to the portal's redirect:
    /// the callback URL on this server, not yet visited.
    pub async fn portal_redirect(&self, portal_page: &str, user_id: i64) -> String {
        let chosen = self
            .http
            .get(format!("{portal_page}&user_id={user_id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(chosen.status(), StatusCode::FOUND);
        let callback = location(&chosen);
        assert!(callback.contains("/oauth/callback"), "{callback}");
        callback
    }

    /// `/authorize` with the standard parameters for a fresh PKCE pair; the portal page it
    /// sends the browser to, and the verifier.
    pub async fn start(&self, state: &str) -> (String, String) {
        let (verifier, challenge) = pkce();
        let r = self
            .authorize_raw(&self.authorize_params(&challenge, state))
            .await;
        assert_eq!(r.status(), StatusCode::FOUND);
        (location(&r), verifier)
    }
}

/// `params` with `key` set to `value` (or removed when `None`).
pub fn with_param(
    params: &[(String, String)],
    key: &str,
    value: Option<&str>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = params.iter().filter(|(k, _)| k != key).cloned().collect();
    if let Some(v) = value {
        out.push((key.to_string(), v.to_string()));
    }
    out
}

/// The status of an MCP `initialize` POST to `mcp_url` with `token` as the bearer.
pub async fn mcp_status(mcp_url: &str, token: &str) -> StatusCode {
    no_redirects()
        .post(mcp_url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap()
        .status()
}

/// The Bitrix24 application the sandbox portal has installed for these tests.
pub const APP_ID: &str = "local.team.app";
/// Its secret (only the sandbox's OAuth server and the server under test know it).
pub const APP_SECRET: &str = "app-secret-6b1f0c2e9d4a7781";

/// A sandbox portal with [`APP_ID`] installed, whose registered redirect is the callback
/// of a server on loopback `port`; `code_ttl` shortens the life of its sign-in codes.
pub async fn portal_for(
    port: u16,
    code_ttl: Option<std::time::Duration>,
) -> bitrix24_task_results_mcp::sandbox::Sandbox {
    use bitrix24_task_results_mcp::sandbox::{OAuthApp, Sandbox, SandboxOptions};
    let mut app = OAuthApp::new(APP_ID, APP_SECRET, "refresh-of-nobody-0123456789")
        .with_redirect_uri(format!("http://127.0.0.1:{port}/oauth/callback"));
    if let Some(ttl) = code_ttl {
        app.code_ttl = ttl;
    }
    Sandbox::start(SandboxOptions {
        oauth: Some(app),
        ..SandboxOptions::default()
    })
    .await
    .expect("start the sandbox")
}

/// The variables of a server that signs people in through `sandbox`, a portal from
/// [`portal_for`] (its OAuth server too), unpaced.
pub fn portal_env(
    sandbox: &bitrix24_task_results_mcp::sandbox::Sandbox,
) -> Vec<(&'static str, String)> {
    let base = sandbox.base_url();
    vec![
        ("BITRIX24_PORTAL_URL", base.clone()),
        ("BITRIX24_CLIENT_ID", APP_ID.into()),
        ("BITRIX24_CLIENT_SECRET", APP_SECRET.into()),
        ("BITRIX24_OAUTH_URL", base),
        ("BITRIX24_RATE", "1000".into()),
    ]
}

/// One harness for the sign-in tests: the sandbox portal with [`APP_ID`] installed (its
/// registered redirect is the callback of a server on `port`), a private store directory,
/// and servers started on them with `--oauth`.
pub struct Team {
    pub sandbox: bitrix24_task_results_mcp::sandbox::Sandbox,
    pub dir: tempfile::TempDir,
    /// The port the portal's application sends people back to.
    pub port: u16,
}

impl Team {
    pub async fn new() -> Team {
        Team::with_code_ttl(None).await
    }

    /// [`Team::new`] whose portal's sign-in codes live `code_ttl`.
    pub async fn with_code_ttl(code_ttl: Option<std::time::Duration>) -> Team {
        let port = free_port();
        Team {
            sandbox: portal_for(port, code_ttl).await,
            dir: tempfile::tempdir().unwrap(),
            port,
        }
    }

    /// The SQLite store's file (its key file is created beside it).
    pub fn db(&self) -> std::path::PathBuf {
        self.dir.path().join("store.sqlite3")
    }

    /// `sqlite:` and [`Team::db`].
    pub fn store(&self) -> String {
        format!("sqlite:{}", self.db().display())
    }

    /// The portal and its application, as every server here signs people in through it.
    pub fn portal_env(&self) -> Vec<(&'static str, String)> {
        portal_env(&self.sandbox)
    }

    /// [`Team::portal_env`] and this team's store.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = self.portal_env();
        vars.push(("MCP_STORE", self.store()));
        vars
    }

    /// The server on the port the portal's application knows, with `--oauth`, `flags`
    /// and the variables `env` besides.
    pub async fn server(&self, flags: &[&str], env: &[(&str, &str)]) -> HttpServer {
        self.server_on(self.port, flags, env).await
    }

    /// [`Team::server`] on `port` (0: a free one), on the same store.
    pub async fn server_on(&self, port: u16, flags: &[&str], env: &[(&str, &str)]) -> HttpServer {
        let vars = self.vars();
        let mut all: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(env);
        let args: Vec<&str> = ["--oauth"].iter().chain(flags).copied().collect();
        http_support::spawn_http_on(&format!("127.0.0.1:{port}"), &args, &all).await
    }

    /// How many requests the portal has seen.
    pub fn portal_requests(&self) -> usize {
        self.sandbox.requests().len()
    }

    /// `users SUBCOMMAND…` on this store; its stdout.
    pub async fn users(&self, args: &[&str]) -> String {
        let mut all = vec!["users"];
        all.extend_from_slice(args);
        let out = super::common::command(&all, &[("MCP_STORE", &self.store())])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The `error` of an OAuth error answer.
pub fn oauth_error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("<no error field>")
}

/// `doc` as text with the server's address replaced, so snapshots do not hold a port.
pub fn redacted(doc: &Value, base: &str) -> Value {
    serde_json::from_str(&doc.to_string().replace(base, "http://SERVER")).unwrap()
}
