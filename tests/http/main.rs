//! The HTTP transport end to end, one module per area: streamable HTTP, its security
//! rules (bearer token, Host and Origin checks, body size), adversarial clients, sessions
//! and sessions bound to their person, the legacy HTTP+SSE transport, readiness
//! (`/readyz`, the SIGTERM drain), and the metrics (a real Prometheus scraping
//! `--metrics-listen`).

#[path = "../support/mod.rs"]
mod support;

mod http_adversarial;
mod http_security;
mod http_sessions;
mod http_sessions_bound;
mod http_transport;
mod legacy_sse;
mod metrics;
mod readiness;
