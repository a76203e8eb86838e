//! HTTP front: routing by path, recording, logging, and the per-call pipeline
//! (rate limit → scripted fault → HTTP method → auth/body → method lookup → scope →
//! idempotency → operating limit → handler). Over 400 lines because that pipeline reads
//! best in one place, next to the routing that feeds it.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::{Map, Value};

use super::conn::{ConnHandle, KillableListener};
use super::faults::{self, Fault};
use super::limits::{self, Lookup};
use super::methods::{self, Api, Ctx};
use super::oauth::{self, TokenCheck};
use super::params::parse_urlencoded;
use super::reply::{
    self, IDEMPOTENCY_KEY_REUSED, INSUFFICIENT_SCOPE, INVALID_IDEMPOTENCY_KEY, INVALID_JSON,
    METHOD_NOT_FOUND, Reply, Timing, V3Error,
};
use super::{RecordedRequest, Shared, control, signin, time};

/// Larger bodies are refused before any processing.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Pseudo method name under which faults for `/oauth/token/` are scripted.
pub(crate) const OAUTH_TOKEN_METHOD: &str = "oauth.token";

pub(crate) fn spawn_server(listener: KillableListener, shared: Arc<Shared>) {
    let cancel = shared.cancel.clone();
    let app = Router::new().fallback(handle).with_state(shared);
    let make = app.into_make_service_with_connect_info::<ConnHandle>();
    tokio::spawn(async move {
        let served = axum::serve(listener, make)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::debug!(error = %e, "sandbox server stopped with an error");
        }
    });
}

/// The parts of a request the pipeline reads.
struct Incoming<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await;
    let path = parts.uri.path();
    if path == "/_sandbox" || path.starts_with("/_sandbox/") {
        let body = body.unwrap_or_default();
        return control::handle(&shared, &parts.method, path, &body).into_response();
    }
    let (reply, drop_connection) = match &body {
        Ok(bytes) => {
            let incoming = Incoming {
                method: &parts.method,
                uri: &parts.uri,
                headers: &parts.headers,
                body: bytes,
            };
            process(&shared, &incoming).await
        }
        Err(_) => (
            Reply::v1_error(413, "ERROR_REQUEST_TOO_LARGE", "Request body is too large"),
            false,
        ),
    };
    let status = if drop_connection { 0 } else { reply.status };
    tracing::debug!(
        http_method = %parts.method,
        path = %redact(path),
        status,
        "sandbox request"
    );
    let record = RecordedRequest {
        http_method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| path.to_string(), |p| p.as_str().to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default(),
        status,
    };
    shared.lock().requests.push(record);
    if drop_connection {
        conn.kill();
    }
    reply.into_response()
}

/// Hides the webhook secret (`/rest/[api/]{uid}/{secret}/…`) for logs; the query string is
/// never logged because v1 and OAuth calls may carry tokens there.
pub(crate) fn redact(path: &str) -> String {
    let mut segs: Vec<&str> = path.split('/').collect();
    if segs.get(1) == Some(&"rest") {
        let first = if segs.get(2) == Some(&"api") { 3 } else { 2 };
        let uid_like = segs
            .get(first)
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
        if uid_like && segs.len() > first + 1 {
            segs[first + 1] = "***";
        }
    }
    segs.join("/")
}

/// Where a path leads.
enum Route {
    Rest(Call),
    OAuthToken,
    /// `/oauth/authorize/`: the portal's sign-in page.
    Authorize,
    /// `/rest/…` with no usable method segment.
    NoMethod,
    NotFound,
}

/// A portal method call taken from the path.
struct Call {
    api: Api,
    /// `Some((uid, secret))` for webhook URLs, `None` for the OAuth form.
    webhook: Option<(String, String)>,
    method: String,
}

fn classify(path: &str) -> Route {
    let path = path.strip_suffix('/').unwrap_or(path);
    if path == "/oauth/token" {
        return Route::OAuthToken;
    }
    if path == "/oauth/authorize" {
        return Route::Authorize;
    }
    let Some(rest) = path.strip_prefix("/rest/") else {
        return Route::NotFound;
    };
    let (api, rest) = match rest.strip_prefix("api/") {
        Some(r) => (Api::V3, r),
        None => (Api::V1, rest),
    };
    let segs: Vec<&str> = rest.split('/').collect();
    let (webhook, method) = match segs.as_slice() {
        [m] => (None, *m),
        [uid, secret, m] => (Some((uid.to_string(), secret.to_string())), *m),
        _ => return Route::NoMethod,
    };
    if method.is_empty() {
        return Route::NoMethod;
    }
    Route::Rest(Call {
        api,
        webhook,
        method: faults::normalize(method),
    })
}

