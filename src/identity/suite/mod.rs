//! The token engine's tests, written once and run against every holder: the in-memory
//! holder and a person's pair in a SQLite store (`runs.rs`), the token file
//! (`token_file.rs`'s tests), the configured identity's replicas with a shared pair
//! (`configured.rs`'s tests), and the replicas' pair and a person's pair in a real Redis
//! (`tests/replicas/token_engine.rs`). A [`Bench`] is the place holders meet; each case
//! makes engines over holders of its own, as separate processes would have them, against
//! the sandbox's OAuth server (or a canned one).
//!
//! Public for `tests/replicas/token_engine.rs` only (an integration test sees no
//! `cfg(test)` item); nothing in the server calls it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use crate::bitrix::CallError;
use crate::bitrix::grant::App;
use crate::clock;
use crate::identity::engine::{Engine, EngineConfig, Start, Timing};
use crate::identity::holder::Pair;
use crate::sandbox::{OAuthApp, Sandbox, SandboxOptions};

mod bench;

#[cfg(test)]
pub(crate) use bench::MemoryBench;
pub use bench::{Bench, HolderBench, StoreBench};
#[cfg(test)]
mod runs;

const CLIENT_ID: &str = "local.engine.app";
const CLIENT_SECRET: &str = "client-secret-engine-5e1d9a7c";
const INITIAL_REFRESH: &str = "refresh-engine-initial-7a3c9e1f";

/// Runs every case against the bench `$bench` makes (an expression, evaluated per case).
#[doc(hidden)]
#[macro_export]
macro_rules! token_engine_suite {
    ($bench:expr) => {
        $crate::token_engine_suite!(@cases $bench;
            callers_in_one_process_share_one_refresh,
            two_processes_racing_spend_the_refresh_token_once,
            a_second_process_adopts_the_pair_the_first_kept,
            a_lock_never_freed_ends_in_refresh_busy_and_spends_nothing,
            a_refresh_that_hangs_is_bounded_and_frees_the_lock,
            a_refusal_for_good_is_known_by_its_code_and_not_repeated,
        );
    };
    (@cases $bench:expr; $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let bench = $bench;
                $crate::identity::suite::$case(&bench).await;
            }
        )*
    };
}

/// A pair to seed, expiring in an hour.
fn pair(access: &str, refresh: &str) -> Pair {
    Pair {
        access: access.into(),
        refresh: refresh.into(),
        expires_at: Some(clock::now_s() + 3600),
        server_endpoint: None,
        client_endpoint: Some("https://p.example/rest/".into()),
        scope: Some("task".into()),
    }
}

/// The suite's application, refreshing at `oauth_url`.
fn config(oauth_url: &str, timing: Timing) -> EngineConfig {
    EngineConfig {
        app: App {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
        },
        oauth_url: Some(Url::parse(oauth_url).expect("a URL")),
        timing,
    }
}

/// Whether two pairs hold the same tokens.
pub fn pair_eq(a: &Pair, b: &Pair) -> bool {
    a.access.expose_secret() == b.access.expose_secret()
        && a.refresh.expose_secret() == b.refresh.expose_secret()
}

fn open(secret: &Option<SecretString>) -> Option<&str> {
    secret.as_ref().map(ExposeSecret::expose_secret)
}

