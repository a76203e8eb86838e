//! The deprecated 2024-11-05 HTTP+SSE transport, for older clients and gateways.
//!
//! `GET /sse` opens an event stream whose first event, `endpoint`, names the URL to POST
//! to (`/message?sessionId=…`); each POSTed JSON-RPC message is answered `202` and its
//! reply arrives on the stream as an `event: message`. rmcp 3 ships no such transport,
//! so each stream gets its own rmcp session over a pair of channels (rmcp accepts any
//! `(Sink, Stream)` as a transport). [`super::http`] layers on the bearer check and
//! rmcp's Host/Origin check, so these routes are refused exactly as `/mcp` is.
//!
//! Under sign-in a session belongs to the person who opened the stream: a message
//! POSTed to it with another person's token gets the 404 of an unknown session (as on
//! `/mcp`, see [`super::sessions::bind_to_person`]) and changes nothing.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, request::Parts};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use rmcp::model::{ClientJsonRpcMessage, JsonRpcMessage, RequestId};
use rmcp::service::TxJsonRpcMessage;
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, PollSender};

use super::inflight::{InFlight, InFlightToken};
use super::jsonrpc::{BodyCheck, check_body};
use super::sessions::SessionSlots;
use crate::sign_in::resource::PersonId;

/// Path of the event stream.
pub const SSE_PATH: &str = "/sse";
/// Path clients POST their messages to.
pub const MESSAGE_PATH: &str = "/message";

/// Messages buffered per direction before the sender waits.
const CHANNEL_CAPACITY: usize = 64;
/// Comment lines on idle streams, so proxies do not cut them.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Requests of one session whose replies have not been sent yet.
type Pending = Arc<Mutex<HashMap<RequestId, InFlightToken>>>;

struct Session {
    /// The signed-in person who opened the stream (`None` without sign-in).
    owner: Option<PersonId>,
    to_server: mpsc::Sender<ClientJsonRpcMessage>,
    pending: Pending,
    /// Told of every message POSTed, so an idle session can be closed.
    activity: watch::Sender<()>,
}

/// The session bounds, shared with `/mcp` (see [`super::sessions`]).
pub struct Bounds {
    /// The pool every open stream takes a slot from.
    pub slots: SessionSlots,
    /// A session without a POSTed message (and no call running) for this long is closed.
    pub idle_timeout: Duration,
}

struct Shared<S> {
    sessions: Mutex<HashMap<String, Session>>,
    server: S,
    inflight: InFlight,
    shutdown: CancellationToken,
    bounds: Bounds,
}

impl<S> Shared<S> {
    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `GET /sse` and `POST /message` routes. `server` is cloned for each stream;
/// cancelling `shutdown` ends every session and closes every stream.
pub fn router<S>(
    server: S,
    inflight: InFlight,
    shutdown: CancellationToken,
    bounds: Bounds,
) -> Router
where
    S: ServerHandler + Clone + Send + Sync + 'static,
{
    let shared = Arc::new(Shared {
        sessions: Mutex::default(),
        server,
        inflight,
        shutdown,
        bounds,
    });
    Router::new()
        .route(SSE_PATH, get(open_stream::<S>))
        .route(MESSAGE_PATH, post(post_message::<S>))
        .with_state(shared)
}

async fn open_stream<S>(State(shared): State<Arc<Shared<S>>>, parts: Parts) -> Response
where
    S: ServerHandler + Clone + Send + Sync + 'static,
{
    if shared.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: shutting down",
        )
            .into_response();
    }
    let Some(slot) = shared.bounds.slots.try_take() else {
        return shared.bounds.slots.full(None);
    };
    let session_id = uuid::Uuid::new_v4().simple().to_string();
    let (to_server_tx, to_server_rx) = mpsc::channel::<ClientJsonRpcMessage>(CHANNEL_CAPACITY);
    let (to_client_tx, to_client_rx) =
        mpsc::channel::<TxJsonRpcMessage<RoleServer>>(CHANNEL_CAPACITY);
    let pending = Pending::default();
    let (activity, mut activity_rx) = watch::channel(());
    shared.sessions().insert(
        session_id.clone(),
        Session {
            owner: parts.extensions.get::<PersonId>().cloned(),
            to_server: to_server_tx,
            pending: pending.clone(),
            activity,
        },
    );
    tracing::debug!(session = %session_id, "legacy SSE session opened");

    let session_ct = shared.shutdown.child_token();
    // Resolves once the response stream (the receiver) is dropped: the client left.
    let client_gone = to_client_tx.clone();
    let task_shared = shared.clone();
    let sid = session_id.clone();
    let idle_timeout = shared.bounds.idle_timeout;
    let running = pending.clone();
    tokio::spawn(async move {
        let transport = (
            PollSender::new(to_client_tx),
            ReceiverStream::new(to_server_rx),
        );
        let server = task_shared.server.clone();
        let run = async {
            match server.serve_with_ct(transport, session_ct.clone()).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(e) => {
                    tracing::info!(session = %sid, "legacy SSE session ended before the handshake: {e}")
                }
            }
        };
        let idle = async {
            loop {
                match tokio::time::timeout(idle_timeout, activity_rx.changed()).await {
                    Ok(Ok(())) => {}
                    // Only once the session is gone from the map, which happens below.
                    Ok(Err(_)) => std::future::pending::<()>().await,
                    // A call still running is not idleness; its reply is on its way.
                    Err(_) if !lock(&running).is_empty() => {}
                    Err(_) => break,
                }
            }
        };
        tokio::select! {
            _ = run => {}
            _ = client_gone.closed() => session_ct.cancel(),
            _ = idle => {
                tracing::info!(session = %sid, ?idle_timeout, "legacy SSE session closed after idling");
                session_ct.cancel();
            }
        }
        task_shared.sessions().remove(&sid);
        drop(slot);
        tracing::debug!(session = %sid, "legacy SSE session closed");
    });

    // Relative, so it resolves against whatever URL the client used for /sse.
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("{MESSAGE_PATH}?sessionId={session_id}"));
    let messages = ReceiverStream::new(to_client_rx).map(move |message| {
        if let Some(id) = reply_id(&message) {
            // The reply is on its way: the request is no longer in flight.
            lock(&pending).remove(id);
        }
        let data = serde_json::to_string(&message).unwrap_or_else(|e| {
            tracing::error!("cannot encode a server message: {e}");
            String::from("{}")
        });
        Ok::<_, Infallible>(Event::default().event("message").data(data))
    });
    let stream = futures::stream::once(async move { Ok(endpoint) })
        .chain(messages)
        // Shutdown closes the stream even if a session is slow to wind down.
        .take_until(shared.shutdown.clone().cancelled_owned());
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

