//! Bounds on HTTP sessions: at most `--max-sessions` open at once (streamable HTTP and
//! legacy SSE draw on one pool), each closed after `--session-idle-timeout` without a
//! message.
//!
//! On `/mcp` rmcp's [`LocalSessionManager`] keeps the sessions and, through its
//! `keep_alive`, closes idle ones (a request with their `Mcp-Session-Id` then gets
//! rmcp's 404, the spec's cue to start over); [`BoundedSessions`] wraps it to hold one
//! [`Slot`] per session. [`refuse_when_full`] takes the slot for an `initialize`
//! before rmcp sees it, so a refusal is a 503 with a JSON-RPC error rather than rmcp's
//! 500 for a failed `create_session`; rmcp then creates the session in the same task,
//! where the slot is waiting for it.
//!
//! Under sign-in a session also belongs to the person who opened it: [`bind_to_person`]
//! hands the person to `create_session` the same way, and refuses a request on the
//! session with another person's token as rmcp refuses an unknown session (404), so a
//! session id never stands in for authentication. [`delete_status`] gives `DELETE` the
//! answers clients expect (rmcp 3.11 answers 202 whether or not it knew the session).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::{
    ServerSseMessage, SessionId, SessionManager,
};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::sign_in::resource::PersonId;

/// A JSON-RPC error code of the server-defined range: no session can be opened now.
const TOO_MANY_SESSIONS: i64 = -32000;

/// The header rmcp reads a session id from.
const SESSION_HEADER: &str = "mcp-session-id";

/// How many sessions may be open and how long one may idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Open sessions at once, both transports together.
    pub max_sessions: usize,
    /// Time without a message after which a session is closed.
    pub idle_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_sessions: 1000,
            idle_timeout: Duration::from_secs(1800),
        }
    }
}

/// The pool of session slots. Cheap to clone.
#[derive(Clone)]
pub struct SessionSlots {
    permits: Arc<Semaphore>,
    max: usize,
}

/// One open session's share of the pool (counted in the metrics); dropping it frees the slot.
pub struct Slot(
    #[allow(dead_code)] OwnedSemaphorePermit,
    #[allow(dead_code)] crate::metrics::OpenSession,
);

impl SessionSlots {
    /// A pool of `max` slots.
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A free slot, or `None` when `max` sessions are open.
    pub fn try_take(&self) -> Option<Slot> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(Slot(permit, crate::metrics::OpenSession::open()))
    }

    /// Sessions open now.
    pub fn in_use(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// The answer to a request that would open a session past the limit: 503 and a
    /// JSON-RPC error naming the limit and how to raise it.
    pub fn full(&self, id: Option<Value>) -> Response {
        tracing::warn!(
            max_sessions = self.max,
            "refused a new session: the session limit is reached"
        );
        let mut error = json!({"jsonrpc": "2.0", "error": {
            "code": TOO_MANY_SESSIONS,
            "message": format!(
                "too many sessions: {} are open, the limit set by --max-sessions \
                 (MCP_MAX_SESSIONS); close one or try again later",
                self.max
            ),
        }});
        if let Some(id) = id {
            error["id"] = id;
        }
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            error.to_string(),
        )
            .into_response()
    }
}

/// Set by [`super::http_jsonrpc::check`] on a request that is a JSON-RPC `initialize`;
/// holds its id.
#[derive(Clone, Debug)]
pub struct Initialize(pub Value);

tokio::task_local! {
    /// The slot [`refuse_when_full`] took for the request being handled.
    static RESERVED: RefCell<Option<Slot>>;
    /// The signed-in person of the request being handled, for a session it opens.
    static OPENER: Option<PersonId>;
    /// Set by `close_session` when the `DELETE` being handled closed a session it knew.
    static CLOSED: Cell<bool>;
}

/// axum middleware on `/mcp` (sessionful mode): an `initialize` without a session id
/// opens a session, so it needs a free slot or gets 503.
pub async fn refuse_when_full(
    State(slots): State<SessionSlots>,
    request: Request,
    next: Next,
) -> Response {
    let Some(Initialize(id)) = request.extensions().get::<Initialize>().cloned() else {
        return next.run(request).await;
    };
    if request.headers().contains_key(SESSION_HEADER) {
        return next.run(request).await;
    }
    let Some(slot) = slots.try_take() else {
        return slots.full(Some(id));
    };
    // Not used (rmcp refused the request before creating a session): freed here.
    RESERVED
        .scope(RefCell::new(Some(slot)), next.run(request))
        .await
}

