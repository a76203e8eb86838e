//! The `Store` contract, written once: what the sign-in server relies on from any store,
//! run on every backend (`sqlite::` and `redis::` instantiate each case below with
//! [`contract_cases!`]). Clients, pending authorizations and codes (single use, also
//! under concurrency), people and their Bitrix24 tokens, access and refresh tokens
//! (rotation, a repeat within the grace window, reuse detection), revocation from a
//! second store, bounds, purging, reopening, encryption at rest (nothing in clear in what
//! the backend holds, a sealed token moved elsewhere does not open, another key is
//! refused), locks, and that nothing prints a secret.
//!
//! Long because it covers the whole `Store` trait; each case is one behaviour.

use std::sync::Arc;
use std::time::Duration;

use bitrix24_task_results_mcp::store::{
    AuthCode, BitrixTokens, ClientRecord, Grant, IssuedToken, Limits, PendingAuth, Person,
    RefreshUse, Rotation, Store, StoreError, StoreKey, TokenHash, TokenKind,
};
use secrecy::{ExposeSecret, SecretString};

/// Far enough ahead that nothing a test writes expires (in Redis, by its own clock) while
/// it runs.
pub(crate) const NOW: i64 = 4_000_000_000;
pub(crate) const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
pub(crate) const ACCESS: &str = "bitrix-access-7f3c1e9a2b";
pub(crate) const REFRESH: &str = "bitrix-refresh-5d8e0a4c6f";
/// A pair a refresh issues in the tests that search the stored bytes for it.
const ROTATED: [&str; 2] = ["our-rotated-access-71c2e0", "our-rotated-refresh-93d4b8"];

/// What kind of record [`Backend::stored`] counts.
pub(crate) enum Kept {
    /// Issued access and refresh tokens.
    Tokens,
    /// Repeat windows of refreshes (the pair a repeat gets back).
    Rotations,
}

/// One kind of store under the contract, with what a case needs to look behind it.
pub(crate) trait Backend: Sized {
    /// The store itself (its `Debug` must not show a secret either).
    type Store: Store + std::fmt::Debug;

    /// Empty storage of its own: a temporary directory, a `redis-server` of its own.
    fn start() -> Self;

    /// A store on this storage (each call another one: another connection, as another
    /// process or replica would have) with `key` and `limits`.
    async fn open_with(&self, key: StoreKey, limits: Limits) -> Result<Self::Store, StoreError>;

    /// How many records of `kind` the storage holds (SQLite rows, Redis keys).
    fn stored(&self, kind: Kept) -> usize;

    /// Everything the storage holds, read raw, by place (SQLite: each file; Redis: each
    /// key, its name, its `DUMP` and its values): where a secret in clear would show.
    fn stored_bytes(&self) -> Vec<(String, Vec<Vec<u8>>)>;

    /// At least how many places hold what [`the_stored_bytes_hold_no_token_or_secret_in_clear`]
    /// writes: proof that the search for secrets reaches them.
    const PLACES_OF_EVERY_RECORD: usize;

    /// As someone with write access to the storage could: copies person `(m1, 1)`'s sealed
    /// access token onto person `(m1, 2)`, and swaps `(m1, 1)`'s sealed access and refresh
    /// tokens.
    fn move_sealed_tokens(&self);

