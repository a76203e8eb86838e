//! The Redis sign-in store against a real `redis-server` this test starts itself: the
//! same behaviours as tests/store_sqlite.rs (single use under concurrency, refresh reuse,
//! bounds, a second store's revocation, the key check), plus what is Redis's own: records
//! expire in Redis at their `expires_at`, no key or value holds a token in clear, and a
//! Redis that stops and comes back on the same port is used again without reopening.
//!
//! Long because it covers the whole `Store` trait; each test is one behaviour.

use crate::support::redis_support;

use std::sync::Arc;
use std::time::Duration;

use bitrix24_task_results_mcp::store::{
    AuthCode, BitrixTokens, ClientRecord, Grant, IssuedToken, Limits, PendingAuth, Person,
    RedisOptions, RedisStore, RedisUrl, RefreshUse, Rotation, Store, StoreError, StoreKey,
    TokenHash, TokenKind,
};
use redis_support::RedisServer;
use secrecy::{ExposeSecret, SecretString};

/// Far enough ahead that nothing a test writes expires in Redis while it runs.
const NOW: i64 = 4_000_000_000;
const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const ACCESS: &str = "bitrix-access-7f3c1e9a2b";
const REFRESH: &str = "bitrix-refresh-5d8e0a4c6f";
/// A pair a refresh issues in the tests that search the stored bytes for it.
const ROTATED: [&str; 2] = ["our-rotated-access-71c2e0", "our-rotated-refresh-93d4b8"];

fn key() -> StoreKey {
    StoreKey::from_hex(KEY).expect("test key")
}

fn url(server: &RedisServer) -> RedisUrl {
    RedisUrl::parse(&server.url(0)).expect("a Redis URL")
}

async fn open(server: &RedisServer) -> Arc<dyn Store> {
    Arc::new(
        RedisStore::open(&url(server), key())
            .await
            .expect("open store"),
    )
}

async fn with_limits(server: &RedisServer, limits: Limits) -> RedisStore {
    let options = RedisOptions {
        limits,
        ..RedisOptions::default()
    };
    RedisStore::open_with(&url(server), key(), options)
        .await
        .expect("open store")
}