async fn process(shared: &Shared, inc: &Incoming<'_>) -> (Reply, bool) {
    match classify(inc.uri.path()) {
        Route::NotFound => (not_found_page(), false),
        Route::NoMethod => (method_not_found_v1(), false),
        Route::OAuthToken => {
            with_faults(shared, OAUTH_TOKEN_METHOD, || token_endpoint(shared, inc)).await
        }
        Route::Authorize => {
            let reply = method_allowed(inc.method).unwrap_or_else(|| {
                signin::authorize(shared, inc.uri.path(), inc.uri.query(), Instant::now())
            });
            (reply, false)
        }
        Route::Rest(call) => {
            let admitted = {
                let mut state = shared.lock();
                state
                    .bucket
                    .as_mut()
                    .is_none_or(|b| b.admit(Instant::now()))
            };
            if !admitted {
                return (faults::query_limit_reply(), false);
            }
            let start = time::now_unix();
            let method = call.method.clone();
            with_faults(shared, &method, || call_method(shared, inc, &call, start)).await
        }
    }
}

/// Applies the next scripted fault of `method`, then runs `run` unless the fault answers.
/// Returns the reply and whether the connection must be dropped instead of answering.
async fn with_faults(shared: &Shared, method: &str, run: impl FnOnce() -> Reply) -> (Reply, bool) {
    let fault = shared.lock().faults.take(method);
    let mut drop_connection = false;
    if let Some(fault) = fault {
        if let Some(reply) = fault.immediate_reply() {
            return (reply, false);
        }
        match fault {
            Fault::Slow(d) => tokio::time::sleep(d).await,
            Fault::DropAfterApply => drop_connection = true,
            _ => {}
        }
    }
    (run(), drop_connection)
}

fn not_found_page() -> Reply {
    Reply::raw(404, "text/html", b"<h1>404 Not Found</h1>".to_vec())
}

fn method_not_found_v1() -> Reply {
    Reply::v1_error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
}

/// Sandbox choice: GET and POST are both processed (docs/bitrix24-api.md#requests: a GET is read with an
/// empty parameter set on REST 3.0, since the query string is ignored); other HTTP methods
/// get 405 with `Allow: GET, POST`.
fn method_allowed(m: &Method) -> Option<Reply> {
    if m == Method::GET || m == Method::POST {
        return None;
    }
    Some(
        Reply::v1_error(405, "ERROR_METHOD_NOT_ALLOWED", "Method not allowed")
            .with_header("Allow", "GET, POST"),
    )
}

fn token_endpoint(shared: &Shared, inc: &Incoming<'_>) -> Reply {
    if let Some(reply) = method_allowed(inc.method) {
        return reply;
    }
    let mut params = parse_urlencoded(inc.uri.query().unwrap_or(""));
    params.extend(parse_urlencoded(&String::from_utf8_lossy(inc.body)));
    let mut state = shared.lock();
    oauth::token_endpoint(&shared.settings, &mut state.tokens, &params, Instant::now())
}

/// Who is calling: the key that scopes idempotency and operating time, the kind, and the
/// user the call runs as.
struct Credential {
    key: String,
    webhook: bool,
    user: u64,
}

fn scope_error(api: Api, webhook: bool) -> Reply {
    let holder = if webhook {
        "webhook token"
    } else {
        "access token"
    };
    let text = format!("The request requires higher privileges than provided by the {holder}");
    match api {
        Api::V3 => V3Error::new(403, INSUFFICIENT_SCOPE, text).reply(),
        Api::V1 => Reply::v1_error(401, "insufficient_scope", &text),
    }
}

/// REST 3.0 parameters: the JSON body object. Sandbox choices: an empty body is `{}` (so a
/// GET reports the missing required fields, as docs/bitrix24-api.md#requests describes); anything that is
/// not a JSON object is INVALIDJSON; the Content-Type header is not checked.
fn v3_params(body: &[u8]) -> Result<Map<String, Value>, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(V3Error::new(
            400,
            INVALID_JSON,
            "The request body is not a valid JSON object",
        )
        .reply()),
    }
}

