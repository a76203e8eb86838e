//! The sign-in store on SQLite (`sqlite`) and on a real Redis (`redis`).

#[path = "../support/mod.rs"]
mod support;

mod redis;
mod sqlite;
