//! Sign-in (`--oauth`) end to end, one module per area: the flow a headless MCP client
//! goes through, registered clients, the consent page, the tokens this server issues,
//! its security, the store in Redis, sign-ins in the metrics, the audit trail, and the MCP
//! conformance suite's authorization checks (`conformance_auth`, ignored: `.ci/run` runs it).

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod conformance_auth;
mod sign_in;
mod sign_in_clients;
mod sign_in_consent;
mod sign_in_metrics;
mod sign_in_redis;
mod sign_in_security;
mod sign_in_tokens;
