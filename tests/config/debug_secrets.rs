//! `{:?}` of every configuration and credential type shows no secret: the command line
//! (and where each setting came from), the validated settings, the portal endpoint and
//! its callers, the OAuth configuration and refresher (from the environment, from a
//! token file, and after a refresh), and the HTTP options and bearer check. The private
//! token-file and token-answer types are covered by a unit test in `identity::configured`.

use crate::support::common::oauth_sandbox;

use std::path::Path;
use std::sync::Arc;

use bitrix24_task_results_mcp::bitrix::{
    Caller, Endpoint, Portal, StaticToken, TokenSource, WebhookCredentials,
};
use bitrix24_task_results_mcp::cli::{Cli, Given};
use bitrix24_task_results_mcp::identity::Refresher;
use bitrix24_task_results_mcp::settings::{PortalChoice, Settings};
use bitrix24_task_results_mcp::transport::bearer::BearerAuth;

const WEBHOOK_SECRET: &str = "dbgwebhooksecret7q";
const ACCESS: &str = "dbgaccesstoken7q";
const CLIENT_SECRET: &str = "dbgclientsecret7q";
const REFRESH: &str = "dbgrefreshtoken7q";
const AUTH: &str = "dbgbearertoken7q";
const FILE_ACCESS: &str = "dbgfileaccess7q";
const FILE_REFRESH: &str = "dbgfilerefresh7q";
const FILE_SEED: &str = "dbgfileseed7q";

const ALL: [&str; 8] = [
    WEBHOOK_SECRET,
    ACCESS,
    CLIENT_SECRET,
    REFRESH,
    AUTH,
    FILE_ACCESS,
    FILE_REFRESH,
    FILE_SEED,
];

fn assert_hidden(what: &str, shown: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!shown.contains(secret), "{what} shows {secret}: {shown}");
    }
}

fn parse(args: &[&str]) -> (Cli, Given) {
    let mut argv = vec!["bitrix24-task-results-mcp"];
    argv.extend_from_slice(args);
    Cli::try_parse_given(argv).expect("valid command line")
}

fn webhook_url() -> String {
    format!("https://p.example/rest/1/{WEBHOOK_SECRET}/")
}

#[test]
fn webhook_configuration_and_http_options() {
    let url = webhook_url();
    let (cli, given) = parse(&[
        "--webhook-url",
        &url,
        "--transport",
        "http",
        "--listen",
        "0.0.0.0:0",
        "--auth-token",
        AUTH,
    ]);
    assert_hidden("Cli", &format!("{cli:?}"), &ALL);
    assert_hidden("PortalArgs", &format!("{:?}", cli.portal), &ALL);
    assert_hidden("HttpArgs", &format!("{:?}", cli.http), &ALL);
    assert_hidden("Given", &format!("{given:?}"), &ALL);

    let settings = Settings::from_cli(&cli);
    let portal = settings.portal.as_ref().expect("a webhook portal");
    let PortalChoice::Portal(endpoint) = &portal.choice else {
        panic!("not a portal: {portal:?}");
    };
    let http = settings
        .http
        .as_ref()
        .unwrap()
        .as_ref()
        .expect("HTTP options");
    assert!(http.auth_token.is_some());
    assert_hidden("Settings", &format!("{settings:?}"), &ALL);
    assert_hidden("settings::Portal", &format!("{portal:?}"), &ALL);
    assert_hidden("Endpoint", &format!("{endpoint:?}"), &ALL);
    assert_hidden("Caller::Webhook", &format!("{:?}", endpoint.caller), &ALL);
    assert_hidden("bitrix::Portal", &format!("{:?}", endpoint.portal), &ALL);
    assert_hidden("HttpOptions", &format!("{http:?}"), &ALL);
    let bearer = BearerAuth::new(http.auth_token.as_ref());
    assert!(bearer.enabled());
    assert_hidden("BearerAuth", &format!("{bearer:?}"), &ALL);

    // The secret is still where the portal reads it.
    let called = endpoint
        .portal
        .method_url(&endpoint.caller, "m")
        .to_string();
    assert!(called.contains(WEBHOOK_SECRET), "{called}");
}