/// axum middleware on `/mcp` under sign-in: a request naming a session that another
/// person opened gets 404 and leaves the session as it was; a request that opens a
/// session makes its person the session's owner.
///
/// 404 rather than 403: to that person the session does not exist, and a 403 would
/// confirm that the id names someone's live session; a client treats 404 as "start a
/// new session", which is the only thing it can usefully do.
pub async fn bind_to_person(
    State(sessions): State<Arc<BoundedSessions>>,
    request: Request,
    next: Next,
) -> Response {
    let person = request.extensions().get::<PersonId>();
    match request.headers().get(SESSION_HEADER) {
        Some(id) => {
            let foreign = id
                .to_str()
                .is_ok_and(|id| sessions.belongs_to_another(id, person));
            if foreign {
                // Neither the session id nor the token: either would let a log reader in.
                tracing::warn!(
                    method = %request.method(),
                    user_id = person.map(|p| p.user_id),
                    "refused a request on a session another person opened (answered 404, as an \
                     unknown session; the session stays open for its owner)"
                );
                return (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response();
            }
            next.run(request).await
        }
        None => {
            let opener = person.cloned();
            OPENER.scope(opener, next.run(request)).await
        }
    }
}

/// axum middleware on `/mcp` (sessionful mode): `DELETE` answers 200 when it closed a
/// session and 404 when it knew none by that id, where rmcp (3.11, `handle_delete` in
/// `streamable_http_server/tower.rs`) answers 202 for both; other answers pass as rmcp
/// gave them (400 for a missing id, and so on).
pub async fn delete_status(request: Request, next: Next) -> Response {
    if request.method() != Method::DELETE {
        return next.run(request).await;
    }
    let (response, closed) = CLOSED
        .scope(Cell::new(false), async {
            let response = next.run(request).await;
            (response, CLOSED.with(Cell::get))
        })
        .await;
    if response.status() != StatusCode::ACCEPTED {
        return response;
    }
    if closed {
        StatusCode::OK.into_response()
    } else {
        (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response()
    }
}

/// One open session's slot, and the person who opened it (under sign-in).
struct Held {
    _slot: Slot,
    owner: Option<PersonId>,
}

/// rmcp's [`LocalSessionManager`] (idle sessions closed by its `keep_alive`), holding a
/// slot per session and its owner.
pub struct BoundedSessions {
    inner: LocalSessionManager,
    slots: SessionSlots,
    held: Mutex<HashMap<SessionId, Held>>,
}

impl BoundedSessions {
    /// Sessions drawing on `slots`, each closed after `idle_timeout` without an event.
    pub fn new(slots: SessionSlots, idle_timeout: Duration) -> Self {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = Some(idle_timeout);
        Self {
            inner,
            slots,
            held: Mutex::default(),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when session `id` is open, was opened by a signed-in person, and `person`
    /// is someone else (or nobody). Unknown sessions are rmcp's to answer.
    pub fn belongs_to_another(&self, id: &str, person: Option<&PersonId>) -> bool {
        self.held()
            .get(id)
            .and_then(|held| held.owner.as_ref())
            .is_some_and(|owner| Some(owner) != person)
    }
}

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BoundedSessionsError {
    /// Every slot is taken (only when two `initialize` raced for the last one without
    /// passing [`refuse_when_full`]; rmcp answers it with a 500).
    #[error("the session limit is reached")]
    Full,
    /// rmcp's own error.
    #[error(transparent)]
    Local(#[from] LocalSessionManagerError),
}

impl SessionManager for BoundedSessions {
    type Error = BoundedSessionsError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let reserved = RESERVED.try_with(|r| r.borrow_mut().take()).ok().flatten();
        let slot = reserved
            .or_else(|| self.slots.try_take())
            .ok_or(BoundedSessionsError::Full)?;
        let (id, transport) = self.inner.create_session().await?;
        let owner = OPENER.try_with(Clone::clone).ok().flatten();
        self.held().insert(id.clone(), Held { _slot: slot, owner });
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        Ok(self.inner.initialize_session(id, message).await?)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        Ok(self.inner.has_session(id).await?)
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let closed = self.inner.close_session(id).await;
        // rmcp has forgotten the session even when closing its worker failed.
        let freed = self.held().remove(id);
        // Only the DELETE's own call is in its scope (rmcp's cleanup after the session's
        // worker ends runs in a task of its own).
        let _ = CLOSED.try_with(|c| c.set(freed.is_some()));
        if freed.is_some() {
            drop(freed);
            // Idle, deleted by the client, or shut down; the id is not logged.
            tracing::info!(open = self.slots.in_use(), "HTTP session closed");
        }
        Ok(closed?)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.inner.create_stream(id, message).await?)
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        Ok(self.inner.accept_message(id, message).await?)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.inner.create_standalone_stream(id).await?)
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.inner.resume(id, last_event_id).await?)
    }
    // restore_session keeps the default (not supported): there is no session store, and
    // a restored session would bypass the slots.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_freed_when_dropped() {
        let slots = SessionSlots::new(2);
        let a = slots.try_take().unwrap();
        let _b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        assert_eq!(slots.in_use(), 2);
        drop(a);
        assert!(slots.try_take().is_some());
    }

    #[tokio::test]
    async fn a_closed_session_frees_its_slot() {
        let slots = SessionSlots::new(1);
        let sessions = BoundedSessions::new(slots.clone(), Duration::from_secs(60));
        let (id, _transport) = sessions.create_session().await.unwrap();
        assert!(matches!(
            sessions.create_session().await,
            Err(BoundedSessionsError::Full)
        ));
        sessions.close_session(&id).await.unwrap();
        assert_eq!(slots.in_use(), 0);
        assert!(!sessions.has_session(&id).await.unwrap());
    }
}