/// v1 parameters: the query string, overridden by a JSON-object or form-encoded body.
fn v1_params(inc: &Incoming<'_>) -> Map<String, Value> {
    let mut map: Map<String, Value> = parse_urlencoded(inc.uri.query().unwrap_or(""))
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    match serde_json::from_slice::<Value>(inc.body) {
        Ok(Value::Object(body)) => map.extend(body),
        _ => map.extend(
            parse_urlencoded(&String::from_utf8_lossy(inc.body))
                .into_iter()
                .map(|(k, v)| (k, Value::String(v))),
        ),
    }
    map
}

/// Checks the credential and returns it with the method parameters (`auth` removed).
///
/// Webhook URLs are checked before the body is read (401 `INVALID_CREDENTIALS`). The OAuth
/// form reads `auth` from the JSON body on REST 3.0 (the query string is ignored there, so
/// `?auth=` gives `NO_AUTH_FOUND`) and from query or body on v1. System errors use the v1
/// shape, as docs/bitrix24-api.md#system-errors says the sandbox does.
fn authenticate(
    shared: &Shared,
    inc: &Incoming<'_>,
    call: &Call,
) -> Result<(Credential, Map<String, Value>), Reply> {
    let settings = &shared.settings;
    if let Some((uid, secret)) = &call.webhook
        && (uid.parse::<u64>().ok() != Some(settings.user_id) || *secret != settings.secret)
    {
        return Err(Reply::v1_error(
            401,
            "INVALID_CREDENTIALS",
            "Invalid request credentials",
        ));
    }
    let mut params = match call.api {
        Api::V3 => v3_params(inc.body)?,
        Api::V1 => v1_params(inc),
    };
    let auth = params.remove("auth");
    if call.webhook.is_some() {
        return Ok((
            Credential {
                key: format!("webhook:{}", settings.user_id),
                webhook: true,
                user: settings.user_id,
            },
            params,
        ));
    }
    let token = match auth {
        Some(Value::String(t)) if !t.is_empty() => t,
        _ => {
            return Err(Reply::v1_error(
                401,
                "NO_AUTH_FOUND",
                "Wrong authorization data",
            ));
        }
    };
    let check = shared.lock().tokens.check(&token, Instant::now());
    let user = match check {
        TokenCheck::Valid(user) => user,
        TokenCheck::Expired => {
            return Err(Reply::v1_error(
                401,
                "expired_token",
                "The access token provided has expired",
            ));
        }
        TokenCheck::Unknown => {
            return Err(Reply::v1_error(
                401,
                "invalid_token",
                "The access token provided is invalid",
            ));
        }
    };
    let app = settings
        .oauth
        .as_ref()
        .map_or("app", |o| o.client_id.as_str());
    Ok((
        Credential {
            key: format!("oauth:{app}:{user}"),
            webhook: false,
            user,
        },
        params,
    ))
}

/// The `Idempotency-Key` header: `Ok(None)` when absent, an error reply when malformed.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Reply> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    if !limits::valid_idempotency_key(raw.as_bytes()) {
        return Err(V3Error::new(
            400,
            INVALID_IDEMPOTENCY_KEY,
            "The Idempotency-Key header must be 1-255 printable ASCII characters",
        )
        .reply());
    }
    Ok(Some(String::from_utf8_lossy(raw.as_bytes()).into_owned()))
}