#[derive(serde::Deserialize)]
struct SessionQuery {
    #[serde(rename = "sessionId")]
    session_id: String,
}

async fn post_message<S>(
    State(shared): State<Arc<Shared<S>>>,
    Query(query): Query<SessionQuery>,
    parts: Parts,
    body: Bytes,
) -> Response
where
    S: ServerHandler + Clone + Send + Sync + 'static,
{
    // The same validator as stdio and /mcp: a malformed body gets a JSON-RPC error (HTTP
    // 400), never axum's plain-text rejection.
    // Parsed once: the validator's message is the one served.
    let mut message: ClientJsonRpcMessage = match check_body(&body) {
        BodyCheck::Pass { message, .. } => *message,
        BodyCheck::Refuse(error) => return json_rpc_error(error),
    };
    let person = parts.extensions.get::<PersonId>();
    let found = shared.sessions().get(&query.session_id).map(|s| {
        let foreign = s.owner.as_ref().is_some_and(|owner| Some(owner) != person);
        if !foreign {
            // Another person's message is no activity of the owner's.
            s.activity.send_replace(());
        }
        (foreign, s.to_server.clone(), s.pending.clone())
    });
    if let Some((true, ..)) = found {
        // Neither the session id nor the token: either would let a log reader in.
        tracing::warn!(
            user_id = person.map(|p| p.user_id),
            "refused a message to a legacy SSE session another person opened (answered 404, as \
             an unknown session; the session stays open for its owner)"
        );
    }
    let Some((false, to_server, pending)) = found else {
        return (
            StatusCode::NOT_FOUND,
            "Not Found: no such session; open a new one with GET /sse",
        )
            .into_response();
    };
    let request_id = match &message {
        JsonRpcMessage::Request(request) => Some(request.id.clone()),
        _ => None,
    };
    if let Some(id) = &request_id {
        // Before sending, so a fast reply cannot overtake the bookkeeping.
        lock(&pending).insert(id.clone(), shared.inflight.token());
    }
    // Tools can read the HTTP request (headers) as for /mcp.
    message.insert_extension(parts);
    match to_server.send(message).await {
        Ok(()) => (StatusCode::ACCEPTED, "Accepted").into_response(),
        Err(_) => {
            if let Some(id) = &request_id {
                lock(&pending).remove(id);
            }
            (
                StatusCode::GONE,
                "Gone: the session has ended; open a new one with GET /sse",
            )
                .into_response()
        }
    }
}

fn json_rpc_error(error: serde_json::Value) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        error.to_string(),
    )
        .into_response()
}

/// The id a server message answers, if it is a reply.
fn reply_id(message: &TxJsonRpcMessage<RoleServer>) -> Option<&RequestId> {
    match message {
        JsonRpcMessage::Response(response) => Some(&response.id),
        JsonRpcMessage::Error(error) => error.id.as_ref(),
        _ => None,
    }
}

fn lock(pending: &Pending) -> MutexGuard<'_, HashMap<RequestId, InFlightToken>> {
    pending.lock().unwrap_or_else(|e| e.into_inner())
}
