//! The sign-in store: registered clients, pending authorizations, one-time codes, the
//! hashes of the tokens this server issues, and each person's Bitrix24 tokens.
//!
//! One object-safe trait, [`Store`], so that the OAuth layer holds an `Arc<dyn Store>` and a
//! shared store for several replicas plugs in later without touching it. Nothing here is
//! SQLite-specific; [`sqlite::SqliteStore`] is the embedded default. Our own tokens, codes
//! and states exist here only as [`TokenHash`]es; the Bitrix24 tokens are the only secrets
//! kept, and an implementation must encrypt them at rest ([`crypto`]).
//!
//! Every timestamp is unix seconds; a record whose `expires_at` is `<= now` is expired.
//! Callers pass `now` so that tests need no clock.

pub mod crypto;
pub mod redis;
pub mod redis_bucket;
pub mod redis_fast;
pub mod redis_gate;
pub mod redis_tokens;
mod schema;
pub mod sqlite;

use std::fmt;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use self::redis::{RedisOptions, RedisStore, RedisUrl};
pub use crypto::StoreKey;
pub use schema::{default_key_path, default_path};
/// Re-exported so callers build and read [`BitrixTokens`] without naming the crate.
pub use secrecy::{ExposeSecret, SecretString};
pub use sqlite::{Limits, SqliteStore};

/// Why a store call failed. Messages never contain a secret, a token or a hash.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not do it (I/O, lock timeout, corrupt file, unknown schema).
    #[error("the sign-in store is unavailable: {0}")]
    Unavailable(String),
    /// A bound was reached (registered clients, pending authorizations).
    #[error("the sign-in store is full; try again later")]
    Full,
    /// The key does not open this store's encrypted values.
    #[error(
        "the store key does not match the one this store was created with \
         (set the original --store-key / MCP_STORE_KEY, or sign everyone in again \
         on a new store)"
    )]
    WrongKey,
    /// A store key given or read is malformed, or its file could not be made.
    #[error("store key: {0}")]
    Key(String),
}

/// SHA-256 of a token, code or state: what the store keeps instead of the value.
///
/// Equality is constant-time; `Debug` shows only a short prefix, enough to tell two apart
/// in a test failure and too little to matter.
#[derive(Clone, Copy)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token` (its UTF-8 bytes).
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// A hash read back from a backend.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest, for a backend's key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for TokenHash {}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TokenHash({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// A client known to this authorization server: registered by RFC 7591, or a cached
/// Client ID Metadata Document (then `client_id` is its URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub created_at: i64,
    /// The hash of the client's secret, for a confidential client registered with
    /// `client_secret_post` or `client_secret_basic`; `None` for a public client.
    pub secret_hash: Option<TokenHash>,
}

/// An authorization waiting for the person to come back from Bitrix24.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAuth {
    /// Hash of the `state` we sent to Bitrix24; the callback looks it up.
    pub state: TokenHash,
    pub client_id: String,
    pub redirect_uri: String,
    /// The client's S256 PKCE challenge (public: it travels in the URL).
    pub code_challenge: String,
    /// The client's own `state`, returned to it unchanged.
    pub client_state: Option<String>,
    pub resource: String,
    pub scope: Option<String>,
    pub expires_at: i64,
}

/// This server's one-time authorization code, bound to client, redirect URI, PKCE
/// challenge, resource and the person who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCode {
    pub code: TokenHash,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub resource: String,
    pub scope: Option<String>,
    pub user_id: i64,
    pub member_id: String,
    pub expires_at: i64,
}

/// A person's Bitrix24 OAuth tokens, as the OAuth server returned them.
#[derive(Debug, Clone)]
pub struct BitrixTokens {
    pub access: SecretString,
    pub refresh: SecretString,
    pub expires_at: i64,
    pub server_endpoint: Option<String>,
    pub client_endpoint: Option<String>,
    pub scope: Option<String>,
}

/// A person signed in: one per portal (`member_id`) and Bitrix24 user; the newest sign-in
/// replaces the token pair.
#[derive(Debug, Clone)]
pub struct Person {
    pub member_id: String,
    pub user_id: i64,
    pub domain: String,
    pub tokens: BitrixTokens,
    pub last_used_at: i64,
    pub created_at: i64,
}

/// One sign-in of one client: the tokens we issue hang off it, and revoking it ends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// A UUID v4.
    pub id: String,
    pub client_id: String,
    pub member_id: String,
    pub user_id: i64,
    pub resource: String,
    pub scope: Option<String>,
    pub created_at: i64,
    pub revoked: bool,
}

/// What an issued token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

/// A token this server issued, known only by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub hash: TokenHash,
    pub grant_id: String,
    pub kind: TokenKind,
    pub expires_at: i64,
    /// A refresh token already exchanged (rotation: each works once).
    pub used: bool,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// First use: now marked used; issue a new pair on this grant.
    Fresh(IssuedToken, Grant),
    /// Already used once: a sign of theft, so the store has revoked the grant.
    Reused { grant_id: String },
    /// Not a live refresh token (unknown, expired, or its grant or person revoked).
    Unknown,
}