#[test]
fn credential_types_built_directly() {
    let webhook = Endpoint::webhook(&webhook_url()).unwrap();
    let oauth = Endpoint::oauth("https://p.example", ACCESS).unwrap();
    let token = StaticToken::new(ACCESS);
    let credentials = WebhookCredentials {
        user_id: 1,
        secret: WEBHOOK_SECRET.into(),
    };
    let caller = Caller::Webhook(Arc::new(credentials));
    let portal = Portal::parse("https://p.example").unwrap();
    let shown = format!(
        "{webhook:?} {oauth:?} {token:?} {:?} {caller:?} {portal:?}",
        token.current()
    );
    assert!(shown.contains("REDACTED"), "{shown}");
    assert_hidden("endpoints and callers", &shown, &ALL);
}

/// `--portal-url`, an access token and the refresh settings, with the token file in `dir`.
fn oauth_cli(dir: &Path, oauth_url: &str) -> (Cli, Given) {
    let file = dir.join("token.json").display().to_string();
    parse(&[
        "--portal-url",
        "https://p.example",
        "--access-token",
        ACCESS,
        "--client-id",
        "app.1",
        "--client-secret",
        CLIENT_SECRET,
        "--refresh-token",
        REFRESH,
        "--token-file",
        &file,
        "--oauth-url",
        oauth_url,
    ])
}

#[test]
fn oauth_configuration_and_refresher_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (cli, given) = oauth_cli(dir.path(), "http://127.0.0.1:9");
    assert_hidden("Cli", &format!("{cli:?}"), &ALL);
    assert_hidden("OAuthArgs", &format!("{:?}", cli.portal.oauth), &ALL);
    assert_hidden("Given", &format!("{given:?}"), &ALL);
    let settings = Settings::from_cli(&cli);
    assert_hidden("Settings", &format!("{settings:?}"), &ALL);
    let portal = settings.portal.expect("an OAuth portal");
    let config = portal.refresh.clone().expect("refresh settings");
    assert_hidden("OAuthConfig", &format!("{config:?}"), &ALL);
    let refresher = Arc::new(Refresher::load(config).unwrap());
    assert_hidden("Refresher", &format!("{refresher:?}"), &ALL);
    assert_hidden("current()", &format!("{:?}", refresher.current()), &ALL);
    let caller = Caller::OAuth(refresher);
    assert_hidden("Caller::OAuth", &format!("{caller:?}"), &ALL);
}

#[test]
fn refresher_from_a_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cli, _) = parse(&[
        "--portal-url",
        "https://p.example",
        "--client-id",
        "app.1",
        "--client-secret",
        CLIENT_SECRET,
        "--token-file",
        &dir.path().join("token.json").display().to_string(),
    ]);
    let file = serde_json::json!({
        "access_token": FILE_ACCESS,
        "refresh_token": FILE_REFRESH,
        "seeded_by": FILE_SEED,
    });
    std::fs::write(dir.path().join("token.json"), file.to_string()).unwrap();
    let config = Settings::from_cli(&cli).portal.unwrap().refresh.unwrap();
    let refresher = Refresher::load(config).unwrap();
    let shown = format!("{refresher:?} {:?}", refresher.current());
    assert!(refresher.current().0.is_some(), "the file's token is used");
    assert_hidden("Refresher from a file", &shown, &ALL);
}

#[tokio::test]
async fn refresher_after_a_refresh() {
    let sandbox = oauth_sandbox("app.1", CLIENT_SECRET, REFRESH).await;
    let dir = tempfile::tempdir().unwrap();
    let (cli, _) = oauth_cli(dir.path(), &sandbox.base_url());
    let config = Settings::from_cli(&cli).portal.unwrap().refresh.unwrap();
    let refresher = Refresher::load(config).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let (_, seen) = refresher.current();
    refresher.refresh(&http, seen).await.expect("refreshed");
    let (new_access, new_refresh) = (
        sandbox.access_token().unwrap(),
        sandbox.refresh_token().unwrap(),
    );
    assert_ne!(new_refresh, REFRESH);
    let shown = format!("{refresher:?} {:?}", refresher.current());
    let mut secrets = ALL.to_vec();
    secrets.extend([new_access.as_str(), new_refresh.as_str()]);
    assert_hidden("Refresher after a refresh", &shown, &secrets);
}
