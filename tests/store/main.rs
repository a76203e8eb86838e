//! The sign-in store: the contract every backend keeps (`contract`), written once and run
//! on SQLite (`sqlite::`) and on a real Redis (`redis::`), each backend's own cases beside
//! its instantiation, and what needs no storage (`keys`).

#[path = "../support/mod.rs"]
mod support;

mod contract;
mod keys;
mod redis;
mod sqlite;
