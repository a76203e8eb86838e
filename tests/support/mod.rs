//! Helpers shared by the end-to-end test binaries (`tests/<area>/main.rs`), each of which
//! includes this module with `#[path = "../support/mod.rs"] mod support;`: spawning the
//! binary over stdio (`common`, and `raw` for bytes no real client sends) and over HTTP
//! (`http_support`), a real `redis-server` (`redis_support`), a real Prometheus and the
//! metrics exposition (`metrics_support`), and a headless client's
//! sign-in (`sign_in_support`). A binary uses only part of them: each file allows dead
//! code.

pub mod common;
pub mod http_support;
pub mod metrics_support;
pub mod raw;
pub mod redis_support;
pub mod sign_in_support;
