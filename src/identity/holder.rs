//! The port of the token engine: a [`Holder`] is where one Bitrix24 token pair is kept
//! and how the processes keeping it take turns. Three implement it: the configured
//! identity's token file ([`super::token_file`]), the pair replicas share in Redis
//! (`crate::replicas::pair`), and each signed-in person's pair in the sign-in store
//! ([`super::person`]); the rules for using one are the engine's ([`super::engine`]).
//!
//! The methods return [`BoxFuture`]s, the style of [`crate::bitrix::TokenSource`], the
//! seam the engine serves: one style from the REST client down to the holders, object
//! safe without a macro, and the REST client needs no `async_trait` for it. Errors are
//! one type, [`HolderError`], whose texts are safe to show (no token, no secret).

use secrecy::SecretString;

use crate::bitrix::{BoxFuture, CallError};

/// One token pair, as a holder keeps it.
#[derive(Clone, Debug)]
pub struct Pair {
    /// The access token.
    pub access: SecretString,
    /// The refresh token not yet spent (Bitrix24 rotates it on every refresh).
    pub refresh: SecretString,
    /// Unix time the access token expires, when the OAuth server said.
    pub expires_at: Option<i64>,
    /// The last `server_endpoint` the OAuth server gave: its host takes the next refresh.
    pub server_endpoint: Option<String>,
    /// The portal's REST address, when the OAuth server gave it.
    pub client_endpoint: Option<String>,
    /// The scopes granted, when the OAuth server said.
    pub scope: Option<String>,
}

/// Why a holder could not do what was asked. Texts name the place, never a value in it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HolderError {
    /// It could not be reached, read or written (the store is away, a file is
    /// unreadable): nothing was spent, trying again is safe.
    #[error("{0}")]
    Unavailable(String),
    /// The pair is gone for good (the person signed out or was revoked): only a new
    /// sign-in brings one back.
    #[error("{0}")]
    Ended(String),
}

/// Where one token pair is kept and how the processes that share it take turns.
pub trait Holder: std::fmt::Debug + Send + Sync + 'static {
    /// Names the pair in messages, e.g. "this person's Bitrix24 token pair".
    fn describe(&self) -> &'static str;

    /// The pair another process kept since this one last looked, if any (`None`: nothing
    /// new, the engine goes on with the pair it knows).
    fn load(&self) -> BoxFuture<'_, Result<Option<Pair>, HolderError>>;

    /// Takes the refresh lock for `holder` until `until_ms` (Unix ms); `false` while
    /// another holds it. A holder that dies frees it at that time at the latest.
    fn lock<'a>(
        &'a self,
        holder: &'a str,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, HolderError>>;

    /// Frees the lock if `holder` still has it.
    fn unlock<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), HolderError>>;

    /// Keeps `pair`, just issued, for the others and for a restart; the engine uses it
    /// only after this returns `Ok` (the refresh token it replaces is spent).
    fn store<'a>(&'a self, pair: &'a Pair) -> BoxFuture<'a, Result<(), HolderError>>;

    /// `pair`, loaded from the others, is now in use here (a holder that mirrors the pair
    /// elsewhere writes it there).
    fn adopted<'a>(&'a self, _pair: &'a Pair) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// The OAuth server refused the refresh with `code` for good (`invalid_grant`,
    /// `invalid_client`): what callers are told from now on. A holder whose pair ends
    /// with its grant (a person's sign-in) ends it here.
    fn refused<'a>(&'a self, _code: &'a str, refusal: CallError) -> BoxFuture<'a, CallError> {
        Box::pin(async { refusal })
    }

    /// Whether the pair is a signed-in person's (rather than the configured identity's):
    /// the refresh metrics tell the two apart.
    fn is_person(&self) -> bool {
        false
    }

    /// Secrets of this holder masked along with the pair in force (the token file's
    /// `seeded_by`).
    fn also_masked(&self) -> &[SecretString] {
        &[]
    }
}
