//! Who a portal call runs as. Credentials travel with each call, so one portal client
//! (its connection pool, pacing bucket and operating-limit memory, all per portal) can
//! serve many people: the webhook's owner, the configured OAuth identity, or each person
//! who signed in to the HTTP server.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use secrecy::SecretString;

use super::CallError;

/// A boxed future, so that [`TokenSource`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where one OAuth identity's access token comes from and how it is renewed.
///
/// Implemented by the token engine (`crate::identity`), for the configured identity and
/// for each signed-in person, and by [`StaticToken`]. One refresh at a time per identity:
/// Bitrix24 rotates refresh tokens, so two concurrent refreshes would break the grant.
/// `Debug` lets a [`Caller`] derive its own; the secrets inside are [`SecretString`]s,
/// which print as `[REDACTED]`.
pub trait TokenSource: fmt::Debug + Send + Sync + 'static {
    /// The current access token (if any yet) and its generation.
    fn current(&self) -> (Option<SecretString>, u64);

    /// Replaces the access token of generation `seen`; returns at once when another call
    /// already moved the generation on. The HTTP client is the portal client's pool.
    fn refresh<'a>(
        &'a self,
        http: &'a reqwest::Client,
        seen: u64,
    ) -> BoxFuture<'a, Result<(), CallError>>;

    /// Whether [`TokenSource::refresh`] can ever succeed; a fixed token cannot be renewed,
    /// so an expired one is reported as it is.
    fn refreshable(&self) -> bool {
        true
    }
}

/// [`TokenSource::refresh`], given up (as a `Budget` error) at `deadline`, the end of
/// the calling request's budget. A source that writes files does so on the blocking
/// pool, which finishes the write even when the caller gives up.
pub async fn refresh_within(
    source: &dyn TokenSource,
    http: &reqwest::Client,
    seen: u64,
    deadline: tokio::time::Instant,
) -> Result<(), CallError> {
    match tokio::time::timeout_at(deadline, source.refresh(http, seen)).await {
        Ok(done) => done,
        Err(_) => Err(CallError::Budget(
            "refreshing the OAuth access token took longer than the call may wait; \
             the OAuth server is slow or unreachable: try again"
                .into(),
        )),
    }
}

/// An access token given as it is (`BITRIX24_ACCESS_TOKEN` without refresh settings).
#[derive(Debug)]
pub struct StaticToken(SecretString);

impl StaticToken {
    /// A source that always answers `token`.
    pub fn new(token: &str) -> Self {
        Self(token.into())
    }
}

impl TokenSource for StaticToken {
    fn current(&self) -> (Option<SecretString>, u64) {
        (Some(self.0.clone()), 0)
    }

    fn refresh<'a>(
        &'a self,
        _http: &'a reqwest::Client,
        _seen: u64,
    ) -> BoxFuture<'a, Result<(), CallError>> {
        Box::pin(async { Ok(()) })
    }

    fn refreshable(&self) -> bool {
        false
    }
}

/// The credentials of one call.
#[derive(Clone, Debug)]
pub enum Caller {
    /// An inbound webhook: the user id and secret go into the URL path.
    Webhook(Arc<WebhookCredentials>),
    /// An OAuth identity: its access token goes into the JSON body's `auth`.
    OAuth(Arc<dyn TokenSource>),
}

/// The user and secret of an inbound webhook (`/rest/api/{user_id}/{secret}/`).
#[derive(Debug)]
pub struct WebhookCredentials {
    /// The Bitrix24 user the webhook acts as.
    pub user_id: u64,
    /// The webhook's secret; registered with [`crate::redact`] when parsed.
    pub secret: SecretString,
}