async fn fresh() -> (RedisServer, Arc<dyn Store>) {
    let server = RedisServer::start();
    let store = open(&server).await;
    (server, store)
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

async fn live(store: &dyn Store, token: &str, now: i64) -> bool {
    store
        .token(&TokenHash::of(token), now)
        .await
        .unwrap()
        .is_some()
}

fn hex(hash: &TokenHash) -> String {
    hash.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// A plain connection for looking at what the store wrote.
fn raw(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url(0))
        .and_then(|c| c.get_connection())
        .expect("a raw Redis connection")
}

#[tokio::test]
async fn clients_are_stored_replaced_and_looked_up() {
    let (_server, store) = fresh().await;
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
    let server = RedisServer::start();
    let limits = Limits {
        clients: 2,
        pending: 10,
    };
    let store = with_limits(&server, limits).await;
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
    let (_server, store) = fresh().await;
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
    let nope = TokenHash::of("nope");
    assert_eq!(store.take_pending(&nope, NOW).await.unwrap(), None);
    // Expired: not returned, and gone.
    let s2 = TokenHash::of("s2");
    assert_eq!(store.take_pending(&s2, NOW + 600).await.unwrap(), None);
    assert_eq!(store.take_pending(&s2, NOW).await.unwrap(), None);
}

#[tokio::test]
async fn pending_past_the_bound_is_refused_and_expired_ones_do_not_count() {
    let server = RedisServer::start();
    let limits = Limits {
        clients: 10,
        pending: 2,
    };
    let store = with_limits(&server, limits).await;
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
    let taken = store.take_pending(&TokenHash::of("c"), NOW + 10).await;
    assert!(taken.unwrap().is_some());
    // A taken one frees its place too.
    store
        .put_pending(pending("d", NOW + 600), NOW + 10)
        .await
        .unwrap();
}

#[tokio::test]
async fn codes_are_single_use_and_expire() {
    let (_server, store) = fresh().await;
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
    let server = RedisServer::start();
    // Two stores: two connections, as two replicas would have.
    let first = open(&server).await;
    let second = open(&server).await;
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
    let (_server, store) = fresh().await;
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
    again.tokens.scope = None;
    again.created_at = NOW + 100;
    again.last_used_at = NOW + 100;
    store.put_person(again).await.unwrap();
    let got = store.person("m1", 1).await.unwrap().unwrap();
    assert_eq!(got.tokens.access.expose_secret(), "access-2");
    assert_eq!(got.tokens.scope, None);
    assert_eq!((got.created_at, got.last_used_at), (NOW, NOW + 100));

    let mut refreshed = tokens("access-3", "refresh-3");
    refreshed.expires_at = NOW + 7200;
    refreshed.server_endpoint = None;
    store.set_person_tokens("m1", 1, refreshed).await.unwrap();
    let got = store.person("m1", 1).await.unwrap().unwrap();
    assert_eq!(got.tokens.refresh.expose_secret(), "refresh-3");
    assert_eq!(got.tokens.expires_at, NOW + 7200);
    assert_eq!(got.tokens.server_endpoint, None);
    assert_eq!(got.tokens.scope.as_deref(), Some("tasks,im"));

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
    let (_server, store) = fresh().await;
    store.put_person(person("m1", 1)).await.unwrap();
    store.revoke_person(Some("m1"), 1).await.unwrap();
    store
        .set_person_tokens("m1", 1, tokens("a", "r"))
        .await
        .unwrap();
    store.touch_person("m1", 1, NOW + 999).await.unwrap();
    assert!(store.person("m1", 1).await.unwrap().is_none());
    assert!(store.people().await.unwrap().is_empty());
}

#[tokio::test]
async fn access_tokens_resolve_to_their_grant_until_expiry_or_revocation() {
    let (_server, store) = fresh().await;
    signed_in(store.as_ref()).await;
    assert_eq!(store.grant("g1").await.unwrap(), Some(grant("g1", "m1", 1)));
    assert!(store.grant("g2").await.unwrap().is_none());

    let at1 = TokenHash::of("at1");
    let (token, got) = store.token(&at1, NOW).await.unwrap().unwrap();
    assert_eq!(token, issued("at1", "g1", TokenKind::Access, NOW + 3600));
    assert_eq!(got, grant("g1", "m1", 1));
    assert!(store.token(&at1, NOW + 3600).await.unwrap().is_none());
    // A refresh token is never a bearer token.
    assert!(!live(store.as_ref(), "rt1", NOW).await);
    assert!(!live(store.as_ref(), "unknown", NOW).await);

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
    assert!(store.grant("no-such-grant").await.unwrap().is_none());
}

#[tokio::test]
async fn an_expired_or_foreign_refresh_token_is_unknown() {
    let (_server, store) = fresh().await;
    signed_in(store.as_ref()).await;
    let rt1 = TokenHash::of("rt1");
    assert_eq!(
        store
            .use_refresh(&rt1, NOW + 86_400, rotation("at-next", "rt-next", 30))
            .await
            .unwrap(),
        RefreshUse::Unknown
    );
    // Expiry did not use it up.
    assert!(!store.grant("g1").await.unwrap().unwrap().revoked);
    for other in ["at1", "nope"] {
        assert_eq!(
            store
                .use_refresh(
                    &TokenHash::of(other),
                    NOW,
                    rotation("at-next", "rt-next", 30)
                )
                .await
                .unwrap(),
            RefreshUse::Unknown
        );
    }
}

#[tokio::test]
async fn revoking_an_access_token_ends_it_alone_a_refresh_token_its_grant() {
    let (_server, store) = fresh().await;
    signed_in(store.as_ref()).await;
    store
        .put_token(issued("at2", "g1", TokenKind::Access, NOW + 3600))
        .await
        .unwrap();
    store.revoke_token(&TokenHash::of("at1")).await.unwrap();
    assert!(!live(store.as_ref(), "at1", NOW).await);
    assert!(live(store.as_ref(), "at2", NOW).await);
    store.revoke_token(&TokenHash::of("rt1")).await.unwrap();
    assert!(!live(store.as_ref(), "at2", NOW).await);
    assert!(store.grant("g1").await.unwrap().unwrap().revoked);
    store
        .revoke_token(&TokenHash::of("never-issued"))
        .await
        .unwrap();
}

#[tokio::test]
async fn revoking_a_person_from_a_second_store_takes_effect_at_once() {
    let redis = RedisServer::start();
    let server = open(&redis).await;
    signed_in(server.as_ref()).await;
    server.put_grant(grant("g2", "m1", 1)).await.unwrap();
    server.put_person(person("m2", 1)).await.unwrap();
    server.put_grant(grant("g3", "m2", 1)).await.unwrap();
    server.put_person(person("m1", 2)).await.unwrap();
    server.put_grant(grant("g4", "m1", 2)).await.unwrap();
    server.put_code(code("k1", NOW + 60)).await.unwrap();
    assert!(live(server.as_ref(), "at1", NOW).await);

    // `users revoke` (or another replica) opens its own store on the same Redis.
    let admin = open(&redis).await;
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

    assert!(!live(server.as_ref(), "at1", NOW).await);
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
    let k1 = TokenHash::of("k1");
    assert!(server.take_code(&k1, NOW).await.unwrap().is_none());
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
    let (_server, store) = fresh().await;
    store.put_person(person("m1", 1)).await.unwrap();
    let mut later = person("m1", 2);
    later.last_used_at = NOW + 50;
    store.put_person(later).await.unwrap();
    // A member id with the separator in it stays one member id.
    store.put_person(person("m:3", 3)).await.unwrap();
    store.put_grant(grant("g1", "m1", 1)).await.unwrap();
    store.put_grant(grant("g2", "m1", 1)).await.unwrap();
    store.revoke_grant("g2").await.unwrap();
    store.put_grant(grant("g3", "m:3", 3)).await.unwrap();
    let people = store.people().await.unwrap();
    let order: Vec<_> = people
        .iter()
        .map(|p| (p.member_id.as_str(), p.user_id, p.grants))
        .collect();
    // User 2 has no live grant: not signed in, so not listed.
    assert_eq!(order, vec![("m1", 1, 1), ("m:3", 3, 1)]);
}

#[tokio::test]
async fn purge_removes_what_expired_and_abandoned_registrations_only() {
    let (_server, store) = fresh().await;
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
    let s1 = TokenHash::of("s1");
    assert!(store.take_pending(&s1, NOW).await.unwrap().is_none());
    let k1 = TokenHash::of("k1");
    assert!(store.take_code(&k1, NOW).await.unwrap().is_none());
    // The access token expired; the refresh token (a day) too, at `later`.
    assert!(!live(store.as_ref(), "at1", NOW).await);
    assert!(store.grant("g2").await.unwrap().is_none());
    assert!(store.grant("g1").await.unwrap().is_none());
    assert!(store.client("abandoned").await.unwrap().is_none());
    assert!(store.client("c1").await.unwrap().is_some());
    // Every grant of theirs ended: their Bitrix24 tokens have no use left.
    assert!(store.person("m1", 1).await.unwrap().is_none());
    assert!(store.people().await.unwrap().is_empty());
}

#[tokio::test]
async fn purge_keeps_what_is_still_alive() {
    let (_server, store) = fresh().await;
    signed_in(store.as_ref()).await;
    store.put_grant(grant("g-new", "m1", 1)).await.unwrap();
    store.put_client(client("young")).await.unwrap();
    store.purge_expired(NOW + 10).await.unwrap();
    assert!(live(store.as_ref(), "at1", NOW + 10).await);
    assert!(store.grant("g-new").await.unwrap().is_some());
    assert!(store.client("young").await.unwrap().is_some());
}

#[tokio::test]
async fn records_expire_in_redis_at_their_expires_at() {
    let server = RedisServer::start();
    let store = open(&server).await;
    signed_in(store.as_ref()).await;
    store
        .put_pending(pending("s1", NOW + 600), NOW)
        .await
        .unwrap();
    store.put_code(code("k1", NOW + 60)).await.unwrap();
    let mut conn = raw(&server);
    let expire_time = |conn: &mut redis::Connection, key: String| -> i64 {
        redis::cmd("PEXPIRETIME").arg(key).query(conn).unwrap()
    };
    let h = |v: &str| hex(&TokenHash::of(v));
    let cases = [
        (format!("b24mcp:pending:{}", h("s1")), NOW + 600),
        (format!("b24mcp:code:{}", h("k1")), NOW + 60),
        (format!("b24mcp:token:{}", h("at1")), NOW + 3600),
        (format!("b24mcp:token:{}", h("rt1")), NOW + 86_400),
    ];
    for (name, at) in cases {
        assert_eq!(expire_time(&mut conn, name.clone()), at * 1000, "{name}");
    }
    // Sign-ins themselves do not expire.
    assert_eq!(expire_time(&mut conn, "b24mcp:person:1:m1".into()), -1);
    assert_eq!(expire_time(&mut conn, "b24mcp:grant:g1".into()), -1);

    // Already past in Redis's clock: never readable, whatever `now` the caller passes.
    let past = 1_000_000_000;
    store.put_code(code("old", past)).await.unwrap();
    store
        .put_token(issued("at-old", "g1", TokenKind::Access, past))
        .await
        .unwrap();
    store
        .put_pending(pending("s-old", past), past - 10)
        .await
        .unwrap();
    let exists = |conn: &mut redis::Connection, key: String| -> bool {
        redis::cmd("EXISTS").arg(key).query(conn).unwrap()
    };
    assert!(!exists(&mut conn, format!("b24mcp:code:{}", h("old"))));
    assert!(!exists(&mut conn, format!("b24mcp:token:{}", h("at-old"))));
    let old = TokenHash::of("old");
    assert!(store.take_code(&old, past - 10).await.unwrap().is_none());
    assert!(!live(store.as_ref(), "at-old", past - 10).await);
    let s_old = TokenHash::of("s-old");
    assert!(
        store
            .take_pending(&s_old, past - 10)
            .await
            .unwrap()
            .is_none()
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every key's name, its `DUMP`, and its values read by type: a value that `DUMP`
/// compresses is still searched in clear.
fn everything(server: &RedisServer) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut conn = raw(server);
    let names: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    let listed = server.cli(&["--scan"]);
    let mut scanned: Vec<&str> = listed.lines().collect();
    scanned.sort_unstable();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(scanned, sorted, "redis-cli --scan lists the same keys");
    names
        .into_iter()
        .map(|name| {
            let mut blobs: Vec<Vec<u8>> = vec![name.clone().into_bytes()];
            let dump: Vec<u8> = redis::cmd("DUMP").arg(&name).query(&mut conn).unwrap();
            blobs.push(dump);
            let kind: String = redis::cmd("TYPE").arg(&name).query(&mut conn).unwrap();
            let values: Vec<Vec<u8>> = match kind.as_str() {
                "string" => vec![redis::cmd("GET").arg(&name).query(&mut conn).unwrap()],
                "hash" => redis::cmd("HGETALL").arg(&name).query(&mut conn).unwrap(),
                "set" => redis::cmd("SMEMBERS").arg(&name).query(&mut conn).unwrap(),
                "zset" => redis::cmd("ZRANGE")
                    .arg(&name)
                    .arg(0)
                    .arg(-1)
                    .query(&mut conn)
                    .unwrap(),
                other => panic!("unexpected key type {other} for {name}"),
            };
            blobs.extend(values);
            (name, blobs)
        })
        .collect()
}

#[tokio::test]
async fn redis_holds_no_token_or_secret_in_clear() {
    let server = RedisServer::start();
    let store = open(&server).await;
    let ours = [
        "our-access-3b8c1f0e9d",
        "our-refresh-6a2d4e8f1c",
        "our-code-9e1f",
        "our-state-2c7a",
        "client-secret-in-clear-0123",
    ];
    let theirs = [
        ACCESS,
        REFRESH,
        "bitrix-access-rotated-44",
        "bitrix-refresh-rotated-55",
    ];
    let mut confidential = client("confidential");
    confidential.secret_hash = Some(TokenHash::of(ours[4]));
    store.put_client(confidential.clone()).await.unwrap();
    store.put_person(person("m1", 1)).await.unwrap();
    store.put_person(person("m1", 2)).await.unwrap();
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

    let all = everything(&server);
    // The rows are in what is searched (in clear, not being secrets).
    let domain = b"portal.example.com";
    assert!(
        all.iter()
            .any(|(_, blobs)| blobs.iter().any(|b| contains(b, domain))),
        "the search reaches the records"
    );
    assert!(all.len() >= 10, "{} keys", all.len());
    for (name, blobs) in &all {
        for blob in blobs {
            for secret in ours.iter().chain(theirs.iter()).chain(ROTATED.iter()) {
                assert!(!contains(blob, secret.as_bytes()), "{secret} in {name}");
            }
        }
    }
    // And everything still reads back.
    let got = store.person("m1", 1).await.unwrap().unwrap();
    assert_eq!(got.tokens.access.expose_secret(), theirs[2]);
    assert_eq!(
        store.client("confidential").await.unwrap(),
        Some(confidential)
    );
}

#[tokio::test]
async fn another_key_is_refused_with_a_clear_error() {
    let server = RedisServer::start();
    open(&server)
        .await
        .put_person(person("m1", 1))
        .await
        .unwrap();
    let other = StoreKey::from_hex(&"ab".repeat(32)).unwrap();
    let err = RedisStore::open(&url(&server), other).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    assert!(err.to_string().contains("MCP_STORE_KEY"), "{err}");
    // The right key still opens it.
    assert!(open(&server).await.person("m1", 1).await.unwrap().is_some());
    // Another prefix is another store, with a key of its own.
    let options = RedisOptions {
        prefix: "elsewhere:".into(),
        ..RedisOptions::default()
    };
    let other = StoreKey::from_hex(&"ab".repeat(32)).unwrap();
    let elsewhere = RedisStore::open_with(&url(&server), other, options)
        .await
        .unwrap();
    assert!(elsewhere.person("m1", 1).await.unwrap().is_none());
}

#[tokio::test]
async fn a_token_moved_to_another_person_does_not_open() {
    let server = RedisServer::start();
    let store = open(&server).await;
    store.put_person(person("m1", 1)).await.unwrap();
    store.put_person(person("m1", 2)).await.unwrap();
    // Someone with write access to Redis copies person 1's token onto person 2, and swaps
    // person 1's access and refresh tokens.
    let mut conn = raw(&server);
    let get = |conn: &mut redis::Connection, key: &str, field: &str| -> Vec<u8> {
        redis::cmd("HGET").arg(key).arg(field).query(conn).unwrap()
    };
    let set = |conn: &mut redis::Connection, key: &str, field: &str, value: &[u8]| {
        let _: () = redis::cmd("HSET")
            .arg(key)
            .arg(field)
            .arg(value)
            .query(conn)
            .unwrap();
    };
    let (one, two) = ("b24mcp:person:1:m1", "b24mcp:person:2:m1");
    let access = get(&mut conn, one, "access");
    let refresh = get(&mut conn, one, "refresh");
    set(&mut conn, two, "access", &access);
    set(&mut conn, one, "access", &refresh);
    set(&mut conn, one, "refresh", &access);
    for user_id in [1, 2] {
        let err = store.person("m1", user_id).await.unwrap_err();
        assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    }
}

/// Retries `call` until it succeeds: a write is never repeated by the store itself.
async fn until_ok<T>(mut call: impl AsyncFnMut() -> Result<T, StoreError>) -> T {
    for _ in 0..100 {
        if let Ok(value) = call().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the store did not recover after Redis came back");
}

/// A call that must fail, bounded so that a hang fails the test instead of stalling it.
async fn fails_unavailable<T: std::fmt::Debug>(
    call: impl Future<Output = Result<T, StoreError>>,
) -> String {
    let outcome = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("a call while Redis is down returns instead of hanging");
    match outcome {
        Err(StoreError::Unavailable(why)) => why,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_fails_calls_and_a_restart_is_used_without_reopening() {
    let mut server = RedisServer::start();
    let store = open(&server).await;
    signed_in(store.as_ref()).await;
    assert!(live(store.as_ref(), "at1", NOW).await);

    server.stop();
    let started = std::time::Instant::now();
    let why = fails_unavailable(store.token(&TokenHash::of("at1"), NOW)).await;
    assert!(why.contains("Redis"), "{why}");
    fails_unavailable(store.put_code(code("k1", NOW + 60))).await;
    fails_unavailable(store.use_refresh(&TokenHash::of("rt1"), NOW, rotation("a", "r", 30))).await;
    let why = fails_unavailable(store.people()).await;
    assert!(!why.contains(&server.port().to_string()), "{why}");
    // Reported, not asserted (no timed assertions): each call is bounded by CALL_TIMEOUT.
    eprintln!(
        "four calls with Redis down took {:?} in all",
        started.elapsed()
    );

    // Back on the same port, empty (no persistence): the same store object works again,
    // from its first read on (a read that meets the dead connection is asked again).
    server.restart();
    assert!(store.person("m1", 1).await.unwrap().is_none());
    until_ok(async || store.put_person(person("m1", 1)).await).await;
    signed_in(store.as_ref()).await;
    assert!(live(store.as_ref(), "at1", NOW).await);
    let RefreshUse::Fresh(..) = store
        .use_refresh(
            &TokenHash::of("rt1"),
            NOW,
            rotation("at-next", "rt-next", 30),
        )
        .await
        .unwrap()
    else {
        panic!("the scripts are loaded again after the restart");
    };
}

#[tokio::test]
async fn an_unreachable_redis_at_open_is_unavailable() {
    let mut server = RedisServer::start();
    let address = url(&server);
    server.stop();
    let err = tokio::time::timeout(Duration::from_secs(20), RedisStore::open(&address, key()))
        .await
        .expect("opening returns instead of hanging")
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("Redis"), "{err}");
}

#[test]
fn redis_addresses_are_checked_and_never_printed_with_their_password() {
    let with_password = "redis://:pa55-w0rd-secret@127.0.0.1:6390/3";
    let url = RedisUrl::parse(with_password).unwrap();
    assert_eq!(url.shown(), "redis://127.0.0.1:6390/3");
    assert!(!format!("{url:?}").contains("pa55-w0rd-secret"));
    assert!(!url.is_tls());
    let tls = RedisUrl::parse("rediss://user:pa55-w0rd-secret@redis.example.com").unwrap();
    assert_eq!(tls.shown(), "rediss://redis.example.com/0");
    assert!(tls.is_tls());
    for bad in [
        "redis://",
        "redis:///0",
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:6379/zero",
        "redis://:pa55-w0rd-secret@127.0.0.1:6379/x",
        "redis://127.0.0.1:6379/0?x=1",
    ] {
        let err = RedisUrl::parse(bad).unwrap_err();
        assert!(!err.contains("pa55-w0rd-secret"), "{err}");
        assert!(err.contains("MCP_STORE"), "{err}");
    }
}

#[tokio::test]
async fn no_record_or_store_prints_a_secret() {
    let server = RedisServer::start();
    let store = RedisStore::open(&url(&server), key()).await.unwrap();
    store.put_person(person("m1", 1)).await.unwrap();
    let read_back = store.person("m1", 1).await.unwrap().unwrap();
    let shown = [
        format!("{read_back:?}"),
        format!("{store:?}"),
        format!("{:?}", url(&server)),
    ];
    for text in &shown {
        for secret in [ACCESS, REFRESH, KEY, &KEY[..16]] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

#[tokio::test]
async fn a_lock_is_held_by_one_replica_until_released_or_expired() {
    let server = RedisServer::start();
    let a = open(&server).await;
    let b = open(&server).await;
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
    // A lock whose holder died frees itself when its time is up.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 200;
    assert!(a.try_lock("refresh:m:3", "a", soon).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(b.try_lock("refresh:m:3", "b", far).await.unwrap());
}

#[tokio::test]
async fn a_password_in_the_address_is_used_and_a_wrong_one_is_named_without_its_value() {
    let server = RedisServer::start_with_password("s3cret-pass-4e1d");
    let good = format!("redis://:s3cret-pass-4e1d@127.0.0.1:{}/0", server.port());
    let store = RedisStore::open(&RedisUrl::parse(&good).unwrap(), key())
        .await
        .unwrap();
    store.put_person(person("m1", 1)).await.unwrap();
    assert!(!format!("{store:?}").contains("s3cret-pass-4e1d"));

    for bad in [
        format!("redis://:wrong-pass-9c2a@127.0.0.1:{}/0", server.port()),
        server.url(0),
    ] {
        let err = RedisStore::open(&RedisUrl::parse(&bad).unwrap(), key())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(text.contains("credentials in MCP_STORE"), "{text}");
        assert!(!text.contains("wrong-pass-9c2a"), "{text}");
    }
}

/// Keys of one kind (`tokens`: `token:*`, `rotations`: `rotation:*`) the store holds.
fn stored_rows(server: &RedisServer, table: &str) -> usize {
    let pattern = format!("b24mcp:{}:*", table.trim_end_matches('s'));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query(&mut raw(server))
        .unwrap();
    keys.len()
}

#[tokio::test]
async fn a_refresh_token_works_once_and_a_reuse_after_the_window_revokes_the_grant() {
    let (_server, store) = fresh().await;
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
    let (_server, store) = fresh().await;
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
    let (_server, store) = fresh().await;
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
    let server = RedisServer::start();
    let first = open(&server).await;
    let second = open(&server).await;
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
    let handle = RedisServer::start();
    let store = open(&handle).await;
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
    let (_server, store) = fresh().await;
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
    let (_server, store) = fresh().await;
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
    let (_server, store) = fresh().await;
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
