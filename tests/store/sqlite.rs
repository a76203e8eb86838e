//! The SQLite sign-in store on real files in a temporary directory: every call, single
//! use under concurrency, refresh rotation, expiry, bounds, a second process's revocation,
//! restarts, encryption at rest, the key check, and that nothing prints a secret.
//!
//! Long because it covers the whole `Store` trait; each test is one behaviour.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bitrix24_task_results_mcp::store::{
    AuthCode, BitrixTokens, ClientRecord, Grant, IssuedToken, Limits, PendingAuth, Person,
    RefreshUse, Rotation, SqliteStore, Store, StoreError, StoreKey, TokenHash, TokenKind,
    default_key_path, default_path,
};
use secrecy::{ExposeSecret, SecretString};

const NOW: i64 = 1_800_000_000;
const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const ACCESS: &str = "bitrix-access-7f3c1e9a2b";
const REFRESH: &str = "bitrix-refresh-5d8e0a4c6f";
/// A pair a refresh issues in the tests that search the stored bytes for it.
const ROTATED: [&str; 2] = ["our-rotated-access-71c2e0", "our-rotated-refresh-93d4b8"];

fn key() -> StoreKey {
    StoreKey::from_hex(KEY).expect("test key")
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data").join("store.sqlite3")
}

fn open(path: &Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(path, key()).expect("open store"))
}

fn fresh() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&db_path(&dir));
    (dir, store)
}

fn client(id: &str) -> ClientRecord {
    ClientRecord {
        client_id: id.into(),
        client_name: Some("Claude Code".into()),
        redirect_uris: vec!["http://127.0.0.1/callback".into()],
        created_at: NOW,
        secret_hash: None,
    }
}

fn pending(state: &str, expires_at: i64) -> PendingAuth {
    PendingAuth {
        state: TokenHash::of(state),
        client_id: "c1".into(),
        redirect_uri: "http://127.0.0.1/callback".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        client_state: Some("xyz".into()),
        resource: "https://mcp.example.com/mcp".into(),
        scope: Some("tasks".into()),
        expires_at,
    }
}

fn code(value: &str, expires_at: i64) -> AuthCode {
    AuthCode {
        code: TokenHash::of(value),
        client_id: "c1".into(),
        redirect_uri: "http://127.0.0.1/callback".into(),
        code_challenge: "challenge".into(),
        resource: "https://mcp.example.com/mcp".into(),
        scope: None,
        user_id: 1,
        member_id: "m1".into(),
        expires_at,
    }
}

fn tokens(access: &str, refresh: &str) -> BitrixTokens {
    BitrixTokens {
        access: SecretString::from(access),
        refresh: SecretString::from(refresh),
        expires_at: NOW + 3600,
        server_endpoint: Some("https://oauth.bitrix.info/rest/".into()),
        client_endpoint: Some("https://portal.example.com/rest/".into()),
        scope: Some("tasks,im".into()),
    }
}

fn person(member_id: &str, user_id: i64) -> Person {
    Person {
        member_id: member_id.into(),
        user_id,
        domain: "portal.example.com".into(),
        tokens: tokens(ACCESS, REFRESH),
        last_used_at: NOW,
        created_at: NOW,
    }
}

fn grant(id: &str, member_id: &str, user_id: i64) -> Grant {
    Grant {
        id: id.into(),
        client_id: "c1".into(),
        member_id: member_id.into(),
        user_id,
        resource: "https://mcp.example.com/mcp".into(),
        scope: None,
        created_at: NOW,
        revoked: false,
    }
}

fn issued(token: &str, grant_id: &str, kind: TokenKind, expires_at: i64) -> IssuedToken {
    IssuedToken {
        hash: TokenHash::of(token),
        grant_id: grant_id.into(),
        kind,
        expires_at,
        used: false,
    }
}

/// The pair a refresh issues, with `grace` seconds in which a repeat gets it back.
fn rotation(access: &str, refresh: &str, grace: i64) -> Rotation {
    Rotation {
        access: SecretString::from(access),
        refresh: SecretString::from(refresh),
        access_expires_at: NOW + 3600,
        refresh_expires_at: NOW + 86_400,
        grace,
    }
}

/// A signed-in person `(m1, 1)` with grant `g1`, access token `at1` and refresh `rt1`.
async fn signed_in(store: &dyn Store) {
    store.put_person(person("m1", 1)).await.unwrap();
    store.put_grant(grant("g1", "m1", 1)).await.unwrap();
    let access = issued("at1", "g1", TokenKind::Access, NOW + 3600);
    store.put_token(access).await.unwrap();
    let refresh = issued("rt1", "g1", TokenKind::Refresh, NOW + 86_400);
    store.put_token(refresh).await.unwrap();
}

#[tokio::test]
async fn clients_are_stored_replaced_and_looked_up() {
    let (_dir, store) = fresh();
    assert!(store.client("c1").await.unwrap().is_none());
    store.put_client(client("c1")).await.unwrap();
    assert_eq!(store.client("c1").await.unwrap(), Some(client("c1")));
    let mut changed = client("c1");
    changed.redirect_uris = vec!["http://localhost/a".into(), "https://x.example/b".into()];
    changed.client_name = None;
    store.put_client(changed.clone()).await.unwrap();
    assert_eq!(store.client("c1").await.unwrap(), Some(changed));
}