    /// Texts besides the store's own `Debug` that must not show a secret.
    fn shown(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Instantiates every case of the contract, in the module it is called in, for backend
/// `$backend`: `sqlite::clients_are_stored_replaced_and_looked_up` and so on. A case
/// written below and not listed here is an unused function: a warning, which CI's clippy
/// (`-D warnings`) refuses.
macro_rules! contract_cases {
    ($backend:ty) => {
        $crate::contract::contract_cases!(@current_thread $backend;
            a_live_store_answers_ping,
            clients_are_stored_replaced_and_looked_up,
            clients_past_the_bound_are_refused_but_known_ones_update,
            pending_authorizations_are_single_use_and_expire,
            pending_past_the_bound_is_refused_and_expired_ones_do_not_count,
            codes_are_single_use_and_expire,
            people_are_upserted_with_their_tokens_and_touched,
            a_refresh_after_revocation_does_not_bring_the_person_back,
            access_tokens_resolve_to_their_grant_until_expiry_or_revocation,
            expired_unknown_and_access_tokens_are_no_refresh_tokens,
            revoking_an_access_token_ends_it_alone_a_refresh_token_its_grant,
            revoking_a_person_from_a_second_store_takes_effect_at_once,
            people_are_listed_most_recent_first_with_live_grants,
            purge_removes_what_expired_and_abandoned_registrations_only,
            purge_keeps_what_is_still_alive,
            a_reopened_store_keeps_everything,
            the_stored_bytes_hold_no_token_or_secret_in_clear,
            a_confidential_client_keeps_only_the_hash_of_its_secret,
            another_key_is_refused_with_a_clear_error,
            a_token_moved_to_another_person_does_not_open,
            no_record_or_store_prints_a_secret,
            a_lock_is_held_by_one_holder_until_released_or_expired,
            a_refresh_token_works_once_and_a_reuse_after_the_window_revokes_the_grant,
            a_repeat_within_the_grace_window_gets_the_same_pair_and_revokes_nothing,
            a_repeat_after_the_pair_moved_on_is_refused_without_revoking,
            fifty_refreshes_leave_a_bounded_number_of_tokens,
            looking_up_a_refresh_tokens_grant_spends_nothing,
            the_last_grant_revoked_deletes_the_persons_bitrix24_tokens,
            purge_forgets_people_whose_tokens_expired_and_unused_clients_within_minutes,
        );
        $crate::contract::contract_cases!(@multi_thread $backend;
            two_takers_of_one_code_or_state_exactly_one_wins,
            concurrent_refreshes_one_is_fresh_the_others_get_its_pair,
        );
    };
    (@current_thread $backend:ty; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::contract::$case::<$backend>().await;
            }
        )*
    };
    (@multi_thread $backend:ty; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::contract::$case::<$backend>().await;
            }
        )*
    };
}
pub(crate) use contract_cases;

pub(crate) fn key() -> StoreKey {
    StoreKey::from_hex(KEY).expect("test key")
}

/// A store on `backend` with the test key.
pub(crate) async fn open<B: Backend>(backend: &B) -> Arc<dyn Store> {
    Arc::new(
        backend
            .open_with(key(), Limits::default())
            .await
            .expect("open store"),
    )
}

/// A store on `backend` with the test key and `limits`.
async fn with_limits<B: Backend>(backend: &B, limits: Limits) -> B::Store {
    backend.open_with(key(), limits).await.expect("open store")
}

/// Fresh storage and a store on it.
async fn fresh<B: Backend>() -> (B, Arc<dyn Store>) {
    let backend = B::start();
    let store = open(&backend).await;
    (backend, store)
}

pub(crate) fn client(id: &str) -> ClientRecord {
    ClientRecord {
        client_id: id.into(),
        client_name: Some("Claude Code".into()),
        redirect_uris: vec!["http://127.0.0.1/callback".into()],
        created_at: NOW,
        secret_hash: None,
    }
}

