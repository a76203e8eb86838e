//! Sandbox tests over real HTTP with reqwest.

mod errors;
mod limits;
mod methods;
mod oauth;
mod task_list;
mod transport;

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::{Sandbox, SandboxOptions};

/// A response taken apart for assertions.
pub(super) struct Resp {
    pub(super) status: u16,
    pub(super) headers: HeaderMap,
    pub(super) text: String,
    pub(super) json: Value,
}

impl Resp {
    /// `error.code` of a v3 error, or the string `error` of a v1 one.
    pub(super) fn code(&self) -> &str {
        match &self.json["error"] {
            Value::String(s) => s,
            other => other["code"].as_str().unwrap_or(""),
        }
    }

    /// `field` of the first v3 validation entry.
    pub(super) fn field(&self) -> &str {
        self.json["error"]["validation"][0]["field"]
            .as_str()
            .unwrap_or("")
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(super) fn client() -> reqwest::Client {
    // reqwest is built with `rustls-no-provider`; plain-HTTP tests still need one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

pub(super) async fn start() -> Sandbox {
    start_with(SandboxOptions::default()).await
}

pub(super) async fn start_with(opts: SandboxOptions) -> Sandbox {
    Sandbox::start(opts).await.expect("sandbox starts")
}

/// REST 3.0 webhook URL of `method`.
pub(super) fn v3_url(sb: &Sandbox, method: &str) -> String {
    format!(
        "{}{}",
        sb.webhook_url().replacen("/rest/", "/rest/api/", 1),
        method
    )
}

pub(super) async fn read(resp: reqwest::Response) -> Resp {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        text,
        json,
    }
}

pub(super) async fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = client()
        .post(url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(req.send().await.expect("request sent")).await
}

/// POST a REST 3.0 method through the webhook URL.
pub(super) async fn v3(sb: &Sandbox, method: &str, body: Value) -> Resp {
    post(&v3_url(sb, method), &body.to_string(), &[]).await
}

/// Asserts a v3 error's status, code and first validation field.
#[track_caller]
pub(super) fn assert_v3_error(r: &Resp, status: u16, code: &str, field: Option<&str>) {
    assert_eq!(r.status, status, "status of {}", r.text);
    assert!(r.json["error"].is_object(), "v3 error shape: {}", r.text);
    assert_eq!(r.code(), code, "code of {}", r.text);
    assert!(
        r.json["error"]["message"].is_string(),
        "message: {}",
        r.text
    );
    assert!(
        r.json.get("result").is_none(),
        "no result on error: {}",
        r.text
    );
    if let Some(field) = field {
        assert_eq!(r.field(), field, "field of {}", r.text);
    }
}

/// Asserts a v1 error's status and code.
#[track_caller]
pub(super) fn assert_v1_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "status of {}", r.text);
    assert_eq!(r.json["error"].as_str(), Some(code), "code of {}", r.text);
    assert!(r.json["error_description"].is_string(), "{}", r.text);
}

/// The date format of docs/bitrix24-api.md#answers with the sandbox's +03:00 offset.
#[track_caller]
pub(super) fn assert_portal_date(v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("date string expected, got {v}"));
    let b = s.as_bytes();
    assert_eq!(b.len(), 25, "{s}");
    for (i, c) in b.iter().enumerate() {
        match i {
            4 | 7 => assert_eq!(*c, b'-', "{s}"),
            10 => assert_eq!(*c, b'T', "{s}"),
            13 | 16 | 22 => assert_eq!(*c, b':', "{s}"),
            19 => assert_eq!(*c, b'+', "{s}"),
            _ => assert!(c.is_ascii_digit(), "{s}"),
        }
    }
    assert!(s.ends_with("+03:00"), "{s}");
}
