//! Holding a Bitrix24 token pair: ONE engine ([`engine`]) for the rules (load, lock,
//! re-read, refresh once, persist before use, publish to the others) behind one port
//! ([`holder::Holder`]), used by three holders: the configured identity's token file
//! ([`token_file`]), the pair replicas share in Redis (`crate::replicas::pair`), and each
//! signed-in person's pair in the sign-in store ([`person`]).
//!
//! [`configured`] starts the configured identity (`BITRIX24_CLIENT_ID`/`SECRET`/
//! `REFRESH_TOKEN`): which pair wins at start-up, and the token file as the holder, or as
//! a mirror of the replicas' shared pair. [`suite`] is the engine's test suite, run once
//! against every holder.
//!
//! Below `bitrix` in nothing: the engine is a [`crate::bitrix::TokenSource`], the seam
//! the REST client calls through, and spends refresh tokens through
//! [`crate::bitrix::grant`]; the REST client never names this module.

pub mod configured;
pub mod engine;
pub mod holder;
#[cfg(test)]
pub(crate) mod memory;
pub mod person;
#[doc(hidden)]
pub mod suite;
pub mod token_file;

pub use configured::{OAuthConfig, Refresher, Shared};
pub use engine::{Engine, EngineConfig, Start, Timing};
pub use holder::{Holder, HolderError, Pair};
pub use person::PersonPair;
pub use token_file::{TokenFile, default_token_file};
