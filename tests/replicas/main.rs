//! Replicas sharing state through a real Redis, one module per piece: the pacing bucket,
//! the operating-limit memory (the gate), one configured OAuth identity's token pair,
//! whole replicas in front of one portal, and the token engine's suite on the pairs held
//! in Redis.

#[path = "../support/mod.rs"]
mod support;

mod bucket_redis;
mod gate_redis;
mod identity_redis;
mod replicas_redis;
mod token_engine;