#[tokio::test]
async fn clients_past_the_bound_are_refused_but_known_ones_update() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        clients: 2,
        pending: 10,
    };
    let store = SqliteStore::open_with_limits(&db_path(&dir), key(), limits).unwrap();
    store.put_client(client("a")).await.unwrap();
    store.put_client(client("b")).await.unwrap();
    assert!(matches!(
        store.put_client(client("c")).await,
        Err(StoreError::Full)
    ));
    store.put_client(client("b")).await.unwrap();
    assert!(store.client("c").await.unwrap().is_none());
}

#[tokio::test]
async fn pending_authorizations_are_single_use_and_expire() {
    let (_dir, store) = fresh();
    store
        .put_pending(pending("s1", NOW + 600), NOW)
        .await
        .unwrap();
    store
        .put_pending(pending("s2", NOW + 600), NOW)
        .await
        .unwrap();
    let hash = TokenHash::of("s1");
    assert_eq!(
        store.take_pending(&hash, NOW).await.unwrap(),
        Some(pending("s1", NOW + 600))
    );
    assert_eq!(store.take_pending(&hash, NOW).await.unwrap(), None);
    assert_eq!(
        store
            .take_pending(&TokenHash::of("nope"), NOW)
            .await
            .unwrap(),
        None
    );
    // Expired: not returned, and gone.
    let s2 = TokenHash::of("s2");
    assert_eq!(store.take_pending(&s2, NOW + 600).await.unwrap(), None);
    assert_eq!(store.take_pending(&s2, NOW).await.unwrap(), None);
}

#[tokio::test]
async fn pending_past_the_bound_is_refused_and_expired_ones_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        clients: 10,
        pending: 2,
    };
    let store = SqliteStore::open_with_limits(&db_path(&dir), key(), limits).unwrap();
    store
        .put_pending(pending("a", NOW + 10), NOW)
        .await
        .unwrap();
    store
        .put_pending(pending("b", NOW + 600), NOW)
        .await
        .unwrap();
    let full = store.put_pending(pending("c", NOW + 600), NOW).await;
    assert!(matches!(full, Err(StoreError::Full)));
    // Once "a" has expired there is room again.
    store
        .put_pending(pending("c", NOW + 600), NOW + 10)
        .await
        .unwrap();
    let taken = store
        .take_pending(&TokenHash::of("c"), NOW + 10)
        .await
        .unwrap();
    assert!(taken.is_some());
}

