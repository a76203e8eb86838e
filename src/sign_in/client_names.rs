//! The names of the clients people sign in through, for the audit trail: read from the
//! store once per client and kept (a registration never changes its name), so that a
//! tool call costs no store read for it. Without an audit trail nothing is looked up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::SignIn;
use super::documents::is_document_id;
use crate::store::Store;

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
}
