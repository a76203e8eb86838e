//! `GET /healthz`: liveness for load balancers and container runtimes. No auth, no
//! Host check, and an answer that says nothing about the configuration.

/// Always `200 ok` while the process accepts connections.
pub async fn healthz() -> &'static str {
    "ok"
}