#[tokio::test]
async fn codes_are_single_use_and_expire() {
    let (_dir, store) = fresh();
    store.put_code(code("k1", NOW + 60)).await.unwrap();
    let k1 = TokenHash::of("k1");
    assert_eq!(
        store.take_code(&k1, NOW).await.unwrap(),
        Some(code("k1", NOW + 60))
    );
    assert_eq!(store.take_code(&k1, NOW).await.unwrap(), None);
    store.put_code(code("k2", NOW + 60)).await.unwrap();
    let k2 = TokenHash::of("k2");
    assert_eq!(store.take_code(&k2, NOW + 60).await.unwrap(), None);
    assert_eq!(store.take_code(&k2, NOW).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_takers_of_one_code_or_state_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    // Two stores on one file: two connections, as two processes would have.
    let first = open(&path);
    let second = open(&path);
    for round in 0..20 {
        let value = format!("code-{round}");
        first.put_code(code(&value, NOW + 60)).await.unwrap();
        let state = format!("state-{round}");
        first
            .put_pending(pending(&state, NOW + 60), NOW)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for store in [&first, &second, &first, &second] {
            let store = Arc::clone(store);
            let (value, state) = (value.clone(), state.clone());
            tasks.push(tokio::spawn(async move {
                let code = store.take_code(&TokenHash::of(&value), NOW).await.unwrap();
                let pending = store
                    .take_pending(&TokenHash::of(&state), NOW)
                    .await
                    .unwrap();
                (code.is_some(), pending.is_some())
            }));
        }
        let (mut codes, mut states) = (0, 0);
        for task in tasks {
            let (code, pending) = task.await.unwrap();
            codes += usize::from(code);
            states += usize::from(pending);
        }
        assert_eq!((codes, states), (1, 1), "round {round}");
    }
}

#[tokio::test]
async fn people_are_upserted_with_their_tokens_and_touched() {
    let (_dir, store) = fresh();
    assert!(store.person("m1", 1).await.unwrap().is_none());
    store.put_person(person("m1", 1)).await.unwrap();
    let got = store.person("m1", 1).await.unwrap().unwrap();
    assert_eq!(got.tokens.access.expose_secret(), ACCESS);
    assert_eq!(got.tokens.refresh.expose_secret(), REFRESH);
    assert_eq!(got.domain, "portal.example.com");
    assert_eq!(
        got.tokens.client_endpoint.as_deref(),
        Some("https://portal.example.com/rest/")
    );

    // A new sign-in replaces the pair and keeps the first sign-in's time.
    let mut again = person("m1", 1);
    again.tokens = tokens("access-2", "refresh-2");
    again.created_at = NOW + 100;
    again.last_used_at = NOW + 100;
    store.put_person(again).await.unwrap();
    let got = store.person("m1", 1).await.unwrap().unwrap();
    assert_eq!(got.tokens.access.expose_secret(), "access-2");
    assert_eq!((got.created_at, got.last_used_at), (NOW, NOW + 100));

    let mut refreshed = tokens("access-3", "refresh-3");
    refreshed.expires_at = NOW + 7200;
    store.set_person_tokens("m1", 1, refreshed).await.unwrap();
    let got = store.person("m1", 1).await.unwrap().unwrap();
    assert_eq!(got.tokens.refresh.expose_secret(), "refresh-3");
    assert_eq!(got.tokens.expires_at, NOW + 7200);

    // Within a minute a touch may skip the write; later it lands.
    store.touch_person("m1", 1, NOW + 130).await.unwrap();
    store.touch_person("m1", 1, NOW + 500).await.unwrap();
    let got = store.person("m1", 1).await.unwrap().unwrap();
    assert_eq!(got.last_used_at, NOW + 500);

    // Same user id on another portal is another person.
    assert!(store.person("m2", 1).await.unwrap().is_none());
}

#[tokio::test]
async fn a_refresh_after_revocation_does_not_bring_the_person_back() {
    let (_dir, store) = fresh();
    store.put_person(person("m1", 1)).await.unwrap();
    store.revoke_person(Some("m1"), 1).await.unwrap();
    store
        .set_person_tokens("m1", 1, tokens("a", "r"))
        .await
        .unwrap();
    store.touch_person("m1", 1, NOW + 999).await.unwrap();
    assert!(store.person("m1", 1).await.unwrap().is_none());
}

#[tokio::test]
async fn access_tokens_resolve_to_their_grant_until_expiry_or_revocation() {
    let (_dir, store) = fresh();
    signed_in(store.as_ref()).await;
    assert_eq!(store.grant("g1").await.unwrap(), Some(grant("g1", "m1", 1)));
    assert!(store.grant("g2").await.unwrap().is_none());

    let at1 = TokenHash::of("at1");
    let (token, got) = store.token(&at1, NOW).await.unwrap().unwrap();
    assert_eq!(token, issued("at1", "g1", TokenKind::Access, NOW + 3600));
    assert_eq!(got, grant("g1", "m1", 1));
    assert!(store.token(&at1, NOW + 3600).await.unwrap().is_none());
    // A refresh token is never a bearer token.
    assert!(
        store
            .token(&TokenHash::of("rt1"), NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .token(&TokenHash::of("unknown"), NOW)
            .await
            .unwrap()
            .is_none()
    );

    store.revoke_grant("g1").await.unwrap();
    assert!(store.token(&at1, NOW).await.unwrap().is_none());
    assert!(store.grant("g1").await.unwrap().unwrap().revoked);
    assert_eq!(
        store
            .use_refresh(
                &TokenHash::of("rt1"),
                NOW,
                rotation("at-next", "rt-next", 30)
            )
            .await
            .unwrap(),
        RefreshUse::Unknown
    );
    store.revoke_grant("no-such-grant").await.unwrap();
}

#[tokio::test]
async fn expired_unknown_and_access_tokens_are_no_refresh_tokens() {
    let (_dir, store) = fresh();
    signed_in(store.as_ref()).await;
    let rt1 = TokenHash::of("rt1");
    assert_eq!(
        store
            .use_refresh(&rt1, NOW + 86_400, rotation("at-next", "rt-next", 30))
            .await
            .unwrap(),
        RefreshUse::Unknown
    );
    assert!(!store.grant("g1").await.unwrap().unwrap().revoked);
    let at1 = TokenHash::of("at1");
    assert_eq!(
        store
            .use_refresh(&at1, NOW, rotation("at-next", "rt-next", 30))
            .await
            .unwrap(),
        RefreshUse::Unknown
    );
    let nope = TokenHash::of("nope");
    assert_eq!(
        store
            .use_refresh(&nope, NOW, rotation("at-next", "rt-next", 30))
            .await
            .unwrap(),
        RefreshUse::Unknown
    );
}

#[tokio::test]
async fn revoking_an_access_token_ends_it_alone_a_refresh_token_its_grant() {
    let (_dir, store) = fresh();
    signed_in(store.as_ref()).await;
    store
        .put_token(issued("at2", "g1", TokenKind::Access, NOW + 3600))
        .await
        .unwrap();
    store.revoke_token(&TokenHash::of("at1")).await.unwrap();
    assert!(
        store
            .token(&TokenHash::of("at1"), NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .token(&TokenHash::of("at2"), NOW)
            .await
            .unwrap()
            .is_some()
    );
    store.revoke_token(&TokenHash::of("rt1")).await.unwrap();
    assert!(
        store
            .token(&TokenHash::of("at2"), NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.grant("g1").await.unwrap().unwrap().revoked);
    store
        .revoke_token(&TokenHash::of("never-issued"))
        .await
        .unwrap();
}

#[tokio::test]
async fn revoking_a_person_from_a_second_process_takes_effect_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let server = open(&path);
    signed_in(server.as_ref()).await;
    server.put_grant(grant("g2", "m1", 1)).await.unwrap();
    server.put_person(person("m2", 1)).await.unwrap();
    server.put_grant(grant("g3", "m2", 1)).await.unwrap();
    server.put_person(person("m1", 2)).await.unwrap();
    server.put_grant(grant("g4", "m1", 2)).await.unwrap();
    server.put_code(code("k1", NOW + 60)).await.unwrap();
    assert!(
        server
            .token(&TokenHash::of("at1"), NOW)
            .await
            .unwrap()
            .is_some()
    );

    // `users revoke` opens its own store on the same file while the server runs.
    let admin = open(&path);
    let people = admin.people().await.unwrap();
    assert_eq!(people.len(), 3);
    let m1 = people
        .iter()
        .find(|p| p.member_id == "m1" && p.user_id == 1)
        .unwrap();
    assert_eq!(
        (m1.grants, m1.domain.as_str(), m1.last_used_at),
        (2, "portal.example.com", NOW)
    );
    assert_eq!(admin.revoke_person(Some("m1"), 1).await.unwrap(), 2);

    assert!(
        server
            .token(&TokenHash::of("at1"), NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        server
            .use_refresh(
                &TokenHash::of("rt1"),
                NOW,
                rotation("at-next", "rt-next", 30)
            )
            .await
            .unwrap(),
        RefreshUse::Unknown
    );
    assert!(server.person("m1", 1).await.unwrap().is_none());
    // Their code from before the revocation no longer signs them in.
    assert!(
        server
            .take_code(&TokenHash::of("k1"), NOW)
            .await
            .unwrap()
            .is_none()
    );
    // Others are untouched.
    assert!(server.person("m2", 1).await.unwrap().is_some());
    assert!(server.person("m1", 2).await.unwrap().is_some());
    assert_eq!(admin.revoke_person(Some("m1"), 1).await.unwrap(), 0);

    // No portal given: that user id everywhere.
    assert_eq!(admin.revoke_person(None, 1).await.unwrap(), 1);
    let left = server.people().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].member_id.as_str(), left[0].user_id, left[0].grants),
        ("m1", 2, 1)
    );
}

#[tokio::test]
async fn people_are_listed_most_recent_first_with_live_grants() {
    let (_dir, store) = fresh();
    store.put_person(person("m1", 1)).await.unwrap();
    let mut later = person("m1", 2);
    later.last_used_at = NOW + 50;
    store.put_person(later).await.unwrap();
    store.put_grant(grant("g1", "m1", 1)).await.unwrap();
    store.put_grant(grant("g2", "m1", 1)).await.unwrap();
    store.revoke_grant("g2").await.unwrap();
    let people = store.people().await.unwrap();
    let order: Vec<_> = people.iter().map(|p| (p.user_id, p.grants)).collect();
    // User 2 has no live grant: not signed in, so not listed.
    assert_eq!(order, vec![(1, 1)]);
}

#[tokio::test]
async fn purge_removes_what_expired_and_abandoned_registrations_only() {
    let (_dir, store) = fresh();
    store.put_client(client("c1")).await.unwrap();
    store.put_client(client("abandoned")).await.unwrap();
    signed_in(store.as_ref()).await;
    store
        .put_pending(pending("s1", NOW + 600), NOW)
        .await
        .unwrap();
    store.put_code(code("k1", NOW + 60)).await.unwrap();
    store.put_grant(grant("g2", "m1", 1)).await.unwrap();
    store.revoke_grant("g2").await.unwrap();

    let later = NOW + 86_400;
    store.purge_expired(later).await.unwrap();
    assert!(
        store
            .take_pending(&TokenHash::of("s1"), NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .take_code(&TokenHash::of("k1"), NOW)
            .await
            .unwrap()
            .is_none()
    );
    // The access token expired; the refresh token (a day) too, at `later`.
    assert!(
        store
            .token(&TokenHash::of("at1"), NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.grant("g2").await.unwrap().is_none());
    assert!(store.grant("g1").await.unwrap().is_none());
    assert!(store.client("abandoned").await.unwrap().is_none());
    assert!(store.client("c1").await.unwrap().is_some());
    // Every grant of theirs ended: their Bitrix24 tokens have no use left.
    assert!(store.person("m1", 1).await.unwrap().is_none());
}

#[tokio::test]
async fn purge_keeps_what_is_still_alive() {
    let (_dir, store) = fresh();
    signed_in(store.as_ref()).await;
    store.put_grant(grant("g-new", "m1", 1)).await.unwrap();
    store.put_client(client("young")).await.unwrap();
    store.purge_expired(NOW + 10).await.unwrap();
    assert!(
        store
            .token(&TokenHash::of("at1"), NOW + 10)
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.grant("g-new").await.unwrap().is_some());
    assert!(store.client("young").await.unwrap().is_some());
}

#[tokio::test]
async fn a_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let store = open(&path);
        signed_in(store.as_ref()).await;
        store.put_client(client("c1")).await.unwrap();
        store
            .put_pending(pending("s1", NOW + 600), NOW)
            .await
            .unwrap();
        store.put_code(code("k1", NOW + 60)).await.unwrap();
    }
    let store = open(&path);
    assert!(store.client("c1").await.unwrap().is_some());
    assert!(
        store
            .take_pending(&TokenHash::of("s1"), NOW)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .take_code(&TokenHash::of("k1"), NOW)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .token(&TokenHash::of("at1"), NOW)
            .await
            .unwrap()
            .is_some()
    );
    let person = store.person("m1", 1).await.unwrap().unwrap();
    assert_eq!(person.tokens.access.expose_secret(), ACCESS);
    assert!(matches!(
        store
            .use_refresh(
                &TokenHash::of("rt1"),
                NOW,
                rotation("at-next", "rt-next", 30)
            )
            .await
            .unwrap(),
        RefreshUse::Fresh(..)
    ));
}

/// Every file SQLite keeps for the database, read raw.
fn database_bytes(path: &Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            std::fs::read(&name).ok().map(|b| (suffix.to_string(), b))
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_database_files_hold_no_token_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let ours = [
        "our-access-3b8c1f0e9d",
        "our-refresh-6a2d4e8f1c",
        "our-code-9e1f",
        "our-state-2c7a",
    ];
    let theirs = [
        ACCESS,
        REFRESH,
        "bitrix-access-rotated-44",
        "bitrix-refresh-rotated-55",
    ];
    let check = |when: &str| {
        let files = database_bytes(&path);
        // The rows are in the bytes searched (in clear, not being secrets).
        let domain = b"portal.example.com";
        assert!(files.iter().any(|(_, b)| contains(b, domain)), "{when}");
        for (suffix, bytes) in &files {
            for secret in ours.iter().chain(theirs.iter()).chain(ROTATED.iter()) {
                assert!(
                    !contains(bytes, secret.as_bytes()),
                    "{when}: {secret} in store{suffix}"
                );
            }
        }
    };
    {
        let store = open(&path);
        store.put_person(person("m1", 1)).await.unwrap();
        let rotated = tokens(theirs[2], theirs[3]);
        store.set_person_tokens("m1", 1, rotated).await.unwrap();
        store.put_grant(grant("g1", "m1", 1)).await.unwrap();
        store
            .put_token(issued(ours[0], "g1", TokenKind::Access, NOW + 60))
            .await
            .unwrap();
        store
            .put_token(issued(ours[1], "g1", TokenKind::Refresh, NOW + 60))
            .await
            .unwrap();
        store.put_code(code(ours[2], NOW + 60)).await.unwrap();
        store
            .put_pending(pending(ours[3], NOW + 60), NOW)
            .await
            .unwrap();
        // A rotation keeps the pair it issued for the grace window, sealed.
        let next = rotation(ROTATED[0], ROTATED[1], 30);
        let used = store.use_refresh(&TokenHash::of(ours[1]), NOW, next).await;
        assert!(matches!(used.unwrap(), RefreshUse::Fresh(_)));
        // While the server runs, the -wal file holds the recent writes.
        check("open");
        assert!(store.person("m1", 1).await.unwrap().is_some());
    }
    check("closed");
}

#[tokio::test]
async fn another_key_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    open(&path).put_person(person("m1", 1)).await.unwrap();
    let other = StoreKey::from_hex(&"ab".repeat(32)).unwrap();
    let err = SqliteStore::open(&path, other).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    assert!(err.to_string().contains("MCP_STORE_KEY"), "{err}");
    // The right key still opens it.
    assert!(open(&path).person("m1", 1).await.unwrap().is_some());
}