/// One line of `users list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonSummary {
    pub member_id: String,
    pub user_id: i64,
    pub domain: String,
    pub last_used_at: i64,
    /// Live (unrevoked) grants: the clients signed in as this person.
    pub grants: u32,
}

/// The sign-in store. Every call is atomic on its own; "take" and "use" calls are single
/// use even across processes sharing the store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Registers or refreshes a client (same `client_id` replaces it). `Full` when the
    /// bound on clients is reached by a new one.
    async fn put_client(&self, client: ClientRecord) -> Result<(), StoreError>;
    /// The client with this id.
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;

    /// Saves a pending authorization. `Full` when the bound on ones unexpired at `now` is
    /// reached.
    async fn put_pending(&self, pending: PendingAuth, now: i64) -> Result<(), StoreError>;
    /// Removes and returns the pending authorization for this state; `None` when unknown,
    /// already taken, or expired.
    async fn take_pending(
        &self,
        state: &TokenHash,
        now: i64,
    ) -> Result<Option<PendingAuth>, StoreError>;

    /// Saves a one-time code.
    async fn put_code(&self, code: AuthCode) -> Result<(), StoreError>;
    /// Removes and returns the code; `None` when unknown, already taken, or expired.
    async fn take_code(&self, code: &TokenHash, now: i64) -> Result<Option<AuthCode>, StoreError>;

    /// Saves a person, replacing the same (member_id, user_id) with its tokens. Keeps the
    /// first `created_at`.
    async fn put_person(&self, person: Person) -> Result<(), StoreError>;
    /// The person with their decrypted Bitrix24 tokens.
    async fn person(&self, member_id: &str, user_id: i64) -> Result<Option<Person>, StoreError>;
    /// Replaces a person's Bitrix24 tokens after a refresh. A person revoked meanwhile
    /// stays revoked (nothing is written).
    async fn set_person_tokens(
        &self,
        member_id: &str,
        user_id: i64,
        tokens: BitrixTokens,
    ) -> Result<(), StoreError>;
    /// Records a use for `users list`. May skip the write when the stored time is recent.
    async fn touch_person(&self, member_id: &str, user_id: i64, now: i64)
    -> Result<(), StoreError>;

    /// Saves a new grant (and marks its client as having been used, see `purge_expired`).
    async fn put_grant(&self, grant: Grant) -> Result<(), StoreError>;
    /// The grant with this id, revoked or not.
    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError>;

    /// Saves an issued token's hash.
    async fn put_token(&self, token: IssuedToken) -> Result<(), StoreError>;
    /// A live **access** token and its grant: `None` when unknown, a refresh token,
    /// expired, its grant revoked, or its person revoked. Refresh tokens go through
    /// [`Store::use_refresh`] only, so a refresh token is never accepted as a bearer.
    async fn token(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<(IssuedToken, Grant)>, StoreError>;
    /// Presents a refresh token: marks it used atomically (of two concurrent uses exactly
    /// one is `Fresh`); a second use revokes its grant and answers `Reused`.
    async fn use_refresh(&self, hash: &TokenHash, now: i64) -> Result<RefreshUse, StoreError>;

    /// RFC 7009: an access token ends alone; a refresh token ends its whole grant (and so
    /// every access token from it). Unknown tokens are not an error.
    async fn revoke_token(&self, hash: &TokenHash) -> Result<(), StoreError>;
    /// Revokes a grant and ends its tokens. Unknown ids are not an error.
    async fn revoke_grant(&self, id: &str) -> Result<(), StoreError>;
    /// Signs a person out everywhere: revokes their grants, deletes their unused codes and
    /// their Bitrix24 tokens. `member_id` `None` means this user id on every portal.
    /// Returns the number of grants revoked.
    async fn revoke_person(&self, member_id: Option<&str>, user_id: i64)
    -> Result<u32, StoreError>;
    /// Everyone signed in, most recently used first.
    async fn people(&self) -> Result<Vec<PersonSummary>, StoreError>;
    /// Deletes expired pending authorizations, codes and tokens, grants left with no
    /// token (revoked, or
    /// an hour old), and registered clients that never got a grant within a day.
    async fn purge_expired(&self, now: i64) -> Result<(), StoreError>;

    /// Takes the lock `name` for `holder` until `expires_at_ms` (unix milliseconds), unless
    /// another holder has it and it has not expired: `true` when taken. Serializes work
    /// that processes sharing this store must not do twice at once (a person's refresh:
    /// Bitrix24 rotates refresh tokens). The default suits a store used by one process.
    async fn try_lock(
        &self,
        _name: &str,
        _holder: &str,
        _expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Releases `name` if `holder` still has it.
    async fn unlock(&self, _name: &str, _holder: &str) -> Result<(), StoreError> {
        Ok(())
    }
}
