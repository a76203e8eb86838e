//! The Bitrix24 REST 3.0 client. It knows URLs, credentials, envelopes, errors and
//! limits; it knows nothing of MCP.
//! Over 400 lines because the attempt loop (pacing, the operating-limit gate, retries,
//! refresh, one redirect) is one piece, kept whole so its order can be read in one place.

pub mod caller;
pub mod endpoint;
pub mod envelope;
pub mod error;
pub mod gate;
pub mod grant;
pub mod pacing;
pub mod redirect;
pub mod retry;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reqwest::{Url, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use caller::{BoxFuture, Caller, StaticToken, TokenSource, WebhookCredentials};
pub use endpoint::{Endpoint, EndpointError, Portal};
pub use envelope::{Success, TimeInfo};
pub use error::{CallError, ErrorClass, FieldError, PortalError, TransportError, TransportKind};
pub use gate::{GateUnavailable, SharedGate};
pub use pacing::{BucketUnavailable, NoSlot, PaceError, Pacer, Rate, SharedBucket};
pub use retry::RetryPolicy;

use gate::Gate;
use retry::{Admit, Retrier, Step};

use crate::metrics::{self, GateRefusal, PortalLimit};
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
    /// How long the portal may go on running a request it received (the cloud: 60 s). A
    /// keyed write that may still be running is not repeated before this has passed
    /// since it was sent (docs/bitrix24-api.md#idempotency-key: two requests with one key
    /// at the same moment may both run).
    pub run_limit: Duration,
    /// Largest answer body accepted.
    pub max_response_bytes: usize,
    /// The client-side leaky bucket, matching the portal's plan.
    pub rate: Rate,
    /// Where the bucket lives when replicas share it (keyed by the portal's origin);
    /// `None` = in this process.
    pub shared_bucket: Option<Arc<dyn SharedBucket>>,
    /// Where each method's operating-limit block lives when replicas share it (keyed by
    /// the portal's origin and the method); `None` = in this process.
    pub shared_gate: Option<Arc<dyn SharedGate>>,
    /// How long one call may wait in all (for a rate-limit slot, between retries, for an
    /// operating-limit reset) before it gives up; attempts themselves are not counted.
    pub call_budget: Duration,
    /// Retry bounds and delays.
    pub retry: RetryPolicy,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(65),
            run_limit: Duration::from_secs(60),
            max_response_bytes: 16 * 1024 * 1024,
            rate: Rate::STANDARD,
            shared_bucket: None,
            shared_gate: None,
            call_budget: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// A portal client; cheap to clone, one connection pool per process. It carries no
/// identity: every call names its [`Caller`], while the pool, the pacing bucket and the
/// operating-limit memory stay shared by everyone calling the portal.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    portal: Portal,
    options: ClientOptions,
    /// Built on first use: start-up (and the first `tools/list`) need no TLS roots.
    http: OnceLock<reqwest::Client>,
    /// One bucket for every session of the process: the portal counts per IP.
    pacer: Pacer,
    gate: Gate,
}

/// One raw HTTP answer.
struct RawAnswer {
    status: u16,
    retry_after: Option<Duration>,
    /// `Idempotent-Replayed: true`: the portal had already applied this write.
    replayed: bool,
    body: Vec<u8>,
}

impl Client {
    /// A client for `portal`.
    pub fn new(portal: Portal, options: ClientOptions) -> Self {
        // The portal's bucket, less a small reserve (see `Rate::with_reserve`).
        let rate = options.rate.with_reserve();
        let pacer = match &options.shared_bucket {
            Some(bucket) => Pacer::shared(rate, bucket.clone(), portal.origin()),
            None => Pacer::new(rate),
        };
        let gate = match &options.shared_gate {
            Some(shared) => Gate::shared(shared.clone(), portal.origin()),
            None => Gate::default(),
        };
        Self {
            inner: Arc::new(Inner {
                pacer,
                gate,
                portal,
                options,
                http: OnceLock::new(),
            }),
        }
    }