#[tokio::test]
async fn a_token_moved_to_another_row_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path);
    store.put_person(person("m1", 1)).await.unwrap();
    store.put_person(person("m1", 2)).await.unwrap();
    // An attacker with write access to the file copies person 1's tokens onto person 2,
    // and swaps person 1's access and refresh tokens.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "UPDATE people SET access = (SELECT access FROM people WHERE user_id = 1)
             WHERE user_id = 2;
         UPDATE people SET access = refresh, refresh = access WHERE user_id = 1;",
    )
    .unwrap();
    for user_id in [1, 2] {
        let err = store.person("m1", user_id).await.unwrap_err();
        assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    }
}

#[tokio::test]
async fn a_confidential_client_keeps_only_the_hash_of_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir), key()).unwrap();
    let mut c = client("confidential");
    c.secret_hash = Some(TokenHash::of("client-secret-in-clear-0123"));
    store.put_client(c.clone()).await.unwrap();
    assert_eq!(store.client("confidential").await.unwrap(), Some(c));
    drop(store);
    let bytes = std::fs::read(db_path(&dir)).unwrap_or_default();
    let needle = b"client-secret-in-clear-0123";
    assert!(!bytes.windows(needle.len()).any(|w| w == needle));
}

#[tokio::test]
async fn a_lock_is_held_by_one_process_until_released_or_expired() {
    let dir = tempfile::tempdir().unwrap();
    let a = SqliteStore::open(&db_path(&dir), key()).unwrap();
    let b = SqliteStore::open(&db_path(&dir), key()).unwrap();
    let long_ago_ms = 1_000_000_000_000;
    let far = i64::MAX / 2;
    assert!(a.try_lock("refresh:m:1", "a", far).await.unwrap());
    assert!(
        !b.try_lock("refresh:m:1", "b", far).await.unwrap(),
        "held by a"
    );
    assert!(
        a.try_lock("refresh:m:1", "a", far).await.unwrap(),
        "a may renew its own"
    );
    assert!(
        b.try_lock("refresh:m:2", "b", far).await.unwrap(),
        "another name is free"
    );
    b.unlock("refresh:m:1", "b").await.unwrap();
    assert!(
        !b.try_lock("refresh:m:1", "b", far).await.unwrap(),
        "only the holder unlocks"
    );
    a.unlock("refresh:m:1", "a").await.unwrap();
    assert!(b.try_lock("refresh:m:1", "b", far).await.unwrap());
    // An expired lock (a holder that crashed) is free.
    assert!(a.try_lock("refresh:m:3", "a", long_ago_ms).await.unwrap());
    assert!(b.try_lock("refresh:m:3", "b", far).await.unwrap());
}

