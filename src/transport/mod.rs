//! Transports: they only wire a client connection to [`crate::server::TaskResultsServer`].

pub mod auth;
pub mod host_origin;
pub mod stdio;