    /// The portal this client calls.
    pub fn portal(&self) -> &Portal {
        &self.inner.portal
    }

    /// Calls a REST 3.0 method as `caller` with `params` as the JSON body and decodes
    /// `result` as `T`.
    pub async fn call<P: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        caller: &Caller,
        method: &str,
        params: &P,
        effect: Effect,
    ) -> Result<Success<T>, CallError> {
        let url = self.inner.portal.method_url(caller, method);
        let budget = self.inner.options.call_budget;
        self.call_url(caller, method, url, params, effect, true, budget)
            .await
    }

    /// Calls a method of the older REST generation (for `im.*`, which REST 3.0 lacks, and
    /// `tasks.task.list`, whose REST 3.0 form filters by id only).
    pub async fn call_v1<P: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        caller: &Caller,
        method: &str,
        params: &P,
        effect: Effect,
    ) -> Result<Success<T>, CallError> {
        let url = self.inner.portal.v1_method_url(caller, method);
        let budget = self.inner.options.call_budget;
        self.call_url(caller, method, url, params, effect, false, budget)
            .await
    }

    /// [`Client::call_v1`] that waits at most `budget` in all (for a rate-limit slot,
    /// between retries, for an operating-limit reset), or the configured call budget if
    /// that is shorter: for answers that must come quickly or not at all (completions).
    pub async fn call_v1_within<P: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        caller: &Caller,
        method: &str,
        params: &P,
        effect: Effect,
        budget: Duration,
    ) -> Result<Success<T>, CallError> {
        let url = self.inner.portal.v1_method_url(caller, method);
        let budget = budget.min(self.inner.options.call_budget);
        self.call_url(caller, method, url, params, effect, false, budget)
            .await
    }

    /// Paces, sends, retries (module `retry`) and refreshes the OAuth token (module
    /// `oauth`) until the call succeeds, fails for good, or its budget runs out.
    // The generation and budget are what `call`, `call_v1` and `call_v1_within` differ in.
    #[allow(clippy::too_many_arguments)]
    async fn call_url<P: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        caller: &Caller,
        method: &str,
        url: Url,
        params: &P,
        effect: Effect,
        v3: bool,
        budget: Duration,
    ) -> Result<Success<T>, CallError> {
        let params = serde_json::to_value(params).map_err(encode_error)?;
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(budget)
            .unwrap_or(now + retry::MAX_OPERATING_WAIT);
        // REST 3.0 honours Idempotency-Key on writes (v1 ignores it): one key for every
        // attempt of this call turns a repeat of an applied write into a replay.
        let key = (effect == Effect::Write && v3).then(retry::idempotency_key);
        let mut retrier = Retrier::new(
            self.inner.options.retry.clone(),
            effect == Effect::Read || key.is_some(),
        );
        let mut refreshed = false;
        // The error of the previous attempt: once something was sent, running out of
        // budget reports what actually went wrong rather than "not sent".
        let mut last: Option<CallError> = None;
        let mut attempt = 0u32;
        // Whether this call found the method blocked: its success then lifts the block.
        let mut saw_block = false;
        loop {
            attempt += 1;
            match self.wait_for_turn(method, deadline).await {
                Ok(blocked) => saw_block |= blocked,
                Err(e) => return Err(last.unwrap_or(e)),
            }
            let (token, generation) = self.access_token(caller, deadline).await?;
            let body = self.body(&params, token.as_ref())?;
            let started = Instant::now();
            let answer = self.send(url.clone(), body, key.as_deref()).await;
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            metrics::portal_request(
                method,
                answer.as_ref().ok().map(|a| a.status),
                started.elapsed(),
            );
            match &answer {
                Ok(a) => tracing::debug!(
                    method,
                    ?effect,
                    attempt,
                    status = a.status,
                    elapsed_ms,
                    "REST call"
                ),
                Err(e) => {
                    tracing::debug!(method, ?effect, attempt, error = %e, elapsed_ms, "REST call failed")
                }
            }
            let outcome = answer.and_then(|a| {
                if a.replayed {
                    tracing::info!(
                        method,
                        attempt,
                        "the portal had already applied this write; it replayed the stored answer"
                    );
                }
                envelope::decode::<T>(a.status, a.retry_after, &a.body)
            });
            let mut err = match outcome {
                Ok(success) => {
                    self.inner
                        .gate
                        .observe(method, &success.time, saw_block)
                        .await;
                    return Ok(success);
                }
                Err(e) => e,
            };
            count_limit(method, &err);
            if err
                .portal()
                .is_some_and(|p| p.class() == ErrorClass::ExpiredToken)
            {
                match caller {
                    Caller::OAuth(source) if source.refreshable() && !refreshed => {
                        refreshed = true;
                        tracing::info!(
                            method,
                            "the access token expired or was revoked; refreshing it"
                        );
                        caller::refresh_within(source.as_ref(), self.http(), generation, deadline)
                            .await?;
                        last = Some(err);
                        continue;
                    }
                    _ => return Err(err),
                }
            }
            let delay = match retrier.next(&err, self.inner.gate.last_reset(method)) {
                Step::GiveUp => return Err(err),
                Step::QueryLimit(delay) => {
                    self.inner.pacer.note_full().await;
                    delay
                }
                // A write that may still be running on the portal waits until it cannot be.
                Step::Transient(delay) if key.is_some() && err.may_still_run() => delay.max(
                    (started + self.inner.options.run_limit)
                        .saturating_duration_since(Instant::now()),
                ),
                Step::Transient(delay) => delay,
                Step::OperatingReset(at) => {
                    // The gate makes this and every other call of the method wait.
                    self.inner.gate.block(method, at).await;
                    if let CallError::Portal(p) = &mut err {
                        // Capped, so the answer says when the method really frees up.
                        p.operating_reset_at = Some(at);
                    }
                    Duration::ZERO
                }
            };
            if !retry::fits(delay, deadline) {
                return Err(err);
            }
            tracing::info!(method, attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying");
            metrics::portal_retry(method);
            tokio::time::sleep(delay).await;
            last = Some(err);
        }
    }

    /// Waits until the method is not blocked by the operating limit and a rate-limit
    /// slot is free; a `Budget` error when either lies beyond `deadline`. `Ok(true)` when
    /// the method was blocked (this call is its probe, or waited for the reset).
    async fn wait_for_turn(
        &self,
        method: &str,
        deadline: tokio::time::Instant,
    ) -> Result<bool, CallError> {
        let budget = self.inner.options.call_budget.as_secs_f64();
        // Sending unchecked would let every replica call a method the portal blocks.
        let admit = self.inner.gate.admit(method).await.map_err(|e| {
            tracing::warn!(method, error = %e, "no operating-limit check; the call was not sent");
            metrics::gate_refused(method, GateRefusal::Unavailable);
            CallError::Budget(e.to_string())
        })?;
        match admit {
            Admit::Open => {}
            Admit::Probe => tracing::info!(
                method,
                "the portal blocked this method (OPERATION_TIME_LIMIT); sending one call to see whether the block lifted"
            ),
            Admit::Blocked(until) => {
                let wait = retry::until_unix(until);
                if !retry::fits(wait, deadline) {
                    metrics::gate_refused(method, GateRefusal::Blocked);
                    return Err(CallError::Budget(format!(
                        "the portal blocks {method} (OPERATION_TIME_LIMIT: it used up its execution-time allowance) \
                         until {}, longer than one call may wait ({budget:.0} s); one call is let through every {} s \
                         in case the block lifts sooner",
                        retry::describe_unix(until),
                        retry::PROBE_INTERVAL.as_secs()
                    )));
                }
                tokio::time::sleep(wait).await;
            }
        }
        let blocked = admit != Admit::Open;
        let asked = Instant::now();
        let paced = self.inner.pacer.acquire(deadline).await;
        metrics::pacing_wait(asked.elapsed());
        paced.map_err(|e| match e {
            PaceError::NoSlot(no) => {
                let rate = self.inner.pacer.rate();
                CallError::Budget(format!(
                    "too many calls are queued for the portal's rate limit ({} requests/s, burst {}): the next free slot \
                     is {:.1} s away, longer than one call may wait ({budget:.0} s)",
                    rate.per_sec,
                    rate.burst,
                    no.wait.as_secs_f64()
                ))
            }
            // Sending unpaced would let the replicas together exceed the portal's limit.
            PaceError::Unavailable(e) => {
                tracing::warn!(method, error = %e, "no rate-limit slot; the call was not sent");
                CallError::Budget(e.to_string())
            }
        })?;
        Ok(blocked)
    }

    /// The OAuth access token to send (refreshing first when there is none yet) and its
    /// generation; `None` for webhooks.
    async fn access_token(
        &self,
        caller: &Caller,
        deadline: tokio::time::Instant,
    ) -> Result<(Option<SecretString>, u64), CallError> {
        let Caller::OAuth(source) = caller else {
            return Ok((None, 0));
        };
        let (token, generation) = source.current();
        if token.is_some() {
            return Ok((token, generation));
        }
        caller::refresh_within(source.as_ref(), self.http(), generation, deadline).await?;
        Ok(source.current())
    }

    /// The JSON body, with the OAuth token as `auth` when there is one.
    fn body(&self, params: &Value, token: Option<&SecretString>) -> Result<Vec<u8>, CallError> {
        match (token, params) {
            (Some(token), Value::Object(map)) => {
                let mut map = map.clone();
                // The one place an access token leaves its wrapper: the portal reads it here.
                let auth = token.expose_secret().to_string();
                map.insert("auth".into(), Value::String(auth));
                serde_json::to_vec(&map).map_err(encode_error)
            }
            _ => serde_json::to_vec(params).map_err(encode_error),
        }
    }

    /// The connection pool, shared with the OAuth server's token endpoint.
    pub fn pool(&self) -> &reqwest::Client {
        self.http()
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
    async fn send(
        &self,
        url: Url,
        body: Vec<u8>,
        key: Option<&str>,
    ) -> Result<RawAnswer, CallError> {
        let first = self.post(url.clone(), body.clone(), key).await?;
        if !redirect::is_redirect(first.status().as_u16()) {
            return self.read(first).await;
        }
        let location = first
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok());
        let location = redirect::target(&url, location)
            .map_err(|detail| transport(TransportKind::Redirect, detail))?;
        redirect::warn_moved(&url, &location);
        let second = self.post(location, body, key).await?;
        if redirect::is_redirect(second.status().as_u16()) {
            return Err(transport(
                TransportKind::Redirect,
                "the portal redirected twice; update the portal address in your configuration"
                    .into(),
            ));
        }
        self.read(second).await
    }

    async fn post(
        &self,
        url: Url,
        body: Vec<u8>,
        key: Option<&str>,
    ) -> Result<reqwest::Response, CallError> {
        let mut request = self
            .http()
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json");
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.body(body).send().await.map_err(from_reqwest)
    }

    /// Reads the body up to the response cap.
    async fn read(&self, mut response: reqwest::Response) -> Result<RawAnswer, CallError> {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(retry::cap_retry_after);
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
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
            replayed,
            body,
        })
    }
}

/// Counts the portal's limit answers (by their class, never their text).
fn count_limit(method: &str, err: &CallError) {
    match err.portal().map(PortalError::class) {
        Some(ErrorClass::QueryLimit) => metrics::portal_limit(method, PortalLimit::Query),
        Some(ErrorClass::OperationTimeLimit) => {
            metrics::portal_limit(method, PortalLimit::Operating)
        }
        _ => {}
    }
}

fn encode_error(e: serde_json::Error) -> CallError {
    CallError::Decode {
        status: 0,
        detail: format!("could not encode the request: {e}"),
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
