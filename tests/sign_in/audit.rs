//! The audit trail of a team server (`--oauth --audit-log`): each signed-in person's
//! writes with their own user id, member id and client; the consent page's answers,
//! sign-ins, a refresh token's reuse, `users revoke` (another process on the same store
//! and trail) and a Bitrix24 grant lost; none of the run's secrets or result texts. And a
//! SIGHUP rotation that loses no line.

use crate::support::{common, http_support, sign_in_support};

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{err, ok};
use http_support::{HANG, call, call_as, connect, spawn_http};
use serde_json::{Value, json};
use sign_in_support::{APP_SECRET, Client, Team, Tokens, consent_form, query};

/// Every line of the audit file, each parsed (a line that does not parse fails).
fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The lines of `event` (for `tool_call`: of `tool`).
fn of<'a>(all: &'a [Value], event: &str, tool: Option<&str>) -> Vec<&'a Value> {
    all.iter()
        .filter(|l| l["event"] == event && tool.is_none_or(|t| l["tool"] == t))
        .collect()
}

/// One person's add, update and delete of a result; the texts written and the result id.
async fn writes(url: &str, tokens: &Tokens, who: &str) -> (Vec<String>, u64) {
    let texts = vec![
        format!("audit {who} wrote {}", uuid::Uuid::new_v4()),
        format!("audit {who} changed {}", uuid::Uuid::new_v4()),
    ];
    let added = ok(&call_as(
        url,
        &tokens.access,
        "task_result_add",
        json!({"taskId": 51, "text": texts[0]}),
    )
    .await);
    let id = added["id"].as_u64().expect("a result id");
    ok(&call_as(
        url,
        &tokens.access,
        "task_result_list",
        json!({"taskId": 51}),
    )
    .await);
    ok(&call_as(
        url,
        &tokens.access,
        "task_result_update",
        json!({"id": id, "text": texts[1]}),
    )
    .await);
    ok(&call_as(url, &tokens.access, "task_result_delete", json!({"id": id})).await);
    (texts, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_servers_trail_names_who_wrote_and_every_sign_in_event_and_no_secret() {
    let team = Team::new().await;
    let audit = team.dir.path().join("audit.log");
    let audit_arg = audit.display().to_string();
    let server = team
        .server(&["--audit-log", &audit_arg, "--refresh-grace", "0"], &[])
        .await;
    let url = server.mcp_url();
    let mut secrets: Vec<String> = vec![APP_SECRET.into(), "refresh-of-nobody-0123456789".into()];

    // Two people, each in their own browser with their own client.
    let a = Client::discover_and_register(&server).await;
    let b = Client::discover_and_register(&server).await;
    let mut signed_in = Vec::new();
    for (client, user) in [(&a, 1), (&b, 2)] {
        let authorized = client.authorize(user).await;
        let tokens = client.exchange(&authorized).await;
        secrets.extend([
            authorized.code.clone(),
            authorized.verifier.clone(),
            tokens.access.clone(),
            tokens.refresh.clone(),
        ]);
        signed_in.push(tokens);
    }
    let (one, two) = (signed_in[0].clone(), signed_in[1].clone());
    let (texts_one, id_one) = writes(&url, &one, "one").await;
    let (texts_two, id_two) = writes(&url, &two, "two").await;
    secrets.extend(texts_one.iter().chain(&texts_two).cloned());
    secrets.extend(["kept by one".into(), "hijack attempt".into()]);
    // User 2 may not change user 1's results: a write the portal refuses.
    let kept = ok(&call_as(
        &url,
        &one.access,
        "task_result_add",
        json!({"taskId": 51, "text": "kept by one"}),
    )
    .await);
    err(&call_as(
        &url,
        &two.access,
        "task_result_update",
        json!({"id": kept["id"], "text": "hijack attempt"}),
    )
    .await);

    // A third browser's person denies a client.
    let c = Client::discover_and_register(&server).await;
    let (verifier, challenge) = sign_in_support::pkce();
    secrets.push(verifier);
    let page = c
        .authorize_page(&c.authorize_params(&challenge, "st-denied"))
        .await;
    let consent = consent_form(page).await;
    let denied = c.answer_consent(&consent, "deny").await;
    let back = sign_in_support::location(&denied);
    assert_eq!(
        query(&back).get("error").map(String::as_str),
        Some("access_denied")
    );

    // User 1's refresh token, spent and presented again (no grace): the grant is revoked.
    let (status, body) = a.refresh(&one.refresh).await;
    assert_eq!(status, 200, "{body}");
    let next = sign_in_support::tokens(&body);
    secrets.extend([next.access.clone(), next.refresh.clone()]);
    let (status, body) = a.refresh(&one.refresh).await;
    assert_eq!(status, 400, "{body}");

    // User 1 signs in again through another client; user 2 is revoked by `users revoke`
    // in another process on the same store and trail.
    let d = Client::discover_and_register(&server).await;
    let again = d.sign_in(1).await;
    secrets.extend([again.access.clone(), again.refresh.clone()]);
    let out = team
        .users(&["revoke", "2", "--audit-log", &audit_arg])
        .await;
    assert!(out.contains("signed out"), "{out}");

    // The portal ends user 1's grant: their next write finds the sign-in ended.
    team.sandbox.revoke_tokens_of(1);
    let ended = err(&call_as(
        &url,
        &again.access,
        "task_result_add",
        json!({"taskId": 51, "text": "after the grant"}),
    )
    .await);
    assert!(ended.contains("sign in again"), "{ended}");

    // The Bitrix24 tokens the portal saw, and the store's key.
    for request in team.sandbox.requests() {
        if let Ok(body) = serde_json::from_str::<Value>(&request.body)
            && let Some(auth) = body["auth"].as_str()
        {
            secrets.push(auth.to_string());
        }
    }
    let key_file = format!("{}.key", team.db().display());
    secrets.push(
        std::fs::read_to_string(&key_file)
            .unwrap()
            .trim()
            .to_string(),
    );

    let all = lines(&audit);
    let text = std::fs::read_to_string(&audit).unwrap();
    let member = all
        .iter()
        .find_map(|l| l["member_id"].as_str())
        .expect("a member id")
        .to_string();
    assert!(!member.is_empty());
    let portal = team
        .sandbox
        .base_url()
        .trim_start_matches("http://")
        .to_string();

    // Each person's writes, as themselves, through their own client.
    for (user, client, id) in [(1, &a, id_one), (2, &b, id_two)] {
        for tool in [
            "task_result_add",
            "task_result_update",
            "task_result_delete",
        ] {
            let found: Vec<_> = of(&all, "tool_call", Some(tool))
                .into_iter()
                .filter(|l| l["user_id"] == user && l["result_id"] == id)
                .collect();
            assert_eq!(found.len(), 1, "{tool} of user {user}: {text}");
            let l = found[0];
            assert_eq!(l["outcome"], "ok", "{l}");
            assert_eq!(l["identity"], "person", "{l}");
            assert_eq!(l["member_id"], json!(member), "{l}");
            assert_eq!(l["client_id"], json!(client.client_id), "{l}");
            assert_eq!(l["client_name"], "sign-in test", "{l}");
            assert_eq!(l["portal"], json!(portal), "{l}");
        }
    }
    assert!(
        of(&all, "tool_call", Some("task_result_list")).is_empty(),
        "reads are not recorded: {text}"
    );
    let refused: Vec<_> = of(&all, "tool_call", Some("task_result_update"))
        .into_iter()
        .filter(|l| l["outcome"] != "ok")
        .collect();
    assert_eq!(refused.len(), 1, "{text}");
    assert_eq!(refused[0]["user_id"], 2);
    assert_eq!(refused[0]["outcome"], "access");
    assert!(refused[0]["portal_code"].is_string(), "{}", refused[0]);
    let after_loss: Vec<_> = of(&all, "tool_call", None)
        .into_iter()
        .filter(|l| l["outcome"] == "sign_in_ended")
        .collect();
    assert_eq!(after_loss.len(), 1, "{text}");
    assert_eq!(after_loss[0]["user_id"], 1);
    assert_eq!(after_loss[0]["client_id"], json!(d.client_id));

    // The sign-in events.
    let shown = of(&all, "consent_shown", None);
    assert_eq!(shown.len(), 4, "one page per browser: {text}");
    for l in &shown {
        assert_eq!(l["redirect"], "http://127.0.0.1:1", "{l}");
    }
    let given: Vec<_> = of(&all, "consent_given", None)
        .iter()
        .map(|l| l["client_id"].clone())
        .collect();
    assert_eq!(
        given,
        [json!(a.client_id), json!(b.client_id), json!(d.client_id)],
        "{text}"
    );
    let denied = of(&all, "consent_denied", None);
    assert_eq!(denied.len(), 1, "{text}");
    assert_eq!(denied[0]["client_id"], json!(c.client_id));
    let completed: Vec<_> = of(&all, "sign_in_completed", None)
        .iter()
        .map(|l| (l["user_id"].clone(), l["client_id"].clone()))
        .collect();
    assert_eq!(
        completed,
        [
            (json!(1), json!(a.client_id)),
            (json!(2), json!(b.client_id)),
            (json!(1), json!(d.client_id)),
        ],
        "{text}"
    );
    let reused = of(&all, "refresh_token_reused", None);
    assert_eq!(reused.len(), 1, "{text}");
    assert_eq!(reused[0]["user_id"], 1);
    assert_eq!(reused[0]["client_id"], json!(a.client_id));
    assert!(reused[0]["grant_id"].is_string());
    let revoked = of(&all, "user_revoked", None);
    assert_eq!(revoked.len(), 1, "{text}");
    assert_eq!(revoked[0]["user_id"], 2);
    assert_eq!(revoked[0]["sign_ins"], 1);
    let lost = of(&all, "bitrix_grant_lost", None);
    assert_eq!(lost.len(), 1, "{text}");
    assert_eq!(lost[0]["user_id"], 1);
    assert_eq!(lost[0]["member_id"], json!(member));

    // Nothing secret, no result's text; the file is private.
    assert!(secrets.len() > 20, "{secrets:?}");
    for secret in &secrets {
        assert!(!secret.is_empty());
        assert!(
            !text.contains(secret.as_str()),
            "{secret} in the audit log:\n{text}"
        );
    }
    let mode = std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_file_others_can_read_stops_start_up_with_a_chmod_hint() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    std::fs::write(&audit, b"").unwrap();
    std::fs::set_permissions(&audit, std::fs::Permissions::from_mode(0o644)).unwrap();
    let shown = audit.display().to_string();
    let (status, stderr) = http_support::run_to_exit(
        &[
            "--transport",
            "http",
            "--listen",
            "127.0.0.1:0",
            "--sandbox",
            "--audit-log",
            &shown,
        ],
        &[],
    )
    .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("chmod 600 {shown}")), "{stderr}");
}