/// Waits a bench's processes use: short enough that a case that must give up does so
/// quickly, long enough for a real Redis.
fn quick() -> Timing {
    Timing {
        hold_ms: 30_000,
        wait: Duration::from_secs(10),
        poll: Duration::from_millis(20),
    }
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn sandbox() -> Sandbox {
    oauth_sandbox(CLIENT_ID, CLIENT_SECRET, INITIAL_REFRESH).await
}

/// The sandbox as the OAuth server of the application `client_id`, whose configured
/// grant starts with `refresh`.
pub async fn oauth_sandbox(client_id: &str, client_secret: &str, refresh: &str) -> Sandbox {
    Sandbox::start(SandboxOptions {
        oauth: Some(OAuthApp {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh_token: refresh.into(),
            access_token_ttl: Duration::from_secs(3600),
            ..OAuthApp::default()
        }),
        ..SandboxOptions::default()
    })
    .await
    .expect("start the sandbox")
}

/// Seeds the sandbox's initial pair and returns it.
async fn seeded(bench: &dyn Bench, sb: &Sandbox) -> Pair {
    let first = pair(
        &sb.access_token().expect("an access token"),
        INITIAL_REFRESH,
    );
    bench.seed(&first).await;
    first
}

/// An engine of a process starting now: a holder of its own and the pair it loads.
async fn start(bench: &dyn Bench, oauth_url: &str, timing: Timing) -> Arc<Engine> {
    let holder = bench.holder().await;
    let start = holder
        .load()
        .await
        .expect("the holder answers")
        .expect("the seeded pair");
    Arc::new(Engine::new(
        holder,
        config(oauth_url, timing),
        Start::from(start),
    ))
}

fn token_posts(sb: &Sandbox) -> usize {
    sb.requests()
        .iter()
        .filter(|r| r.path.starts_with("/oauth/token"))
        .count()
}

/// The sandbox's pair is the one kept, and in force in `engines`.
async fn sandbox_pair_everywhere(bench: &dyn Bench, sb: &Sandbox, engines: &[&Engine]) {
    let (access, refresh) = (sb.access_token().unwrap(), sb.refresh_token().unwrap());
    let kept = bench.kept().await.expect("a pair is kept");
    assert_eq!(kept.access.expose_secret(), access, "the kept access token");
    assert_eq!(
        kept.refresh.expose_secret(),
        refresh,
        "the kept refresh token"
    );
    for engine in engines {
        assert_eq!(open(&engine.current().0), Some(access.as_str()));
    }
}

/// The lock is free: another process takes it (at once, or soon after a refresh given
/// up mid-way frees it).
async fn lock_is_free(bench: &dyn Bench) {
    let probe = bench.holder().await;
    let give_up = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        if probe.lock("probe", clock::now_ms() + 1000).await.unwrap() {
            probe.unlock("probe").await.unwrap();
            return;
        }
        assert!(tokio::time::Instant::now() < give_up, "the lock stays held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Generation counting: ten callers of one process that met the 401 together cause one
/// refresh, and the new pair is kept before it is used.
pub async fn callers_in_one_process_share_one_refresh(bench: &dyn Bench) {
    let sb = sandbox().await;
    seeded(bench, &sb).await;
    let engine = start(bench, &sb.base_url(), quick()).await;
    let http = http();
    let calls = (0..10).map(|_| engine.refresh(&http, 0));
    for outcome in futures::future::join_all(calls).await {
        outcome.expect("refreshed");
    }
    assert_eq!(sb.refresh_count(), 1, "one refresh for ten callers");
    assert_eq!(engine.current().1, 1, "one new generation");
    sandbox_pair_everywhere(bench, &sb, &[&engine]).await;
    lock_is_free(bench).await;
}

/// Two processes (or replicas) that met the 401 together, five callers each: one
/// refresh, and both use its pair.
pub async fn two_processes_racing_spend_the_refresh_token_once(bench: &dyn Bench) {
    let sb = sandbox().await;
    seeded(bench, &sb).await;
    let a = start(bench, &sb.base_url(), quick()).await;
    let b = start(bench, &sb.base_url(), quick()).await;
    let http = http();
    let calls: Vec<_> = (0..10)
        .map(|i| {
            let engine = if i % 2 == 0 { a.clone() } else { b.clone() };
            let http = http.clone();
            tokio::spawn(async move { engine.refresh(&http, 0).await })
        })
        .collect();
    for call in calls {
        call.await.expect("joined").expect("refreshed");
    }
    assert_eq!(sb.refresh_count(), 1, "the refresh token is spent once");
    assert_eq!((a.current().1, b.current().1), (1, 1));
    sandbox_pair_everywhere(bench, &sb, &[&a, &b]).await;
    lock_is_free(bench).await;
}

/// One after the other: the second process adopts the first's pair without spending,
/// and when that pair fails too, refreshes with the refresh token the first kept.
pub async fn a_second_process_adopts_the_pair_the_first_kept(bench: &dyn Bench) {
    let sb = sandbox().await;
    seeded(bench, &sb).await;
    let a = start(bench, &sb.base_url(), quick()).await;
    let b = start(bench, &sb.base_url(), quick()).await;
    let http = http();
    a.refresh(&http, 0).await.unwrap();
    assert_eq!(sb.refresh_count(), 1);
    sandbox_pair_everywhere(bench, &sb, &[&a]).await;
    // The second process's token failed too: it takes the kept pair.
    b.refresh(&http, 0).await.unwrap();
    assert_eq!(sb.refresh_count(), 1, "the refresh token is spent once");
    assert_eq!(b.current().1, 1);
    sandbox_pair_everywhere(bench, &sb, &[&a, &b]).await;
    lock_is_free(bench).await;
    // When the kept pair is the one that failed, the process refreshes with the kept
    // refresh token; the first then adopts.
    b.refresh(&http, 1).await.unwrap();
    assert_eq!(sb.refresh_count(), 2);
    a.refresh(&http, 1).await.unwrap();
    assert_eq!(sb.refresh_count(), 2);
    assert_eq!((a.current().1, b.current().1), (2, 2));
    sandbox_pair_everywhere(bench, &sb, &[&a, &b]).await;
}

/// Another process took the lock and never frees it (it hangs): this one gives up with
/// `refresh_busy` and spends nothing, and refreshes once the lock is free.
pub async fn a_lock_never_freed_ends_in_refresh_busy_and_spends_nothing(bench: &dyn Bench) {
    let sb = sandbox().await;
    let first = seeded(bench, &sb).await;
    let hung = bench.holder().await;
    assert!(
        hung.lock("a hung process", clock::now_ms() + 3_600_000)
            .await
            .unwrap()
    );
    let timing = Timing {
        wait: Duration::from_millis(300),
        ..quick()
    };
    let engine = start(bench, &sb.base_url(), timing).await;
    let http = http();
    let e = engine.refresh(&http, 0).await.unwrap_err();
    assert!(
        matches!(&e, CallError::OAuth { code, .. } if code == "refresh_busy"),
        "{e}"
    );
    assert_eq!(token_posts(&sb), 0, "nothing may be sent without the lock");
    assert_eq!(engine.current().1, 0);
    assert!(pair_eq(&bench.kept().await.unwrap(), &first));
    // Not left refused or busy: once the lock is free, the refresh goes through.
    hung.unlock("a hung process").await.unwrap();
    engine.refresh(&http, 0).await.unwrap();
    assert_eq!(sb.refresh_count(), 1);
    sandbox_pair_everywhere(bench, &sb, &[&engine]).await;
}

/// The OAuth server accepts the connection and never answers: the refresh is given up
/// at the end of the call's budget, nothing is half-kept, and the lock is freed.
pub async fn a_refresh_that_hangs_is_bounded_and_frees_the_lock(bench: &dyn Bench) {
    // Connections are accepted by the kernel's backlog and never answered.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let first = pair("hang-access-token", "hang-refresh-token");
    bench.seed(&first).await;
    let engine = start(bench, &url, quick()).await;
    let http = http();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    let e = crate::bitrix::caller::refresh_within(engine.as_ref(), &http, 0, deadline)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CallError::Budget(m) if m.contains("OAuth")),
        "{e}"
    );
    assert_eq!(engine.current().1, 0);
    // Nothing was half-kept.
    assert!(pair_eq(&bench.kept().await.unwrap(), &first));
    lock_is_free(bench).await;
}

/// A refusal for good (`invalid_grant`), in words that do not say so, is known by its
/// code: the dead refresh token is not presented again. A passing failure whose text
/// names `invalid_grant` is not one: it is tried again, and the pair stays.
pub async fn a_refusal_for_good_is_known_by_its_code_and_not_repeated(bench: &dyn Bench) {
    let refusing = Canned::start(
        400,
        r#"{"error":"invalid_grant","error_description":"Срок действия токена истёк"}"#,
    )
    .await;
    let first = pair("refused-access-token", "refused-refresh-token");
    bench.seed(&first).await;
    let engine = start(bench, &refusing.url(), quick()).await;
    let http = http();
    for attempt in 0..2 {
        let e = engine.refresh(&http, 0).await.unwrap_err();
        if bench.refusal_ends() {
            assert!(matches!(&e, CallError::SignInEnded(_)), "{attempt}: {e}");
        } else {
            assert!(
                matches!(&e, CallError::OAuth { code, .. } if code == "invalid_grant"),
                "{attempt}: {e}"
            );
        }
    }
    assert_eq!(
        refusing.hits(),
        1,
        "a refused refresh token is presented once"
    );
    assert_eq!(engine.current().1, 0);
    let kept = bench.kept().await;
    if bench.refusal_ends() {
        assert!(kept.is_none(), "the sign-in ended with its grant");
    } else {
        assert!(
            pair_eq(&kept.unwrap(), &first),
            "the pair is left as it was"
        );
    }

    let passing = Canned::start(
        503,
        r#"{"error":"temporarily_unavailable","error_description":"invalid_grant? no: try later"}"#,
    )
    .await;
    bench.seed(&first).await;
    let engine = start(bench, &passing.url(), quick()).await;
    for attempt in 0..2 {
        let e = engine.refresh(&http, 0).await.unwrap_err();
        assert!(
            matches!(&e, CallError::OAuth { code, .. } if code == "temporarily_unavailable"),
            "{attempt}: {e}"
        );
    }
    assert_eq!(passing.hits(), 2, "a passing failure is tried again");
    assert!(pair_eq(&bench.kept().await.unwrap(), &first));
}

/// An OAuth server that gives every request one answer, counting them.
struct Canned {
    url: String,
    hits: Arc<AtomicUsize>,
}

impl Canned {
    async fn start(status: u16, body: &'static str) -> Canned {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    // The whole request first: answering before it is read resets the
                    // connection.
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !whole(&request) {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Canned { url, hits }
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Whether `request` holds its head and the body its `Content-Length` announces.
fn whole(request: &[u8]) -> bool {
    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    request.len() >= end + 4 + length
}
