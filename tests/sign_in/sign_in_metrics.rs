//! Sign-in in the metrics: a person signing in, another sign-in denied at the consent
//! page, and the people signed in (read from the store at scrape time), with no person,
//! token or text in any label.

use crate::support::{common, http_support, metrics_support, sign_in_support};

use common::ok;
use http_support::{call_as, spawn_http};
use metrics_support::{metrics_addr, promtool_check, sample, scrape};
use serde_json::json;
use sign_in_support::{Client, consent_form, pkce};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_and_people_are_counted_without_naming_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("s.db").display());
    let server = spawn_http(
        &["--sandbox", "--oauth", "--metrics-listen", "127.0.0.1:0"],
        &[("MCP_STORE", &store)],
    )
    .await;
    let addr = metrics_addr(|| server.stderr()).await;

    let client = Client::discover_and_register(&server).await;
    let person = client.sign_in(2).await;
    let text = "a result only person 2 wrote 5be0d3";
    ok(&call_as(
        &server.mcp_url(),
        &person.access,
        "task_result_add",
        json!({"taskId": 51, "text": text}),
    )
    .await);
    // Another client, in another browser, is denied on the consent page.
    let other = Client::discover_and_register(&server).await;
    let (_, challenge) = pkce();
    let consent = consent_form(
        other
            .authorize_page(&other.authorize_params(&challenge, "st-metrics"))
            .await,
    )
    .await;
    let denied = other.answer_consent(&consent, "deny").await;
    assert_eq!(denied.status(), reqwest::StatusCode::FOUND);

    let exposition = scrape(&addr).await;
    let value = |series: &str| sample(&exposition, series);
    assert_eq!(
        value("bitrix24_mcp_sign_ins_started_total"),
        Some(2.0),
        "{exposition}"
    );
    assert_eq!(
        value("bitrix24_mcp_sign_ins_completed_total"),
        Some(1.0),
        "{exposition}"
    );
    assert_eq!(
        value("bitrix24_mcp_sign_ins_denied_total"),
        Some(1.0),
        "{exposition}"
    );
    assert_eq!(
        value("bitrix24_mcp_people_signed_in"),
        Some(1.0),
        "{exposition}"
    );
    assert_eq!(
        value("bitrix24_mcp_tool_calls_total{tool=\"task_result_add\",outcome=\"ok\"}"),
        Some(1.0),
        "{exposition}"
    );
    assert!(
        value("bitrix24_mcp_http_requests_total{route=\"/token\",status=\"200\"}").is_some(),
        "{exposition}"
    );
    let problems = promtool_check(&exposition);
    assert!(problems.trim().is_empty(), "promtool:\n{problems}");

    for needle in [
        person.access.as_str(),
        person.refresh.as_str(),
        client.client_id.as_str(),
        other.client_id.as_str(),
        text,
        "5be0d3",
    ] {
        assert!(
            !exposition.contains(needle),
            "the exposition holds {needle:?}:\n{exposition}"
        );
    }
    metrics_support::assert_known_labels(&exposition);
    for (name, value) in metrics_support::labels(&exposition) {
        assert_ne!(value, "2", "a label names the person: {name}={value}");
    }
}
