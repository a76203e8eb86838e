//! The Bitrix24 REST 3.0 client. It knows URLs, credentials, envelopes, errors and
//! limits; it knows nothing of MCP.

pub mod endpoint;
pub mod envelope;
pub mod error;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reqwest::{Url, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use endpoint::{Auth, Endpoint, EndpointError};
pub use envelope::{Success, TimeInfo};
pub use error::{CallError, ErrorClass, FieldError, PortalError, TransportError, TransportKind};

use crate::redact;

/// `User-Agent` sent with every request, as the REST docs recommend.
pub const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// Whether a call changes portal state; decides what may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reading: safe to repeat.
    Read,
    /// Writing: repeat only with the same `Idempotency-Key`.
    Write,
}

/// Tunables of the HTTP side.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (the portal cuts a request off after 60 s).
    pub request_timeout: Duration,
    /// Largest answer body accepted.
    pub max_response_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(65),
            max_response_bytes: 16 * 1024 * 1024,
        }
    }
}

/// A portal client; cheap to clone, one connection pool per process.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    options: ClientOptions,
    /// Built on first use: start-up (and the first `tools/list`) need no TLS roots.
    http: OnceLock<reqwest::Client>,
}

/// One raw HTTP answer.
struct RawAnswer {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

impl Client {
    /// A client for `endpoint`.
    pub fn new(endpoint: Endpoint, options: ClientOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                endpoint,
                options,
                http: OnceLock::new(),
            }),
        }
    }

    /// The configured endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// Calls a REST 3.0 method with `params` as the JSON body and decodes `result` as `T`.
    pub async fn call<P: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
        effect: Effect,
    ) -> Result<Success<T>, CallError> {
        let url = self.inner.endpoint.method_url(method);
        self.call_url(method, url, params, effect).await
    }

    /// Calls a method of the older REST generation (for `im.*`, which REST 3.0 lacks).
    pub async fn call_v1<P: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
        effect: Effect,
    ) -> Result<Success<T>, CallError> {
        let url = self.inner.endpoint.v1_method_url(method);
        self.call_url(method, url, params, effect).await
    }

    async fn call_url<P: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: &str,
        url: Url,
        params: &P,
        effect: Effect,
    ) -> Result<Success<T>, CallError> {
        let body = self.body(params)?;
        let started = Instant::now();
        let answer = self.send(url, body).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &answer {
            Ok(a) => tracing::debug!(method, ?effect, status = a.status, elapsed_ms, "REST call"),
            Err(e) => tracing::debug!(method, ?effect, error = %e, elapsed_ms, "REST call failed"),
        }
        let answer = answer?;
        envelope::decode(answer.status, answer.retry_after, &answer.body)
    }

    /// Serialises the parameters, adding the OAuth token as `auth` when configured.
    fn body<P: Serialize + ?Sized>(&self, params: &P) -> Result<Vec<u8>, CallError> {
        let encode_error = |e: serde_json::Error| CallError::Decode {
            status: 0,
            detail: format!("could not encode the request: {e}"),
        };
        match self.inner.endpoint.auth() {
            Auth::Webhook { .. } => serde_json::to_vec(params).map_err(encode_error),
            Auth::OAuth { access_token } => {
                let mut value = serde_json::to_value(params).map_err(encode_error)?;
                if let Value::Object(map) = &mut value {
                    map.insert("auth".into(), Value::String(access_token.clone()));
                }
                serde_json::to_vec(&value).map_err(encode_error)
            }
        }
    }

    fn http(&self) -> &reqwest::Client {
        self.inner.http.get_or_init(|| {
            // reqwest is built without a bundled provider; ring keeps the binary small.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(self.inner.options.connect_timeout)
                .timeout(self.inner.options.request_timeout)
                .user_agent(USER_AGENT)
                .pool_idle_timeout(Duration::from_secs(90))
                .build()
                .unwrap_or_else(|e| {
                    // Only a broken TLS setup gets here; fall back to the plain client.
                    tracing::error!(
                        "HTTP client setup failed: {}",
                        redact::redact(&e.to_string())
                    );
                    reqwest::Client::new()
                })
        })
    }

    /// POSTs `body` to `url`; follows one redirect by re-POSTing (never turning into GET).
    async fn send(&self, url: Url, body: Vec<u8>) -> Result<RawAnswer, CallError> {
        let first = self.post(url.clone(), body.clone()).await?;
        let status = first.status();
        if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            return self.read(first).await;
        }
        let location = first
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| url.join(l).ok())
            .ok_or_else(|| {
                transport(
                    TransportKind::Redirect,
                    format!("the portal answered HTTP {status} without a usable Location header"),
                )
            })?;
        tracing::info!(
            from = %self.inner.endpoint.portal(),
            to = %location.origin().ascii_serialization(),
            "portal redirected (domain change?); re-posting once"
        );
        let second = self.post(location, body).await?;
        if matches!(second.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
            return Err(transport(
                TransportKind::Redirect,
                "the portal redirected twice; update the portal address in your configuration"
                    .into(),
            ));
        }
        self.read(second).await
    }

    async fn post(&self, url: Url, body: Vec<u8>) -> Result<reqwest::Response, CallError> {
        self.http()
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(from_reqwest)
    }

    /// Reads the body up to the response cap.
    async fn read(&self, mut response: reqwest::Response) -> Result<RawAnswer, CallError> {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let max = self.inner.options.max_response_bytes;
        if response.content_length().is_some_and(|l| l > max as u64) {
            return Err(too_large(max));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
            if body.len() + chunk.len() > max {
                return Err(too_large(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RawAnswer {
            status,
            retry_after,
            body,
        })
    }
}

fn too_large(max: usize) -> CallError {
    transport(
        TransportKind::TooLarge,
        format!(
            "the portal's answer is larger than {} MiB; narrow the request (smaller limit)",
            max / (1024 * 1024)
        ),
    )
}

fn transport(kind: TransportKind, detail: String) -> CallError {
    CallError::Transport(TransportError { kind, detail })
}

/// Converts a reqwest error without its URL (which holds the webhook secret).
fn from_reqwest(e: reqwest::Error) -> CallError {
    let kind = if e.is_connect() {
        TransportKind::Connect
    } else if e.is_timeout() {
        TransportKind::Timeout
    } else {
        TransportKind::Interrupted
    };
    let e = e.without_url();
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    transport(kind, redact::redact(&detail).into_owned())
}
