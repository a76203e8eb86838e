//! Each signed-in person's Bitrix24 token pair, held in the sign-in store
//! ([`crate::store::Store`]): the processes sharing the store take turns through its
//! lock `refresh:<member_id>:<user_id>`, and a refused refresh ends the person's sign-in,
//! so the next request gets the 401 that makes the client sign in again.

use std::sync::Arc;

use super::holder::{Holder, HolderError, Pair};
use crate::bitrix::{BoxFuture, CallError};
use crate::store::{BitrixTokens, Store, StoreError};

/// A person's pair in the sign-in store.
pub struct PersonPair {
    store: Arc<dyn Store>,
    member_id: String,
    user_id: i64,
}

// By hand: the store behind it has no Debug; the person is named, the token never.
impl std::fmt::Debug for PersonPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonPair")
            .field("member_id", &self.member_id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl PersonPair {
    /// The pair of the person `user_id` of the portal `member_id`.
    pub fn new(store: Arc<dyn Store>, member_id: &str, user_id: i64) -> Self {
        Self {
            store,
            member_id: member_id.to_string(),
            user_id,
        }
    }

    fn lock_name(&self) -> String {
        format!("refresh:{}:{}", self.member_id, self.user_id)
    }
}

impl From<BitrixTokens> for Pair {
    fn from(tokens: BitrixTokens) -> Pair {
        Pair {
            access: tokens.access,
            refresh: tokens.refresh,
            expires_at: Some(tokens.expires_at),
            server_endpoint: tokens.server_endpoint,
            client_endpoint: tokens.client_endpoint,
            scope: tokens.scope,
        }
    }
}

fn unavailable(e: StoreError) -> HolderError {
    HolderError::Unavailable(e.to_string())
}

impl Holder for PersonPair {
    fn describe(&self) -> &'static str {
        "this person's Bitrix24 token pair"
    }

    fn is_person(&self) -> bool {
        true
    }

    fn load(&self) -> BoxFuture<'_, Result<Option<Pair>, HolderError>> {
        Box::pin(async move {
            match self.store.person(&self.member_id, self.user_id).await {
                Ok(Some(person)) => Ok(Some(Pair::from(person.tokens))),
                Ok(None) => Err(HolderError::Ended("it was revoked".into())),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    fn lock<'a>(
        &'a self,
        holder: &'a str,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, HolderError>> {
        Box::pin(async move {
            self.store
                .try_lock(&self.lock_name(), holder, until_ms)
                .await
                .map_err(unavailable)
        })
    }

    fn unlock<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), HolderError>> {
        Box::pin(async move {
            self.store
                .unlock(&self.lock_name(), holder)
                .await
                .map_err(unavailable)
        })
    }

    fn store<'a>(&'a self, pair: &'a Pair) -> BoxFuture<'a, Result<(), HolderError>> {
        Box::pin(async move {
            let tokens = BitrixTokens {
                access: pair.access.clone(),
                refresh: pair.refresh.clone(),
                expires_at: pair
                    .expires_at
                    .unwrap_or_else(|| crate::clock::now_s() + 3600),
                server_endpoint: pair.server_endpoint.clone(),
                client_endpoint: pair.client_endpoint.clone(),
                scope: pair.scope.clone(),
            };
            // A person revoked meanwhile stays revoked (the store writes nothing).
            self.store
                .set_person_tokens(&self.member_id, self.user_id, tokens)
                .await
                .map_err(unavailable)?;
            tracing::info!(
                user_id = self.user_id,
                "a signed-in person's Bitrix24 token was refreshed"
            );
            Ok(())
        })
    }

    fn refused<'a>(&'a self, code: &'a str, _refusal: CallError) -> BoxFuture<'a, CallError> {
        Box::pin(async move {
            // The grant is gone for good: end the sign-in, so the next request gets the
            // 401 that makes the client sign in again.
            let _ = self
                .store
                .revoke_person(Some(&self.member_id), self.user_id)
                .await;
            tracing::info!(
                user_id = self.user_id,
                "a person's Bitrix24 grant is gone; their sign-in is ended"
            );
            crate::audit::bitrix_grant_lost(&self.member_id, self.user_id, code);
            CallError::SignInEnded(format!(
                "the Bitrix24 OAuth server refused the refresh ({code})"
            ))
        })
    }
}