#[test]
fn a_store_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(SqliteStore::open(&path, key()).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = raw
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4, "every migration ran");
    raw.pragma_update(None, "user_version", 99).unwrap();
    drop(raw);
    let err = SqliteStore::open(&path, key()).unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(ref m) if m.contains("99")),
        "{err:?}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path);
    store.put_person(person("m1", 1)).await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    for (suffix, _) in database_bytes(&path) {
        let mut name = path.as_os_str().to_owned();
        name.push(&suffix);
        assert_eq!(mode(Path::new(&name)), 0o600, "store{suffix}");
    }
    let key_path = default_key_path(&path);
    let (_, created) = StoreKey::load_or_create(&key_path).unwrap();
    assert!(created);
    assert_eq!(mode(&key_path), 0o600);
}

#[test]
fn a_key_file_is_created_once_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("new-dir").join("store.sqlite3.key");
    let (first, created) = StoreKey::load_or_create(&key_path).unwrap();
    assert!(created);
    let text = std::fs::read_to_string(&key_path).unwrap();
    assert_eq!(text.len(), 64);
    assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
    let (second, created) = StoreKey::load_or_create(&key_path).unwrap();
    assert!(!created);
    // Same key: what one seals the other opens.
    let sealed = first.seal("value", b"aad").unwrap();
    assert_eq!(
        second.open(&sealed, b"aad").unwrap().expose_secret(),
        "value"
    );
    assert!(matches!(
        second.open(&sealed, b"other"),
        Err(StoreError::WrongKey)
    ));

    std::fs::write(&key_path, "not a key").unwrap();
    let err = StoreKey::load_or_create(&key_path).unwrap_err();
    assert!(matches!(err, StoreError::Key(_)), "{err:?}");
}

