//! The audit trail (`--audit-log PATH`, `MCP_AUDIT_LOG`; `-` for stderr): one JSON object
//! per line for every call of a tool that writes and every sign-in event, so that an
//! operator can tell who added, changed or deleted which result, through which client.
//!
//! An event holds ids, names, outcomes and codes only: never a result's text, a token, an
//! authorization code, a PKCE verifier, a secret, or a URL that carries one (a client's
//! redirect URI is kept as scheme and host). A line that cannot be written does not stop
//! what it records: the failure is logged at error (with the event's kind and ids) and
//! counted in `bitrix24_mcp_audit_write_failures_total`.
//!
//! One process has one trail, installed once ([`install`]) in a process-wide `OnceLock`;
//! the hooks below are one-line calls that do nothing when none is installed. A global
//! rather than a handle carried through the structs: the events come from four layers
//! that share no state (the sign-in handlers, a person's token holder in `identity`,
//! which knows nothing of sign-in, the `users` subcommand, and the tool calls), as the
//! `tracing` dispatcher and the `metrics` recorder are global for the same reason.
//! Tool calls still come through the server's `CallObserver` seam
//! (`server::audited`), which holds the trail itself.

pub mod writer;

use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::store::Grant;
pub use writer::{Target, Writer};

/// This process's trail, once installed.
static TRAIL: OnceLock<Arc<Trail>> = OnceLock::new();

/// Makes `trail` the process's trail for the hooks; `false` if one was installed before.
pub fn install(trail: Arc<Trail>) -> bool {
    TRAIL.set(trail).is_ok()
}

/// The trail written by `writer` (opened at start-up, see [`Writer::open`]) for
/// `portal`, installed for the hooks, its file reopened on SIGHUP.
pub fn started(writer: Writer, portal: Option<String>) -> Arc<Trail> {
    let writer = Arc::new(writer);
    let trail = Arc::new(Trail::new(writer.clone(), portal));
    install(trail.clone());
    writer::reopen_on_hangup(writer);
    trail
}

/// Whether a trail is installed (what only the trail needs is skipped otherwise).
pub fn enabled() -> bool {
    TRAIL.get().is_some()
}

fn record(event: Event<'_>) {
    if let Some(trail) = TRAIL.get() {
        trail.record(event);
    }
}

/// The audit trail: where lines go, and the portal every event happened on.
#[derive(Debug)]
pub struct Trail {
    writer: Arc<Writer>,
    portal: Option<String>,
}

impl Trail {
    /// A trail written by `writer` for the portal `portal` (its host; `None` when the
    /// process serves none, as `users revoke`).
    pub fn new(writer: Arc<Writer>, portal: Option<String>) -> Trail {
        Trail { writer, portal }
    }

    /// Writes `event` as one line, stamped with the time and the portal. Never fails the
    /// caller: a line that cannot be written is logged at error and counted.
    pub fn record<'a>(&'a self, mut event: Event<'a>) {
        event.time = crate::clock::rfc3339_ms(crate::clock::now_ms());
        event.portal = self.portal.as_deref();
        let written = serde_json::to_string(&event)
            .map_err(std::io::Error::other)
            .and_then(|json| {
                // Nothing secret is put in an event; masking is a second line of defence.
                let mut line = crate::redact::redact(&json).into_owned();
                line.push('\n');
                self.writer.write_line(line.as_bytes())
            });
        if let Err(e) = written {
            crate::metrics::audit_write_failed();
            tracing::error!(
                event = event.event,
                tool = event.tool.unwrap_or(""),
                task_id = event.task_id,
                result_id = event.result_id,
                "the audit log could not record an event; the action itself went ahead: {e}"
            );
        }
    }
}

/// One line of the trail. Fields left `None` are left out of the line.
#[derive(Debug, Default, Serialize)]
pub struct Event<'a> {
    /// When it was written (RFC 3339, UTC, milliseconds); set by [`Trail::record`].
    pub time: String,
    /// What happened: `tool_call`, `consent_shown`, `consent_given`, `consent_denied`,
    /// `sign_in_completed`, `refresh_token_reused`, `user_revoked`, `bitrix_grant_lost`.
    pub event: &'static str,
    /// The portal's host; set by [`Trail::record`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal: Option<&'a str>,
    /// The person's Bitrix24 user id (a webhook's: its owner's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// The portal's `member_id`, for a signed-in person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<&'a str>,
    /// How a tool call was made: `person` (signed in), `webhook`, `oauth_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<&'static str>,
    /// The MCP client's id (registered here, or its metadata document's URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<&'a str>,
    /// The name the client gave itself (a document's client: its host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<&'a str>,
    /// The tool called.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<&'static str>,
    /// The task the call was about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<u64>,
    /// The result the call was about, or made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_id: Option<u64>,
    /// `ok`, or the class of the error the model saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    /// The portal's (or its OAuth server's) error code: a bare word.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal_code: Option<&'a str>,
    /// From the call's arrival to its answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// The sign-in (grant) concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<&'a str>,
    /// Where the consent page sends the browser back: scheme and host only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<String>,
    /// How many sign-ins `users revoke` ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_ins: Option<u64>,
}

