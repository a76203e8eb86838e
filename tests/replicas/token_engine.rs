//! The token engine's suite (`identity::suite`: two processes racing, one after the
//! other, a lock never freed, a refresh that hangs, a refusal for good) against the
//! holders that live in Redis, on a real `redis-server`: the configured identity's pair
//! the replicas share (`replicas::pair`), and a signed-in person's pair in the Redis
//! sign-in store. The in-memory holder, the token file and the SQLite store run the same
//! suite as unit tests.

use crate::support::redis_support;

use std::sync::Arc;

use bitrix24_task_results_mcp::identity::Holder;
use bitrix24_task_results_mcp::identity::suite::{HolderBench, StoreBench};
use bitrix24_task_results_mcp::replicas::pair::RedisPair;
use bitrix24_task_results_mcp::store::{RedisStore, RedisUrl, Store, StoreKey};
use redis_support::RedisServer;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn key() -> StoreKey {
    StoreKey::from_hex(KEY).expect("test key")
}

/// Replicas of one configured identity, each with its own connection to one Redis.
fn replicas_pair() -> HolderBench {
    let server = Arc::new(RedisServer::start());
    HolderBench::new(move || {
        let url = RedisUrl::parse(&server.url(0)).expect("a Redis URL");
        Box::pin(async move {
            let pair = RedisPair::connect(&url, key(), "https://p.example", "local.engine.app")
                .await
                .expect("connect");
            Arc::new(pair) as Arc<dyn Holder>
        })
    })
}

/// Replicas sharing one Redis sign-in store, each with its own connection.
fn redis_store() -> StoreBench {
    let server = Arc::new(RedisServer::start());
    StoreBench::new(move || {
        let url = RedisUrl::parse(&server.url(0)).expect("a Redis URL");
        Box::pin(async move {
            let store = RedisStore::open(&url, key()).await.expect("open the store");
            Arc::new(store) as Arc<dyn Store>
        })
    })
}

mod replicas {
    use super::*;

    bitrix24_task_results_mcp::token_engine_suite!(replicas_pair());
}

mod person_in_redis {
    use super::*;

    bitrix24_task_results_mcp::token_engine_suite!(redis_store());
}