#[test]
fn keys_are_64_hex_characters() {
    assert!(StoreKey::from_hex(&format!("  {KEY}\n")).is_ok());
    assert!(StoreKey::from_hex(&KEY.to_uppercase()).is_ok());
    for bad in [
        "",
        &KEY[..62],
        &format!("{KEY}00"),
        &KEY.replace('0', "g"),
        &"é".repeat(32),
    ] {
        let err = StoreKey::from_hex(bad).unwrap_err();
        assert!(matches!(err, StoreError::Key(_)), "{bad:?}");
        assert!(!err.to_string().contains(&KEY[..16]), "{err}");
    }
}

#[test]
fn the_default_paths_sit_under_the_data_directory() {
    if let Some(path) = default_path() {
        assert!(path.is_absolute());
        assert!(
            path.ends_with("bitrix24-task-results-mcp/store.sqlite3"),
            "{path:?}"
        );
    }
    let key = default_key_path(Path::new("/data/store.sqlite3"));
    assert_eq!(key, Path::new("/data/store.sqlite3.key"));
}

#[test]
fn token_hashes_compare_by_value_and_print_a_prefix_only() {
    let a = TokenHash::of("token");
    assert_eq!(a, TokenHash::of("token"));
    assert_ne!(a, TokenHash::of("token2"));
    assert_eq!(TokenHash::from_bytes(*a.as_bytes()), a);
    let full: String = a.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let shown = format!("{a:?}");
    assert!(
        shown.starts_with("TokenHash(") && shown.contains(&full[..8]),
        "{shown}"
    );
    assert!(!shown.contains(&full[..16]), "{shown}");
}