pub(crate) fn pending(state: &str, expires_at: i64) -> PendingAuth {
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

pub(crate) fn code(value: &str, expires_at: i64) -> AuthCode {
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

pub(crate) fn tokens(access: &str, refresh: &str) -> BitrixTokens {
    BitrixTokens {
        access: SecretString::from(access),
        refresh: SecretString::from(refresh),
        expires_at: NOW + 3600,
        server_endpoint: Some("https://oauth.bitrix.info/rest/".into()),
        client_endpoint: Some("https://portal.example.com/rest/".into()),
        scope: Some("tasks,im".into()),
    }
}

pub(crate) fn person(member_id: &str, user_id: i64) -> Person {
    Person {
        member_id: member_id.into(),
        user_id,
        domain: "portal.example.com".into(),
        tokens: tokens(ACCESS, REFRESH),
        last_used_at: NOW,
        created_at: NOW,
    }
}

pub(crate) fn grant(id: &str, member_id: &str, user_id: i64) -> Grant {
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

pub(crate) fn issued(token: &str, grant_id: &str, kind: TokenKind, expires_at: i64) -> IssuedToken {
    IssuedToken {
        hash: TokenHash::of(token),
        grant_id: grant_id.into(),
        kind,
        expires_at,
        used: false,
    }
}

/// The pair a refresh issues, with `grace` seconds in which a repeat gets it back.
pub(crate) fn rotation(access: &str, refresh: &str, grace: i64) -> Rotation {
    Rotation {
        access: SecretString::from(access),
        refresh: SecretString::from(refresh),
        access_expires_at: NOW + 3600,
        refresh_expires_at: NOW + 86_400,
        grace,
    }
}

/// A signed-in person `(m1, 1)` with grant `g1`, access token `at1` and refresh `rt1`.
pub(crate) async fn signed_in(store: &dyn Store) {
    store.put_person(person("m1", 1)).await.unwrap();
    store.put_grant(grant("g1", "m1", 1)).await.unwrap();
    let access = issued("at1", "g1", TokenKind::Access, NOW + 3600);
    store.put_token(access).await.unwrap();
    let refresh = issued("rt1", "g1", TokenKind::Refresh, NOW + 86_400);
    store.put_token(refresh).await.unwrap();
}

/// Spends `token` as a refresh token at `now` (for a rotation no case looks at).
pub(crate) async fn spend(store: &dyn Store, token: &str, now: i64) -> RefreshUse {
    store
        .use_refresh(
            &TokenHash::of(token),
            now,
            rotation("at-next", "rt-next", 30),
        )
        .await
        .unwrap()
}

pub(crate) async fn live(store: &dyn Store, token: &str, now: i64) -> bool {
    store
        .token(&TokenHash::of(token), now)
        .await
        .unwrap()
        .is_some()
}

/// What `/readyz` asks of the store.
pub(crate) async fn a_live_store_answers_ping<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
    store.ping().await.expect("a live store answers");
}

pub(crate) async fn clients_are_stored_replaced_and_looked_up<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
    assert!(store.client("c1").await.unwrap().is_none());
    store.put_client(client("c1")).await.unwrap();
    assert_eq!(store.client("c1").await.unwrap(), Some(client("c1")));
    let mut changed = client("c1");
    changed.redirect_uris = vec!["http://localhost/a".into(), "https://x.example/b".into()];
    changed.client_name = None;
    store.put_client(changed.clone()).await.unwrap();
    assert_eq!(store.client("c1").await.unwrap(), Some(changed));
}

pub(crate) async fn clients_past_the_bound_are_refused_but_known_ones_update<B: Backend>() {
    let backend = B::start();
    let limits = Limits {
        clients: 2,
        pending: 10,
    };
    let store = with_limits(&backend, limits).await;
    store.put_client(client("a")).await.unwrap();
    store.put_client(client("b")).await.unwrap();
    assert!(matches!(
        store.put_client(client("c")).await,
        Err(StoreError::Full)
    ));
    store.put_client(client("b")).await.unwrap();
    assert!(store.client("c").await.unwrap().is_none());
}

pub(crate) async fn pending_authorizations_are_single_use_and_expire<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
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

pub(crate) async fn pending_past_the_bound_is_refused_and_expired_ones_do_not_count<B: Backend>() {
    let backend = B::start();
    let limits = Limits {
        clients: 10,
        pending: 2,
    };
    let store = with_limits(&backend, limits).await;
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

pub(crate) async fn codes_are_single_use_and_expire<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
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

pub(crate) async fn two_takers_of_one_code_or_state_exactly_one_wins<B: Backend>() {
    let backend = B::start();
    // Two stores: two connections, as two processes or replicas would have.
    let first = open(&backend).await;
    let second = open(&backend).await;
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

pub(crate) async fn people_are_upserted_with_their_tokens_and_touched<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
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

pub(crate) async fn a_refresh_after_revocation_does_not_bring_the_person_back<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
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

pub(crate) async fn access_tokens_resolve_to_their_grant_until_expiry_or_revocation<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
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
    assert_eq!(spend(store.as_ref(), "rt1", NOW).await, RefreshUse::Unknown);
    store.revoke_grant("no-such-grant").await.unwrap();
    assert!(store.grant("no-such-grant").await.unwrap().is_none());
}

pub(crate) async fn expired_unknown_and_access_tokens_are_no_refresh_tokens<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
    signed_in(store.as_ref()).await;
    assert_eq!(
        spend(store.as_ref(), "rt1", NOW + 86_400).await,
        RefreshUse::Unknown
    );
    // Expiry did not use it up.
    assert!(!store.grant("g1").await.unwrap().unwrap().revoked);
    for other in ["at1", "nope"] {
        assert_eq!(spend(store.as_ref(), other, NOW).await, RefreshUse::Unknown);
    }
}

pub(crate) async fn revoking_an_access_token_ends_it_alone_a_refresh_token_its_grant<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
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

pub(crate) async fn revoking_a_person_from_a_second_store_takes_effect_at_once<B: Backend>() {
    let backend = B::start();
    let server = open(&backend).await;
    signed_in(server.as_ref()).await;
    server.put_grant(grant("g2", "m1", 1)).await.unwrap();
    server.put_person(person("m2", 1)).await.unwrap();
    server.put_grant(grant("g3", "m2", 1)).await.unwrap();
    server.put_person(person("m1", 2)).await.unwrap();
    server.put_grant(grant("g4", "m1", 2)).await.unwrap();
    server.put_code(code("k1", NOW + 60)).await.unwrap();
    assert!(live(server.as_ref(), "at1", NOW).await);

    // `users revoke` (or another replica) opens its own store on the same storage.
    let admin = open(&backend).await;
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
        spend(server.as_ref(), "rt1", NOW).await,
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

pub(crate) async fn people_are_listed_most_recent_first_with_live_grants<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
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

pub(crate) async fn purge_removes_what_expired_and_abandoned_registrations_only<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
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

pub(crate) async fn purge_keeps_what_is_still_alive<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
    signed_in(store.as_ref()).await;
    store.put_grant(grant("g-new", "m1", 1)).await.unwrap();
    store.put_client(client("young")).await.unwrap();
    store.purge_expired(NOW + 10).await.unwrap();
    assert!(live(store.as_ref(), "at1", NOW + 10).await);
    assert!(store.grant("g-new").await.unwrap().is_some());
    assert!(store.client("young").await.unwrap().is_some());
}

/// A store opened again on the same storage (a restart) finds everything as it was.
pub(crate) async fn a_reopened_store_keeps_everything<B: Backend>() {
    let backend = B::start();
    {
        let store = open(&backend).await;
        signed_in(store.as_ref()).await;
        store.put_client(client("c1")).await.unwrap();
        store
            .put_pending(pending("s1", NOW + 600), NOW)
            .await
            .unwrap();
        store.put_code(code("k1", NOW + 60)).await.unwrap();
    }
    let store = open(&backend).await;
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
    assert!(live(store.as_ref(), "at1", NOW).await);
    let person = store.person("m1", 1).await.unwrap().unwrap();
    assert_eq!(person.tokens.access.expose_secret(), ACCESS);
    assert!(matches!(
        spend(store.as_ref(), "rt1", NOW).await,
        RefreshUse::Fresh(..)
    ));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asserts that no place of what a backend holds has one of `secrets` in clear; `when`
/// names the moment in a failure.
fn assert_none_in_clear(places: &[(String, Vec<Vec<u8>>)], secrets: &[&str], when: &str) {
    for (place, blobs) in places {
        for blob in blobs {
            for secret in secrets {
                assert!(
                    !contains(blob, secret.as_bytes()),
                    "{when}: {secret} in {place}"
                );
            }
        }
    }
}

pub(crate) async fn the_stored_bytes_hold_no_token_or_secret_in_clear<B: Backend>() {
    let backend = B::start();
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
    let secrets: Vec<&str> = ours
        .iter()
        .chain(&theirs)
        .chain(&ROTATED)
        .copied()
        .collect();
    let check = |when: &str| {
        let places = backend.stored_bytes();
        // The records are in what is searched (in clear, not being secrets): the search
        // reaches them.
        let domain = b"portal.example.com";
        assert!(
            places
                .iter()
                .any(|(_, blobs)| blobs.iter().any(|b| contains(b, domain))),
            "{when}: the search reaches the records"
        );
        assert!(
            places.len() >= B::PLACES_OF_EVERY_RECORD,
            "{when}: {} places searched",
            places.len()
        );
        assert_none_in_clear(&places, &secrets, when);
    };
    let mut confidential = client("confidential");
    confidential.secret_hash = Some(TokenHash::of(ours[4]));
    {
        let store = open(&backend).await;
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

        // While the store is open (SQLite: the -wal file holds the recent writes).
        check("open");
        assert!(store.person("m1", 1).await.unwrap().is_some());
    }
    check("closed");
    // And everything still reads back.
    let store = open(&backend).await;
    let got = store.person("m1", 1).await.unwrap().unwrap();
    assert_eq!(got.tokens.access.expose_secret(), theirs[2]);
    assert_eq!(
        store.client("confidential").await.unwrap(),
        Some(confidential)
    );
}

pub(crate) async fn a_confidential_client_keeps_only_the_hash_of_its_secret<B: Backend>() {
    let backend = B::start();
    let store = open(&backend).await;
    let mut c = client("confidential");
    c.secret_hash = Some(TokenHash::of("client-secret-in-clear-0123"));
    store.put_client(c.clone()).await.unwrap();
    assert_eq!(store.client("confidential").await.unwrap(), Some(c));
    drop(store);
    let places = backend.stored_bytes();
    assert_none_in_clear(&places, &["client-secret-in-clear-0123"], "closed");
}

pub(crate) async fn another_key_is_refused_with_a_clear_error<B: Backend>() {
    let backend = B::start();
    open(&backend)
        .await
        .put_person(person("m1", 1))
        .await
        .unwrap();
    let other = StoreKey::from_hex(&"ab".repeat(32)).unwrap();
    let err = backend
        .open_with(other, Limits::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    assert!(err.to_string().contains("MCP_STORE_KEY"), "{err}");
    // The right key still opens it.
    assert!(
        open(&backend)
            .await
            .person("m1", 1)
            .await
            .unwrap()
            .is_some()
    );
}

pub(crate) async fn a_token_moved_to_another_person_does_not_open<B: Backend>() {
    let (backend, store) = fresh::<B>().await;
    store.put_person(person("m1", 1)).await.unwrap();
    store.put_person(person("m1", 2)).await.unwrap();
    // Someone with write access to the storage copies person 1's token onto person 2, and
    // swaps person 1's access and refresh tokens.
    backend.move_sealed_tokens();
    for user_id in [1, 2] {
        let err = store.person("m1", user_id).await.unwrap_err();
        assert!(matches!(err, StoreError::WrongKey), "{err:?}");
    }
}

pub(crate) async fn no_record_or_store_prints_a_secret<B: Backend>() {
    let backend = B::start();
    let store = backend.open_with(key(), Limits::default()).await.unwrap();
    store.put_person(person("m1", 1)).await.unwrap();
    let read_back = store.person("m1", 1).await.unwrap().unwrap();
    let hash = TokenHash::of("our-token");
    let full: String = hash.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let mut token = issued("our-token", "g1", TokenKind::Refresh, NOW);
    token.hash = hash;
    let mut shown = vec![
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
    shown.extend(backend.shown());
    for text in &shown {
        for secret in [ACCESS, REFRESH, "our-token", &full[..16], KEY, &KEY[..16]] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

/// Two stores on the same storage: two processes (SQLite) or two replicas (Redis).
pub(crate) async fn a_lock_is_held_by_one_holder_until_released_or_expired<B: Backend>() {
    let backend = B::start();
    let a = open(&backend).await;
    let b = open(&backend).await;
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
    // A lock whose holder died frees itself when its time is up.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 200;
    assert!(a.try_lock("refresh:m:4", "a", soon).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(b.try_lock("refresh:m:4", "b", far).await.unwrap());
}

pub(crate) async fn a_refresh_token_works_once_and_a_reuse_after_the_window_revokes_the_grant<
    B: Backend,
>() {
    let (_backend, store) = fresh::<B>().await;
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

pub(crate) async fn a_repeat_within_the_grace_window_gets_the_same_pair_and_revokes_nothing<
    B: Backend,
>() {
    let (_backend, store) = fresh::<B>().await;
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

pub(crate) async fn a_repeat_after_the_pair_moved_on_is_refused_without_revoking<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
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

pub(crate) async fn concurrent_refreshes_one_is_fresh_the_others_get_its_pair<B: Backend>() {
    let backend = B::start();
    let first = open(&backend).await;
    let second = open(&backend).await;
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

pub(crate) async fn fifty_refreshes_leave_a_bounded_number_of_tokens<B: Backend>() {
    let backend = B::start();
    let store = open(&backend).await;
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
    assert_eq!(backend.stored(Kept::Tokens), 4);
    assert_eq!(backend.stored(Kept::Rotations), 1);
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

pub(crate) async fn looking_up_a_refresh_tokens_grant_spends_nothing<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
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

pub(crate) async fn the_last_grant_revoked_deletes_the_persons_bitrix24_tokens<B: Backend>() {
    let (_backend, store) = fresh::<B>().await;
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

pub(crate) async fn purge_forgets_people_whose_tokens_expired_and_unused_clients_within_minutes<
    B: Backend,
>() {
    let (_backend, store) = fresh::<B>().await;
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
