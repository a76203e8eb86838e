//! bitrix24-task-results-mcp: an MCP server for the results of Bitrix24 tasks (REST 3.0).
//!
//! Layers, top to bottom: `transport` (stdio, HTTP) wires clients to `server` (the MCP
//! face), which parses arguments into the domain (`results`, `tasks`, `chat`), which calls
//! `bitrix` (the portal client, free of MCP), whose OAuth calls carry a token pair held by
//! `identity` (one engine for the token file, the replicas' pair and each signed-in
//! person). `sandbox` emulates a portal for trials and tests.
//! Configuration: `cli` (the clap schema) is validated into `settings`, which `app`
//! wires into a running server; `doctor` and `print-config` read settings and cli types.
//! `metrics` holds every metric's name and the functions the layers record through; it
//! imports no other module of the crate.
//! `audit` is the audit trail of writes and sign-ins (`--audit-log`).

pub mod app;
pub mod audit;
pub mod bitrix;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod doctor;
pub mod html;
pub mod identity;
pub mod log_lines;
pub mod metrics;
pub mod panic_hook;
pub mod print_config;
pub mod redact;
pub mod replicas;
pub mod results;
pub mod sandbox;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod sign_in;
pub mod store;
pub mod tasks;
pub mod tools;
pub mod transport;
pub mod users;
