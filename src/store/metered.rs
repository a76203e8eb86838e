//! A [`Store`] that counts the errors of the store it wraps
//! (`bitrix24_mcp_store_errors_total`, by operation class), so every backend is counted
//! the same way without a hook in each of its methods.

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    AuthCode, BitrixTokens, ClientRecord, Grant, IssuedToken, PendingAuth, Person, PersonSummary,
    RefreshUse, Rotation, Store, StoreError, TokenHash,
};
use crate::metrics::{self, StoreOp};

/// `inner`, with its errors counted.
pub fn metered(inner: Arc<dyn Store>) -> Arc<dyn Store> {
    Arc::new(Metered(inner))
}

struct Metered(Arc<dyn Store>);

fn counted<T>(op: StoreOp, result: Result<T, StoreError>) -> Result<T, StoreError> {
    if result.is_err() {
        metrics::store_error(op);
    }
    result
}

use StoreOp::{Lock, Purge, Read, Write};

#[async_trait]
impl Store for Metered {
    async fn ping(&self) -> Result<(), StoreError> {
        counted(Read, self.0.ping().await)
    }
    async fn put_client(&self, client: ClientRecord) -> Result<(), StoreError> {
        counted(Write, self.0.put_client(client).await)
    }
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        counted(Read, self.0.client(client_id).await)
    }
    async fn put_pending(&self, pending: PendingAuth, now: i64) -> Result<(), StoreError> {
        counted(Write, self.0.put_pending(pending, now).await)
    }
    async fn take_pending(
        &self,
        state: &TokenHash,
        now: i64,
    ) -> Result<Option<PendingAuth>, StoreError> {
        counted(Write, self.0.take_pending(state, now).await)
    }
    async fn put_code(&self, code: AuthCode) -> Result<(), StoreError> {
        counted(Write, self.0.put_code(code).await)
    }
    async fn take_code(&self, code: &TokenHash, now: i64) -> Result<Option<AuthCode>, StoreError> {
        counted(Write, self.0.take_code(code, now).await)
    }
    async fn put_person(&self, person: Person) -> Result<(), StoreError> {
        counted(Write, self.0.put_person(person).await)
    }
    async fn person(&self, member_id: &str, user_id: i64) -> Result<Option<Person>, StoreError> {
        counted(Read, self.0.person(member_id, user_id).await)
    }
    async fn set_person_tokens(
        &self,
        member_id: &str,
        user_id: i64,
        tokens: BitrixTokens,
    ) -> Result<(), StoreError> {
        counted(
            Write,
            self.0.set_person_tokens(member_id, user_id, tokens).await,
        )
    }
    async fn touch_person(
        &self,
        member_id: &str,
        user_id: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        counted(Write, self.0.touch_person(member_id, user_id, now).await)
    }
    async fn put_grant(&self, grant: Grant) -> Result<(), StoreError> {
        counted(Write, self.0.put_grant(grant).await)
    }
    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        counted(Read, self.0.grant(id).await)
    }
    async fn put_token(&self, token: IssuedToken) -> Result<(), StoreError> {
        counted(Write, self.0.put_token(token).await)
    }
    async fn token(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<(IssuedToken, Grant)>, StoreError> {
        counted(Read, self.0.token(hash, now).await)
    }
    async fn refresh_token_grant(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<Grant>, StoreError> {
        counted(Read, self.0.refresh_token_grant(hash, now).await)
    }
    async fn use_refresh(
        &self,
        hash: &TokenHash,
        now: i64,
        next: Rotation,
    ) -> Result<RefreshUse, StoreError> {
        counted(Write, self.0.use_refresh(hash, now, next).await)
    }
    async fn revoke_token(&self, hash: &TokenHash) -> Result<(), StoreError> {
        counted(Write, self.0.revoke_token(hash).await)
    }
    async fn revoke_grant(&self, id: &str) -> Result<(), StoreError> {
        counted(Write, self.0.revoke_grant(id).await)
    }
    async fn revoke_person(
        &self,
        member_id: Option<&str>,
        user_id: i64,
    ) -> Result<u32, StoreError> {
        counted(Write, self.0.revoke_person(member_id, user_id).await)
    }
    async fn people(&self) -> Result<Vec<PersonSummary>, StoreError> {
        counted(Read, self.0.people().await)
    }
    async fn purge_expired(&self, now: i64) -> Result<(), StoreError> {
        counted(Purge, self.0.purge_expired(now).await)
    }
    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        counted(Lock, self.0.try_lock(name, holder, expires_at_ms).await)
    }
    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        counted(Lock, self.0.unlock(name, holder).await)
    }
}
