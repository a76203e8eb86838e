//! The sign-in store: registered clients, pending authorizations, one-time codes, the
//! hashes of the tokens this server issues, and each person's Bitrix24 tokens.
//!
//! One object-safe trait, [`Store`], so that the OAuth layer holds an `Arc<dyn Store>` and a
//! shared store for several replicas plugs in later without touching it. Nothing here is
//! SQLite-specific; [`sqlite::SqliteStore`] is the embedded default. Our own tokens, codes
//! and states exist here only as [`TokenHash`]es, except the pair a refresh issued, kept
//! for its grace window so that a repeat gets it back ([`Rotation`]); that pair and the
//! Bitrix24 tokens are the only secrets kept, and an implementation must encrypt them at
//! rest ([`crypto`]).
//!
//! Every timestamp is unix seconds; a record whose `expires_at` is `<= now` is expired.
//! Callers pass `now` so that tests need no clock.

pub mod crypto;
mod metered;
pub mod redis;
mod schema;
pub mod sqlite;

use std::fmt;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use self::redis::{RedisOptions, RedisStore, RedisUrl};
pub use crypto::StoreKey;
pub use crypto::read_key_file;
pub use metered::metered;
pub use schema::{default_key_path, default_path};
/// Re-exported so callers build and read [`BitrixTokens`] without naming the crate.
pub use secrecy::{ExposeSecret, SecretString};
pub use sqlite::{Limits, SqliteStore};

/// How long a registered client that never got a grant is kept: long enough for the
/// person to finish signing in (a sign-in in progress keeps its client anyway), short
/// enough that a flood of registrations frees its places within minutes, not a day.
pub const CLIENT_GRACE: i64 = 15 * 60;

/// How long after a person's last sign-in or use the purge leaves them alone, whatever
/// their grants: between taking its code and saving its grant a sign-in has neither, and
/// this is far longer than a code lives (60 s).
pub(crate) const SIGN_IN_SETTLING: i64 = 300;

/// The sealed form of a rotated pair: `access` and `refresh` on two lines, bound to the
/// spent token's hash so it opens for no other token.
pub(crate) fn rotation_aad(spent: &TokenHash) -> Vec<u8> {
    let mut aad = b"rotation\0".to_vec();
    aad.extend_from_slice(spent.as_bytes());
    aad
}

/// The text sealed for a rotation (two base64url tokens never hold a newline).
pub(crate) fn rotation_text(next: &Rotation) -> String {
    format!(
        "{}\n{}",
        next.access.expose_secret(),
        next.refresh.expose_secret()
    )
}

/// A rotated pair back from its sealed text.
pub(crate) fn rotation_pair(
    plain: &SecretString,
    access_expires_at: i64,
) -> Result<TokenPair, StoreError> {
    let (access, refresh) = plain
        .expose_secret()
        .split_once('\n')
        .ok_or_else(|| StoreError::Unavailable("a stored token pair is corrupt".into()))?;
    Ok(TokenPair {
        access: SecretString::from(access),
        refresh: SecretString::from(refresh),
        access_expires_at,
    })
}

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
    /// A store or key file that another user could read or change (group or other
    /// permissions, another owner): refused, with the fix in the message.
    #[error("{0}")]
    Exposed(String),
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

/// The pair a refresh is about to issue, handed to [`Store::use_refresh`] so that the use
/// of the old token and the new pair are written in one atomic step.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The new access token (the store keeps its hash, and the value sealed for a repeat).
    pub access: SecretString,
    /// The new refresh token (likewise).
    pub refresh: SecretString,
    pub access_expires_at: i64,
    pub refresh_expires_at: i64,
    /// Seconds after this use during which a repeat of the same refresh token gets this
    /// pair back instead of counting as a reuse; 0: no repeat is forgiven.
    pub grace: i64,
}

