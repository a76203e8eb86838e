//! The binary as configured, printed and shipped, one module per area: the command line
//! (`doctor`, `--help`), configuration flags, `print-config` per client (insta
//! snapshots), OAuth refresh with a token file, secrets kept out of `Debug`, logs and
//! output (`--log-format json` too), the Kubernetes manifests (validated offline), and
//! packaging (the versions every package declares; the artifacts of `cargo xtask dist`,
//! ignored: `.ci/run` runs it).

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod config_flags;
mod debug_secrets;
mod log_format;
mod manifests;
mod oauth;
mod packaging;
mod print_config;
mod secrets;
mod secrets_flow;
mod structure;
