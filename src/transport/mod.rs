//! Transports: they only wire a client connection to [`crate::server::TaskResultsServer`].

pub mod lines;
pub mod stdio;
