//! Turning failures into tool results the model can act on: the Bitrix code, the field,
//! the portal's own message and a next step. Every text passes through the redactor.

use rmcp::model::{CallToolResult, ContentBlock};

use super::Entry;
use crate::bitrix::{CallError, ErrorClass, PortalError, TransportKind};
use crate::redact::redact;

/// An `isError` result with `text` (redacted).
pub fn tool_error(text: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(redact(text).into_owned())])
}

/// Arguments that did not parse: names the field and restates the expected shape.
pub fn invalid_arguments(tool: &dyn Entry, path: &str, problem: &str) -> CallToolResult {
    let field = if path.is_empty() || path == "." {
        String::new()
    } else {
        format!(" `{path}`:")
    };
    tool_error(&format!(
        "Invalid arguments for {}:{field} {problem}. Nothing was sent to Bitrix24.\n\
         Next step: call {} again with {}.",
        tool.name(),
        tool.name(),
        tool.usage()
    ))
}

/// A write tool called on a read-only server (it is not in tools/list, but a client may
/// call it anyway): an `isError` result the model can relay, nothing sent to the portal.
pub fn read_only_refusal(tool: &dyn Entry) -> CallToolResult {
    tool_error(&format!(
        "{} is disabled: this server runs in read-only mode (--read-only / BITRIX24_READ_ONLY), so it \
         never changes anything on the portal. Nothing was sent to Bitrix24.\n\
         Next step: tell the user; to allow changes, they must restart the server without --read-only.",
        tool.name()
    ))
}

/// The `im` scope is only needed by the chat tool; say so plainly.
fn im_scope_missing(method: &str) -> String {
    format!(
        "Bitrix24 refused {method}: the webhook (or OAuth app) lacks the `im` scope (Chat and notifications), \
         which task_chat_messages_list needs to read a task's chat.\n\
         Next step: in Bitrix24 open Developer resources > Inbound webhook, edit this webhook, tick the `im` \
         scope next to `tasks`, save (the URL stays the same unless Bitrix24 regenerates it), then try again. \
         The other tools work without `im`."
    )
}

/// A failed REST call.
pub fn call_failed(
    tool: &dyn Entry,
    method: &str,
    portal: &str,
    err: &CallError,
) -> CallToolResult {
    let text = match err {
        CallError::Portal(p)
            if p.class() == ErrorClass::InsufficientScope && method.starts_with("im.") =>
        {
            im_scope_missing(method)
        }
        CallError::Portal(p) => portal_error_text(tool, method, p),
        CallError::Transport(t) => {
            let step = match t.kind {
                TransportKind::Connect => format!(
                    "Could not connect to the portal {portal}. Next step: check that the portal address in \
                     BITRIX24_WEBHOOK_URL (or BITRIX24_PORTAL_URL) is right and reachable from this machine, then try again."
                ),
                TransportKind::TooLarge | TransportKind::Redirect => {
                    format!("Next step: {}.", t.detail)
                }
                TransportKind::Timeout | TransportKind::Interrupted => {
                    if tool.read_only() {
                        "The portal did not answer completely. Next step: try again in a few seconds.".into()
                    } else {
                        "The portal did not answer completely, so the change may or may not have been applied. \
                         Next step: check with task_result_list before repeating it."
                            .into()
                    }
                }
            };
            format!("{method} failed: {}.\n{step}", t.detail)
        }
        CallError::Decode { status, detail } => format!(
            "{method}: the portal gave an unexpected answer (HTTP {status}): {detail}.\n\
             Next step: check that the configured URL points at a Bitrix24 portal with REST 3.0 (/rest/api/); {}",
            if tool.read_only() {
                "then try again."
            } else {
                "the change may have been applied, so check with task_result_list before repeating it."
            }
        ),
        CallError::Budget(detail) => format!(
            "{method} was not sent: {detail}. Nothing was changed on the portal.\n\
             Next step: try again later; the server paces calls to stay within the portal's limits."
        ),
        CallError::OAuth { code, detail } => oauth_error_text(method, code, detail),
        CallError::SignInEnded(detail) => format!(
            "{method} was not sent: your Bitrix24 sign-in has ended ({detail}). Nothing was changed on the portal.\n\
             Next step: sign in again: your MCP client asks for it on the next request (in Claude Code, /mcp, then \
             Authenticate; in Codex, `codex mcp login`)."
        ),
    };
    tool_error(&text)
}

