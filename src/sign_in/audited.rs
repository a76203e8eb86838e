//! What sign-in tells the audit trail ([`crate::audit`]): its events, each with the name
//! of the client concerned, and that name for each signed-in request. Names are read from
//! the store once per client and kept (a registration never changes its name), so that a
//! tool call costs no store read for it. Without an audit trail nothing is looked up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::SignIn;
use super::documents::is_document_id;
use crate::store::{Grant, Store};

/// Most names kept; past it the cache starts over (registrations are rate-limited, so
/// this is reached only by a flood, which must not grow memory without end).
const MOST: usize = 4096;

/// Client ids and the names they registered under (`None`: registered without one).
#[derive(Default)]
pub(super) struct ClientNames {
    names: Mutex<HashMap<String, Option<Arc<str>>>>,
}

impl ClientNames {
    /// The name of `client_id`: a metadata document's client is named by its host (the
    /// name inside a document is the client's own, unchecked claim, as the consent page
    /// says); a registered client by its registration. `None` for an unnamed or unknown
    /// client, or when the store cannot say (then asked again next time).
    async fn name(&self, store: &dyn Store, client_id: &str) -> Option<Arc<str>> {
        if is_document_id(client_id) {
            return url::Url::parse(client_id)
                .ok()
                .and_then(|u| u.host_str().map(Arc::from));
        }
        if let Some(known) = self.lock().get(client_id) {
            return known.clone();
        }
        let record = match store.client(client_id).await {
            Ok(Some(record)) => record,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!("sign-in store error while reading a client's name: {e}");
                return None;
            }
        };
        let name = record
            .client_name
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .map(Arc::from);
        let mut names = self.lock();
        if names.len() >= MOST {
            names.clear();
        }
        names.insert(client_id.to_string(), name.clone());
        name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Arc<str>>>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SignIn {
    /// The name of the client `client_id` for the audit trail; `None` without a trail.
    pub(crate) async fn client_name(&self, client_id: &str) -> Option<Arc<str>> {
        if !crate::audit::enabled() {
            return None;
        }
        self.inner.client_names.name(self.store(), client_id).await
    }

    /// The consent page is shown for `client_id`, to send the browser back to `redirect_uri`.
    pub(super) async fn audit_shown(&self, client_id: &str, redirect_uri: &str) {
        let name = self.client_name(client_id).await;
        crate::audit::consent_shown(client_id, name.as_deref(), redirect_uri);
    }

    /// The person allowed (`allowed`) or denied `client_id` on the consent page.
    pub(super) async fn audit_consent(&self, client_id: &str, allowed: bool) {
        let name = self.client_name(client_id).await;
        crate::audit::consent_answered(client_id, name.as_deref(), allowed);
    }

    /// `grant`'s client exchanged its code: the person is signed in through it.
    pub(super) async fn audit_signed_in(&self, grant: &Grant) {
        let name = self.client_name(&grant.client_id).await;
        crate::audit::sign_in_completed(grant, name.as_deref());
    }

    /// `grant`'s spent refresh token came back: the grant was revoked.
    pub(super) async fn audit_reused(&self, grant: &Grant) {
        let name = self.client_name(&grant.client_id).await;
        crate::audit::refresh_token_reused(grant, name.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ClientRecord, SqliteStore, StoreKey};

    #[tokio::test]
    async fn names_come_from_the_registration_or_the_documents_host_and_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = StoreKey::generate().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db"), key).unwrap();
        for (id, name) in [
            ("named", Some("  Cursor ")),
            ("unnamed", Some(" ")),
            ("none", None),
        ] {
            store
                .put_client(ClientRecord {
                    client_id: id.into(),
                    client_name: name.map(str::to_string),
                    redirect_uris: vec![],
                    created_at: 0,
                    secret_hash: None,
                })
                .await
                .unwrap();
        }
        let names = ClientNames::default();
        assert_eq!(names.name(&store, "named").await.as_deref(), Some("Cursor"));
        assert_eq!(names.name(&store, "unnamed").await, None);
        assert_eq!(names.name(&store, "none").await, None);
        assert_eq!(names.name(&store, "unknown").await, None);
        assert_eq!(
            names
                .name(
                    &store,
                    "https://claude.ai/oauth/claude-code-client-metadata"
                )
                .await
                .as_deref(),
            Some("claude.ai")
        );
        // Kept: a second store that knows nothing still gives the name.
        let (key, _) = StoreKey::generate().unwrap();
        let other = SqliteStore::open(&dir.path().join("t.db"), key).unwrap();
        assert_eq!(names.name(&other, "named").await.as_deref(), Some("Cursor"));
        assert_eq!(names.name(&other, "none").await, None);
        assert_eq!(names.lock().len(), 3, "unknown ids are not kept");
    }
}