/// A pair issued earlier, given back to a repeat within the grace window.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access: SecretString,
    pub refresh: SecretString,
    pub access_expires_at: i64,
}

impl PartialEq for TokenPair {
    fn eq(&self, other: &Self) -> bool {
        self.access.expose_secret() == other.access.expose_secret()
            && self.refresh.expose_secret() == other.refresh.expose_secret()
            && self.access_expires_at == other.access_expires_at
    }
}

impl Eq for TokenPair {}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// First use: the token is now spent and the [`Rotation`]'s pair is live on this grant.
    Fresh(Grant),
    /// A repeat within the grace window of the first use (a client that lost the answer,
    /// or two processes sharing one token): the pair the first use issued, still unused.
    Repeat(Grant, TokenPair),
    /// Already used, after the grace window: a sign of theft, so the store has revoked the
    /// grant (and, if it was the person's last, deleted their Bitrix24 tokens).
    Reused { grant_id: String },
    /// Not a live refresh token (unknown, expired, or its grant or person revoked), or a
    /// repeat within the window whose pair was itself already refreshed: refused, nothing
    /// revoked.
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
    /// The grant of a refresh token that is known, unexpired, and whose grant and person
    /// are live, spent or not. Changes nothing: the token endpoint checks the client
    /// against it before [`Store::use_refresh`], so a wrong client's attempt leaves the
    /// token usable for the rightful one.
    async fn refresh_token_grant(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<Grant>, StoreError>;
    /// Presents a refresh token, atomically (also across processes sharing the store):
    /// - unspent: marks it spent, stores `next` as the grant's new pair and answers
    ///   `Fresh`; of concurrent uses exactly one is `Fresh`. Only what reuse detection
    ///   needs is kept: this spent token (older spent ones of the grant are deleted) and
    ///   the access tokens of the last two generations (older ones are deleted).
    /// - spent within `grace` seconds of its first use (the first use's `next.grace`):
    ///   `Repeat` with the pair the first use issued, while that pair's refresh token is
    ///   unspent; `Unknown` once it is spent.
    /// - spent after that: revokes the grant and answers `Reused`.
    async fn use_refresh(
        &self,
        hash: &TokenHash,
        now: i64,
        next: Rotation,
    ) -> Result<RefreshUse, StoreError>;

    /// RFC 7009: an access token ends alone; a refresh token ends its whole grant (and so
    /// every access token from it). Unknown tokens are not an error. A grant revoked here
    /// (or by `revoke_grant`, or by a refresh reuse) that was its person's last live one
    /// also deletes the person's Bitrix24 tokens, unless a code of theirs is still
    /// waiting to be exchanged.
    async fn revoke_token(&self, hash: &TokenHash) -> Result<(), StoreError>;
    /// Revokes a grant and ends its tokens. Unknown ids are not an error.
    async fn revoke_grant(&self, id: &str) -> Result<(), StoreError>;
    /// Signs a person out everywhere: revokes their grants, deletes their unused codes and
    /// their Bitrix24 tokens. `member_id` `None` means this user id on every portal.
    /// Returns the number of grants revoked.
    async fn revoke_person(&self, member_id: Option<&str>, user_id: i64)
    -> Result<u32, StoreError>;
    /// Everyone signed in (at least one live grant), most recently used first.
    async fn people(&self) -> Result<Vec<PersonSummary>, StoreError>;
    /// Deletes expired pending authorizations, codes, tokens and repeat windows, grants
    /// left with no token (revoked, or an hour old), the Bitrix24 tokens of people left
    /// with no live grant and no code, and registered clients that got no grant within
    /// [`CLIENT_GRACE`] and have no sign-in in progress.
    async fn purge_expired(&self, now: i64) -> Result<(), StoreError>;

    /// One cheap round trip (SQLite: a trivial query; Redis: `PING`), for the readiness
    /// check: `Ok` when the store answers now.
    async fn ping(&self) -> Result<(), StoreError>;

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
