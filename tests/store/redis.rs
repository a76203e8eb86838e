//! The Redis sign-in store against a real `redis-server` each test starts itself: the
//! whole contract (`contract.rs`: two stores on one server are two replicas), plus what
//! is Redis's own: records expire in Redis at their `expires_at`, another prefix is
//! another store, a Redis that stops and comes back on the same port is used again
//! without reopening, addresses and passwords.

use std::sync::Arc;
use std::time::Duration;

use bitrix24_task_results_mcp::store::{
    Limits, RedisOptions, RedisStore, RedisUrl, RefreshUse, Store, StoreError, StoreKey, TokenHash,
    TokenKind,
};

use crate::contract::{
    self, Backend, Kept, NOW, code, issued, key, live, pending, person, rotation, signed_in,
};
use crate::support::redis_support::RedisServer;

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

/// A `redis-server` of its own.
pub(crate) struct Redis {
    server: RedisServer,
}

impl Backend for Redis {
    type Store = RedisStore;

    fn start() -> Self {
        Redis {
            server: RedisServer::start(),
        }
    }

    async fn open_with(&self, key: StoreKey, limits: Limits) -> Result<RedisStore, StoreError> {
        let options = RedisOptions {
            limits,
            ..RedisOptions::default()
        };
        RedisStore::open_with(&url(&self.server), key, options).await
    }

    fn stored(&self, kind: Kept) -> usize {
        let table = match kind {
            Kept::Tokens => "tokens",
            Kept::Rotations => "rotations",
        };
        stored_rows(&self.server, table)
    }

    fn stored_bytes(&self) -> Vec<(String, Vec<Vec<u8>>)> {
        everything(&self.server)
    }

    /// Keys: the records that case writes take at least ten.
    const PLACES_OF_EVERY_RECORD: usize = 10;

    fn move_sealed_tokens(&self) {
        let mut conn = raw(&self.server);
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
    }

    /// Its address (which may carry a password).
    fn shown(&self) -> Vec<String> {
        vec![format!("{:?}", url(&self.server))]
    }
}

contract::contract_cases!(Redis);

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
async fn another_prefix_is_another_store_with_a_key_of_its_own() {
    let server = RedisServer::start();
    open(&server)
        .await
        .put_person(person("m1", 1))
        .await
        .unwrap();
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
    fails_unavailable(store.ping()).await;
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
    store.ping().await.expect("Redis answers PING again");
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
