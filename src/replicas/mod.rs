//! The state replicas share on Redis beside the sign-in store (issue 13): the pacing
//! bucket of each portal, the operating-limit memory of each method, and the configured
//! identity's token pair. The store (`crate::store`) keeps what a person's sign-in must
//! survive; this keeps what every portal call consults, on a connection of its own with a
//! short round-trip bound (`connection`), so a slow store never slows the calls.

pub mod bucket;
pub mod connection;
pub mod gate;
pub mod pair;