/// The consent page was shown for the client `client_id`, which will send the browser
/// back to `redirect_uri` (recorded as scheme and host).
pub fn consent_shown(client_id: &str, client_name: Option<&str>, redirect_uri: &str) {
    record(Event {
        event: "consent_shown",
        client_id: Some(client_id),
        client_name,
        redirect: Some(scheme_and_host(redirect_uri)),
        ..Event::default()
    });
}

/// The person allowed (`allowed`) or denied the client on the consent page.
pub fn consent_answered(client_id: &str, client_name: Option<&str>, allowed: bool) {
    record(Event {
        event: if allowed {
            "consent_given"
        } else {
            "consent_denied"
        },
        client_id: Some(client_id),
        client_name,
        ..Event::default()
    });
}

/// A client exchanged its code: `grant`'s person is signed in through it.
pub fn sign_in_completed(grant: &Grant, client_name: Option<&str>) {
    record(grant_event("sign_in_completed", grant, client_name));
}

/// A spent refresh token came back after its grace window: `grant` was revoked.
pub fn refresh_token_reused(grant: &Grant, client_name: Option<&str>) {
    record(grant_event("refresh_token_reused", grant, client_name));
}

/// `users revoke` ended `sign_ins` sign-ins of the user `user_id`.
pub fn user_revoked(user_id: i64, sign_ins: u64) {
    record(Event {
        event: "user_revoked",
        user_id: Some(user_id),
        sign_ins: Some(sign_ins),
        ..Event::default()
    });
}

/// Bitrix24's OAuth server refused a person's refresh for good (`code`): their sign-in
/// is ended.
pub fn bitrix_grant_lost(member_id: &str, user_id: i64, code: &str) {
    let code = crate::tools::report::clean_code(code);
    record(Event {
        event: "bitrix_grant_lost",
        member_id: Some(member_id),
        user_id: Some(user_id),
        portal_code: Some(&code),
        ..Event::default()
    });
}

fn grant_event<'a>(
    event: &'static str,
    grant: &'a Grant,
    client_name: Option<&'a str>,
) -> Event<'a> {
    Event {
        event,
        user_id: Some(grant.user_id),
        member_id: Some(&grant.member_id),
        client_id: Some(&grant.client_id),
        client_name,
        grant_id: Some(&grant.id),
        ..Event::default()
    }
}

/// `scheme://host[:port]` of a URI (`scheme:` when it has no host): never its path or
/// query, which may carry anything.
fn scheme_and_host(uri: &str) -> String {
    let Ok(url) = url::Url::parse(uri) else {
        return "unparsable".into();
    };
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        (None, _) => format!("{}:", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trail(dir: &std::path::Path) -> (Trail, std::path::PathBuf) {
        let path = dir.join("audit.log");
        let writer = Writer::open(Target::File(path.clone())).unwrap();
        (Trail::new(Arc::new(writer), Some("p.example".into())), path)
    }

    #[test]
    fn a_line_is_one_json_object_with_only_the_fields_given() {
        let dir = tempfile::tempdir().unwrap();
        let (trail, path) = trail(dir.path());
        trail.record(Event {
            event: "consent_shown",
            client_id: Some("c-1"),
            client_name: Some("Tool \"x\"\nforged"),
            redirect: Some(scheme_and_host("http://127.0.0.1:33418/cb?code=zz")),
            ..Event::default()
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "client_id",
                "client_name",
                "event",
                "portal",
                "redirect",
                "time"
            ]
        );
        assert!(text.starts_with("{\"time\":\""), "time comes first: {text}");
        assert_eq!(line["redirect"], "http://127.0.0.1:33418");
        assert_eq!(line["client_name"], "Tool \"x\"\nforged");
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
        assert!(!text.contains("zz"), "{text}");
    }

    #[test]
    fn redirects_keep_scheme_and_host_only() {
        assert_eq!(
            scheme_and_host("https://app.example/cb?token=1#x"),
            "https://app.example"
        );
        assert_eq!(
            scheme_and_host("com.example.app:/oauth?c=2"),
            "com.example.app:"
        );
        assert_eq!(scheme_and_host("not a url"), "unparsable");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_line_that_cannot_be_written_does_not_fail_the_caller() {
        let full = std::path::Path::new("/dev/full");
        let writer = Writer::open(Target::File(full.into())).unwrap();
        let trail = Trail::new(Arc::new(writer), None);
        assert!(trail.writer.write_line(b"x\n").is_err());
        trail.record(Event {
            event: "user_revoked",
            user_id: Some(3),
            ..Event::default()
        });
    }
}