fn call_method(shared: &Shared, inc: &Incoming<'_>, call: &Call, start: f64) -> Reply {
    if let Some(reply) = method_allowed(inc.method) {
        return reply;
    }
    let (cred, params) = match authenticate(shared, inc, call) {
        Ok(ok) => ok,
        Err(reply) => return reply,
    };
    // Unknown REST 3.0 names: 400 METHODNOTFOUND, the status batch-v3.md documents (the
    // direct-call status is [UNCONFIRMED], docs/bitrix24-api.md#v3-errors). Checked after auth, like a portal.
    let Some(spec) = methods::find(call.api, &call.method) else {
        return match call.api {
            Api::V3 => V3Error::new(400, METHOD_NOT_FOUND, "Method not found").reply(),
            Api::V1 => method_not_found_v1(),
        };
    };
    if !spec
        .scopes
        .iter()
        .any(|s| shared.settings.scopes.iter().any(|g| g == s))
    {
        return scope_error(call.api, cred.webhook);
    }
    // Idempotency is a REST 3.0 feature; v1 ignores the header.
    let key = match call.api {
        Api::V3 => match idempotency_key(inc.headers) {
            Ok(k) => k,
            Err(reply) => return reply,
        },
        Api::V1 => None,
    };
    let echo = |reply: Reply| match &key {
        Some(k) => reply.with_header("Idempotency-Key", k.clone()),
        None => reply,
    };
    let stored_key = key.as_ref().filter(|_| spec.mutating);
    let fingerprint = Value::Object(params.clone());
    let mut state = shared.lock();
    if let Some(k) = stored_key {
        match state
            .idempotency
            .lookup(&cred.key, spec.name, k, &fingerprint, Instant::now())
        {
            Lookup::Miss => {}
            Lookup::Replay(stored) => {
                return echo(stored).with_header("Idempotent-Replayed", "true");
            }
            Lookup::Reused => {
                return echo(
                    V3Error::new(
                        422,
                        IDEMPOTENCY_KEY_REUSED,
                        "The Idempotency-Key was already used with a different request body",
                    )
                    .reply(),
                );
            }
        }
    }
    let now = time::now_secs();
    let before = state.operating.usage(&cred.key, spec.name, now);
    if let Some(limit) = shared.settings.operating_limit
        && before.operating > limit.as_secs_f64()
    {
        return echo(faults::operation_limit_reply(before.reset_at));
    }
    let ctx = Ctx {
        user: i64::try_from(cred.user).unwrap_or(i64::MAX),
        now,
        body: inc.body,
    };
    let began = Instant::now();
    let outcome = (spec.handler)(&mut state.world, &ctx, &params);
    let handler_secs = began.elapsed().as_secs_f64();
    let finish = time::now_unix();
    // Operating time is wall time since the call entered the pipeline, so a Slow fault's
    // sleep counts, as a slow method would on a real portal.
    let spent = (finish - start).max(handler_secs);
    state.operating.charge(&cred.key, spec.name, now, spent);
    let after = state.operating.usage(&cred.key, spec.name, now);
    let reply = match outcome {
        Ok(result) => reply::success(
            result,
            &Timing {
                start,
                finish,
                processing: spent,
                operating: after.operating,
                operating_reset_at: after.reset_at,
            },
        ),
        Err(e) => shared.settings.language.localise(e).reply(),
    };
    if let Some(k) = stored_key
        && reply.status == 200
    {
        state.idempotency.store(
            &cred.key,
            spec.name,
            k,
            fingerprint,
            reply.clone(),
            Instant::now(),
        );
    }
    echo(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_webhook_secrets() {
        assert_eq!(
            redact("/rest/api/1/s3cr3t/tasks.task.result.add"),
            "/rest/api/1/***/tasks.task.result.add"
        );
        assert_eq!(
            redact("/rest/7/s3cr3t/im.dialog.messages.get/"),
            "/rest/7/***/im.dialog.messages.get/"
        );
        assert_eq!(redact("/rest/1/s3cr3t"), "/rest/1/***");
        assert_eq!(
            redact("/rest/api/tasks.task.get"),
            "/rest/api/tasks.task.get"
        );
        assert_eq!(redact("/oauth/token/"), "/oauth/token/");
    }

    #[test]
    fn classifies_paths() {
        assert!(matches!(
            classify("/rest/api/1/x/Tasks.Task.Result.Add/"),
            Route::Rest(Call { api: Api::V3, webhook: Some(_), ref method }) if method == "tasks.task.result.add"
        ));
        assert!(matches!(
            classify("/rest/api/tasks.task.get"),
            Route::Rest(Call {
                api: Api::V3,
                webhook: None,
                ..
            })
        ));
        assert!(matches!(
            classify("/rest/1/x/im.dialog.messages.get"),
            Route::Rest(Call {
                api: Api::V1,
                webhook: Some(_),
                ..
            })
        ));
        assert!(matches!(classify("/rest/1/x/"), Route::NoMethod));
        assert!(matches!(classify("/oauth/token/"), Route::OAuthToken));
        assert!(matches!(classify("/oauth/authorize/"), Route::Authorize));
        assert!(matches!(classify("/oauth/authorize"), Route::Authorize));
        assert!(matches!(classify("/favicon.ico"), Route::NotFound));
    }
}