/// Adds `n` results at once on `client`'s session; each must succeed.
async fn burst(client: &rmcp::service::RunningService<rmcp::RoleClient, ()>, n: usize) {
    let calls = (0..n).map(|i| {
        call(
            client,
            "task_result_add",
            json!({"taskId": 51, "text": format!("rotation {i}")}),
        )
    });
    for r in futures::future::join_all(calls).await {
        ok(&r);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_rotation_loses_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let rotated = dir.path().join("audit.log.1");
    let shown = audit.display().to_string();
    let server = spawn_http(&["--sandbox", "--audit-log", &shown], &[]).await;
    let client = connect(&server.mcp_url(), None).await.expect("connect");
    let mut calls = 0;
    for _ in 0..3 {
        burst(&client, 4).await;
        calls += 4;
    }
    std::fs::rename(&audit, &rotated).unwrap();
    let pid = server.child.id().expect("running").to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    // Calls go on while the server reopens; its new file appears with the next line.
    let reopened = tokio::time::timeout(HANG, async {
        loop {
            burst(&client, 4).await;
            calls += 4;
            if !lines(&audit).is_empty() {
                break;
            }
        }
    })
    .await;
    assert!(reopened.is_ok(), "no new file: {}", server.stderr());
    for _ in 0..3 {
        burst(&client, 4).await;
        calls += 4;
    }
    client.cancel().await.ok();

    let (old, new) = (lines(&rotated), lines(&audit));
    assert!(
        old.len() >= 12 && new.len() >= 12,
        "{} {}",
        old.len(),
        new.len()
    );
    assert_eq!(old.len() + new.len(), calls, "every call has its line");
    let mut ids: Vec<u64> = old
        .iter()
        .chain(&new)
        .map(|l| l["result_id"].as_u64().expect("a result id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), calls, "each line once");
    let mode = std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    assert!(
        server.stderr().contains("the audit log was reopened"),
        "{}",
        server.stderr()
    );
}