#[tokio::test]
async fn no_record_prints_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir), key()).unwrap();
    store.put_person(person("m1", 1)).await.unwrap();
    let read_back = store.person("m1", 1).await.unwrap().unwrap();
    let hash = TokenHash::of("our-token");
    let full: String = hash.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let mut token = issued("our-token", "g1", TokenKind::Refresh, NOW);
    token.hash = hash;
    let shown = [
        format!("{:?}", person("m1", 1)),
        format!("{read_back:?}"),
        format!("{:?}", tokens(ACCESS, REFRESH)),
        format!("{:?}", pending("our-token", NOW)),
        format!("{:?}", code("our-token", NOW)),
        format!("{token:?}"),
        format!("{:?}", RefreshUse::Fresh(grant("g1", "m1", 1))),
        format!("{:?}", key()),
        format!("{store:?}"),
        format!("{:?}", StoreError::WrongKey),
    ];
    for text in &shown {
        for secret in [ACCESS, REFRESH, "our-token", &full[..16], KEY, &KEY[..16]] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

async fn live(store: &dyn Store, token: &str, now: i64) -> bool {
    store
        .token(&TokenHash::of(token), now)
        .await
        .unwrap()
        .is_some()
}

/// Rows in `table` of the database file, counted by a connection of the test's own.
fn stored_rows(path: &Path, table: &str) -> usize {
    let conn = rusqlite::Connection::open(path).unwrap();
    let count: i64 = conn
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap();
    usize::try_from(count).unwrap()
}

#[tokio::test]
async fn a_refresh_token_works_once_and_a_reuse_after_the_window_revokes_the_grant() {
    let (_dir, store) = fresh();
    signed_in(store.as_ref()).await;
    let rt1 = TokenHash::of("rt1");
    let RefreshUse::Fresh(got) = store
        .use_refresh(&rt1, NOW, rotation("at2", "rt2", 0))
        .await
        .unwrap()
    else {
        panic!("first use is fresh");
    };
    assert_eq!(got, grant("g1", "m1", 1));
    // The rotated pair is live at once: the store wrote it with the use.
    assert!(live(store.as_ref(), "at2", NOW).await);

    // Replaying the old one with no grace: the grant and everything issued on it end.
    assert_eq!(
        store
            .use_refresh(&rt1, NOW, rotation("at3", "rt3", 0))
            .await
            .unwrap(),
        RefreshUse::Reused {
            grant_id: "g1".into()
        }
    );
    assert!(store.grant("g1").await.unwrap().unwrap().revoked);
    assert!(!live(store.as_ref(), "at1", NOW).await);
    assert!(!live(store.as_ref(), "at2", NOW).await);
    assert!(!live(store.as_ref(), "at3", NOW).await);
    for spent in ["rt2", "rt1", "rt3"] {
        assert_eq!(
            store
                .use_refresh(&TokenHash::of(spent), NOW, rotation("at4", "rt4", 0))
                .await
                .unwrap(),
            RefreshUse::Unknown,
            "{spent}"
        );
    }
    // It was the person's last grant: their Bitrix24 tokens are gone too.
    assert!(store.person("m1", 1).await.unwrap().is_none());
}

#[tokio::test]
async fn a_repeat_within_the_grace_window_gets_the_same_pair_and_revokes_nothing() {
    let (_dir, store) = fresh();
    signed_in(store.as_ref()).await;
    let rt1 = TokenHash::of("rt1");
    let first = store
        .use_refresh(&rt1, NOW, rotation("at2", "rt2", 30))
        .await
        .unwrap();
    assert_eq!(first, RefreshUse::Fresh(grant("g1", "m1", 1)));
    // The last second of the window still counts.
    let again = store
        .use_refresh(&rt1, NOW + 30, rotation("at3", "rt3", 30))
        .await
        .unwrap();
    let RefreshUse::Repeat(got, pair) = again else {
        panic!("a repeat within the window: {again:?}");
    };
    assert_eq!(got, grant("g1", "m1", 1));
    assert_eq!(
        (
            pair.access.expose_secret(),
            pair.refresh.expose_secret(),
            pair.access_expires_at
        ),
        ("at2", "rt2", NOW + 3600)
    );
    // The repeat issued nothing of its own, and ended nothing.
    assert!(!live(store.as_ref(), "at3", NOW).await);
    assert!(live(store.as_ref(), "at2", NOW).await);
    assert!(live(store.as_ref(), "at1", NOW).await);
    assert!(!store.grant("g1").await.unwrap().unwrap().revoked);

    // After the window the same token is a reuse again.
    assert_eq!(
        store
            .use_refresh(&rt1, NOW + 31, rotation("at4", "rt4", 30))
            .await
            .unwrap(),
        RefreshUse::Reused {
            grant_id: "g1".into()
        }
    );
    assert!(!live(store.as_ref(), "at2", NOW + 31).await);
}

#[tokio::test]
async fn a_repeat_after_the_pair_moved_on_is_refused_without_revoking() {
    let (_dir, store) = fresh();
    signed_in(store.as_ref()).await;
    let first = store
        .use_refresh(&TokenHash::of("rt1"), NOW, rotation("at2", "rt2", 30))
        .await
        .unwrap();
    assert!(matches!(first, RefreshUse::Fresh(_)));
    let second = store
        .use_refresh(&TokenHash::of("rt2"), NOW + 1, rotation("at3", "rt3", 30))
        .await
        .unwrap();
    assert!(matches!(second, RefreshUse::Fresh(_)));
    // rt1 within its window, but its pair was refreshed already: nothing to give back.
    assert_eq!(
        store
            .use_refresh(&TokenHash::of("rt1"), NOW + 2, rotation("at4", "rt4", 30))
            .await
            .unwrap(),
        RefreshUse::Unknown
    );
    assert!(!store.grant("g1").await.unwrap().unwrap().revoked);
    assert!(live(store.as_ref(), "at3", NOW + 2).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_one_is_fresh_the_others_get_its_pair() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let first = open(&path);
    let second = open(&path);
    first.put_person(person("m1", 1)).await.unwrap();
    for round in 0..10 {
        let grant_id = format!("g{round}");
        let value = format!("rt-{round}");
        first.put_grant(grant(&grant_id, "m1", 1)).await.unwrap();
        let refresh = issued(&value, &grant_id, TokenKind::Refresh, NOW + 600);
        first.put_token(refresh).await.unwrap();
        let tasks: Vec<_> = [&first, &second, &first, &second]
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let store = Arc::clone(store);
                let value = value.clone();
                let next = rotation(&format!("at-{round}-{i}"), &format!("rt-{round}-{i}"), 30);
                tokio::spawn(async move {
                    (
                        i,
                        store.use_refresh(&TokenHash::of(&value), NOW, next).await,
                    )
                })
            })
            .collect();
        let mut fresh = Vec::new();
        let mut repeats = Vec::new();
        for task in tasks {
            let (i, used) = task.await.unwrap();
            match used.unwrap() {
                RefreshUse::Fresh(g) => {
                    assert_eq!(g.id, grant_id);
                    fresh.push(i);
                }
                RefreshUse::Repeat(g, pair) => {
                    assert_eq!(g.id, grant_id);
                    repeats.push(pair.refresh.expose_secret().to_string());
                }
                other => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(fresh.len(), 1, "round {round}");
        let winner = format!("rt-{round}-{}", fresh[0]);
        assert_eq!(repeats, vec![winner.clone(); 3], "round {round}");
        assert!(!first.grant(&grant_id).await.unwrap().unwrap().revoked);
        let access = format!("at-{round}-{}", fresh[0]);
        assert!(live(first.as_ref(), &access, NOW).await);
    }
}

#[tokio::test]
async fn fifty_refreshes_leave_a_bounded_number_of_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let handle = db_path(&dir);
    let store = open(&handle);
    signed_in(store.as_ref()).await;
    let mut current = "rt1".to_string();
    for i in 2..52 {
        let (access, refresh) = (format!("at{i}"), format!("rt{i}"));
        let at = NOW + i;
        let used = store
            .use_refresh(
                &TokenHash::of(&current),
                at,
                rotation(&access, &refresh, 30),
            )
            .await
            .unwrap();
        assert!(matches!(used, RefreshUse::Fresh(_)), "{i}: {used:?}");
        current = refresh;
    }
    // Kept: the latest spent refresh token (reuse detection), the live one, and the
    // access tokens of the last two generations; one repeat window.
    assert_eq!(stored_rows(&handle, "tokens"), 4);
    assert_eq!(stored_rows(&handle, "rotations"), 1);
    assert!(live(store.as_ref(), "at51", NOW + 52).await);
    assert!(live(store.as_ref(), "at50", NOW + 52).await);
    assert!(!live(store.as_ref(), "at49", NOW + 52).await);
    // The latest spent token still trips reuse detection after its window.
    assert_eq!(
        store
            .use_refresh(&TokenHash::of("rt50"), NOW + 200, rotation("x", "y", 30))
            .await
            .unwrap(),
        RefreshUse::Reused {
            grant_id: "g1".into()
        }
    );
}

#[tokio::test]
async fn looking_up_a_refresh_tokens_grant_spends_nothing() {
    let (_dir, store) = fresh();
    signed_in(store.as_ref()).await;
    let rt1 = TokenHash::of("rt1");
    for _ in 0..2 {
        let found = store.refresh_token_grant(&rt1, NOW).await.unwrap();
        assert_eq!(found, Some(grant("g1", "m1", 1)));
    }
    for (token, at) in [("rt1", NOW + 86_400), ("at1", NOW), ("nope", NOW)] {
        let found = store.refresh_token_grant(&TokenHash::of(token), at).await;
        assert_eq!(found.unwrap(), None, "{token}");
    }
    assert!(matches!(
        store
            .use_refresh(&rt1, NOW, rotation("at2", "rt2", 30))
            .await
            .unwrap(),
        RefreshUse::Fresh(_)
    ));
    // Spent but within reach of reuse detection: still found.
    let found = store.refresh_token_grant(&rt1, NOW).await.unwrap();
    assert_eq!(found, Some(grant("g1", "m1", 1)));
    store.revoke_grant("g1").await.unwrap();
    let found = store.refresh_token_grant(&TokenHash::of("rt2"), NOW).await;
    assert_eq!(found.unwrap(), None);
}

#[tokio::test]
async fn the_last_grant_revoked_deletes_the_persons_bitrix24_tokens() {
    let (_dir, store) = fresh();
    signed_in(store.as_ref()).await;
    store.put_grant(grant("g2", "m1", 1)).await.unwrap();
    store
        .put_token(issued("rt-g2", "g2", TokenKind::Refresh, NOW + 86_400))
        .await
        .unwrap();
    // Another live grant keeps them signed in.
    store.revoke_token(&TokenHash::of("rt1")).await.unwrap();
    assert!(store.person("m1", 1).await.unwrap().is_some());
    assert_eq!(store.people().await.unwrap().len(), 1);
    // /revoke of the last one's refresh token: gone, and not listed.
    store.revoke_token(&TokenHash::of("rt-g2")).await.unwrap();
    assert!(store.person("m1", 1).await.unwrap().is_none());
    assert!(store.people().await.unwrap().is_empty());

    // A code waiting to be exchanged keeps them: that sign-in is in progress.
    store.put_person(person("m1", 2)).await.unwrap();
    store.put_grant(grant("g3", "m1", 2)).await.unwrap();
    let mut waiting = code("k2", NOW + 60);
    waiting.user_id = 2;
    store.put_code(waiting).await.unwrap();
    store.revoke_grant("g3").await.unwrap();
    assert!(store.person("m1", 2).await.unwrap().is_some());
    // revoke_grant of the last one, with no code: gone.
    store.take_code(&TokenHash::of("k2"), NOW).await.unwrap();
    store.put_grant(grant("g4", "m1", 2)).await.unwrap();
    store.revoke_grant("g4").await.unwrap();
    assert!(store.person("m1", 2).await.unwrap().is_none());
}

#[tokio::test]
async fn purge_forgets_people_whose_tokens_expired_and_unused_clients_within_minutes() {
    let (_dir, store) = fresh();
    store.put_client(client("unused")).await.unwrap();
    store.put_client(client("c1")).await.unwrap();
    signed_in(store.as_ref()).await;
    let mut signing_in = client("signing-in");
    signing_in.created_at = NOW;
    store.put_client(signing_in).await.unwrap();
    let mut waiting = pending("s9", NOW + 3600);
    waiting.client_id = "signing-in".into();
    store.put_pending(waiting, NOW).await.unwrap();

    // Fifteen minutes: the registration that never signed anyone in is gone; the one
    // with a sign-in in progress and the one in use stay.
    store.purge_expired(NOW + 15 * 60).await.unwrap();
    assert!(store.client("unused").await.unwrap().is_none());
    assert!(store.client("signing-in").await.unwrap().is_some());
    assert!(store.client("c1").await.unwrap().is_some());
    assert!(store.person("m1", 1).await.unwrap().is_some());

    // Every token of the grant expired: the grant goes, and with it the person.
    store.purge_expired(NOW + 2 * 86_400).await.unwrap();
    assert!(store.grant("g1").await.unwrap().is_none());
    assert!(store.person("m1", 1).await.unwrap().is_none());
}
