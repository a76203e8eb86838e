//! Transports: they only wire a client connection to [`crate::server::TaskResultsServer`].

pub mod bearer;
pub mod conn;
pub mod cors;
pub mod health;
pub mod host_origin;
pub mod http;
pub mod http_jsonrpc;
pub mod inflight;
pub mod jsonrpc;
pub mod legacy_sse;
pub mod lines;
pub mod metered;
pub mod readiness;
pub mod sessions;
pub mod stdio;