fn oauth_error_text(method: &str, code: &str, detail: &str) -> String {
    let step = if code.eq_ignore_ascii_case("invalid_grant") {
        "the refresh token is no longer valid (it expired, was revoked, or was already used by another copy \
         of this server). The user must authorize the application again in Bitrix24: put the new refresh token \
         in BITRIX24_REFRESH_TOKEN (and the new access token in BITRIX24_ACCESS_TOKEN), then restart the server."
    } else if code.eq_ignore_ascii_case("invalid_client") {
        "the OAuth server rejected the application's credentials. Check BITRIX24_CLIENT_ID and \
         BITRIX24_CLIENT_SECRET against the application's settings in Bitrix24 and that the application is \
         still installed, then restart the server."
    } else {
        "the OAuth server could not be reached or gave an unexpected answer. Try again in a minute; if it \
         persists, check BITRIX24_OAUTH_URL and the network."
    };
    format!(
        "{method} was not sent: the OAuth access token expired and could not be refreshed ({code}: {detail}).\n\
         Next step: {step}"
    )
}

fn portal_error_text(tool: &dyn Entry, method: &str, p: &PortalError) -> String {
    let fields = p.fields();
    let on_field = match fields.as_slice() {
        [] => String::new(),
        fs => format!(
            " on field {}",
            fs.iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut text = format!(
        "Bitrix24 refused {method}: {} (HTTP {}){on_field}.\nPortal message: {}",
        p.code,
        p.status,
        if p.message.is_empty() {
            "(none)"
        } else {
            &p.message
        }
    );
    for v in &p.validation {
        match &v.field {
            Some(f) => text.push_str(&format!("\n- {f}: {}", v.message)),
            None => text.push_str(&format!("\n- {}", v.message)),
        }
    }
    text.push_str("\nNext step: ");
    text.push_str(&next_step(tool, p));
    text
}

fn next_step(tool: &dyn Entry, p: &PortalError) -> String {
    if let Some(step) = tool.next_step(p) {
        return step;
    }
    let fields = p.fields();
    let has = |f: &str| fields.iter().any(|x| x.eq_ignore_ascii_case(f));
    match p.class() {
        ErrorClass::AccessDenied => "the caller has no access to this object (or it does not exist). Check the id, \
             or use the credentials of someone who has access."
            .into(),
        ErrorClass::Validation => {
            if has("text") {
                "give a non-empty text and call again.".into()
            } else if !fields.is_empty() {
                format!(
                    "correct {} and call again; arguments: {}.",
                    fields.join(", "),
                    tool.usage()
                )
            } else {
                format!("correct the arguments and call again; arguments: {}.", tool.usage())
            }
        }
        ErrorClass::NotFound => "no object with that id exists on the portal. Check the id and call again.".into(),
        ErrorClass::InsufficientScope => "the webhook or application lacks a permission scope this method needs \
             (`tasks` for REST 3.0 task methods; some portals call it `task`). Edit the inbound webhook in Bitrix24 \
             (Developer resources) to add it, then try again."
            .into(),
        ErrorClass::ExpiredToken => "the OAuth access token expired or was revoked. Configure BITRIX24_CLIENT_ID, \
             BITRIX24_CLIENT_SECRET and BITRIX24_REFRESH_TOKEN so the server can refresh it, or set a fresh \
             BITRIX24_ACCESS_TOKEN and restart."
            .into(),
        ErrorClass::BadCredentials => "the portal rejected the credentials: the webhook may have been deleted, expired \
             or regenerated. Create or copy the inbound webhook again, update BITRIX24_WEBHOOK_URL (or \
             BITRIX24_ACCESS_TOKEN) and restart the server."
            .into(),
        ErrorClass::QueryLimit => "the portal's rate limit was still exceeded after several retries (other \
             applications on this IP address may share it). Wait a minute and try again."
            .into(),
        ErrorClass::OperationTimeLimit => match p.operating_reset_at {
            Some(at) => format!(
                "this method used up its execution-time allowance on the portal and frees up at {}. \
                 Try again after that; other tools are not affected.",
                crate::bitrix::retry::describe_unix(at)
            ),
            None => "this method is blocked by the portal's operating-time limit for a few minutes. Try again later."
                .into(),
        },
        ErrorClass::MethodNotFound => "the portal does not offer this REST 3.0 method at /rest/api/: it may run a \
             Bitrix24 version from before May 2026, or the URL is not a Bitrix24 REST endpoint. Check the portal \
             address and version."
            .into(),
        ErrorClass::PortalUnavailable => "the portal refuses REST calls for a portal-wide reason (plan, overload or \
             portal state; see the message). Resolve it in Bitrix24, then try again."
            .into(),
        ErrorClass::Internal if !tool.read_only() => "the portal failed internally; the change may or may not have \
             been applied. Check with task_result_list before repeating it."
            .into(),
        ErrorClass::Internal => "the portal failed internally. Try again in a few seconds.".into(),
        ErrorClass::Unknown => "see the portal's message above; correct the request if it names a field, otherwise try again later."
            .into(),
    }
}
