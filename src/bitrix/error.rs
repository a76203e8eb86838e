//! What can go wrong on a REST call, classified for the layers above.
//!
//! Codes are compared case-insensitively (`expired_token` next to `NO_AUTH_FOUND`) and the
//! class comes from the code, never from the HTTP status alone: the documented statuses of
//! system errors differ between doc versions.

use std::time::Duration;

/// One entry of a v3 `validation` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The request field the message is about, when the portal names one.
    pub field: Option<String>,
    /// The portal's message, possibly localised.
    pub message: String,
}

/// An error answer from the portal, in either envelope form.
#[derive(Debug, Clone, PartialEq)]
pub struct PortalError {
    /// HTTP status of the answer.
    pub status: u16,
    /// The code exactly as sent (`BITRIX_REST_V3_EXCEPTION_…`, `QUERY_LIMIT_EXCEEDED`, `100`…).
    pub code: String,
    /// The portal's message in the portal's language.
    pub message: String,
    /// Field-level details (v3 only).
    pub validation: Vec<FieldError>,
    /// `operating_reset_at` when the portal sent one (unix seconds).
    pub operating_reset_at: Option<f64>,
    /// `Retry-After` header, when present.
    pub retry_after: Option<Duration>,
}

/// The class of a portal error: what the caller should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request was wrong (missing field, bad type, bad filter…).
    Validation,
    /// The object does not exist.
    NotFound,
    /// The calling user may not do this to this object.
    AccessDenied,
    /// The webhook or token lacks a scope.
    InsufficientScope,
    /// The access token expired or was revoked: refresh it.
    ExpiredToken,
    /// The credentials are wrong or missing (bad webhook, no auth).
    BadCredentials,
    /// The portal's rate limit (leaky bucket): refused before running, safe to retry.
    QueryLimit,
    /// The method used too much time and is blocked until `operating_reset_at`.
    OperationTimeLimit,
    /// The method is unknown at that address.
    MethodNotFound,
    /// The portal refuses REST for a plan or portal-wide reason.
    PortalUnavailable,
    /// A server-side failure; the request may or may not have run.
    Internal,
    /// A code nobody documented.
    Unknown,
}

impl PortalError {
    /// Classifies the error by its code, case-insensitively.
    pub fn class(&self) -> ErrorClass {
        let code = self.code.to_ascii_uppercase();
        let v3 = code.strip_prefix("BITRIX_REST_V3_EXCEPTION_");
        if let Some(name) = v3 {
            return match name {
                "ACCESSDENIEDEXCEPTION" => ErrorClass::AccessDenied,
                "INSUFFICIENTSCOPEEXCEPTION" => ErrorClass::InsufficientScope,
                "ENTITYNOTFOUNDEXCEPTION" => ErrorClass::NotFound,
                "METHODNOTFOUNDEXCEPTION" => ErrorClass::MethodNotFound,
                n if n.starts_with("VALIDATION_")
                    || n.starts_with("INVALID")
                    || n.starts_with("UNKNOWN")
                    || n.starts_with("IDEMPOTENCY") =>
                {
                    ErrorClass::Validation
                }
                _ if self.status >= 500 => ErrorClass::Internal,
                _ => ErrorClass::Unknown,
            };
        }
        match code.as_str() {
            "QUERY_LIMIT_EXCEEDED" => ErrorClass::QueryLimit,
            "OPERATION_TIME_LIMIT" => ErrorClass::OperationTimeLimit,
            "EXPIRED_TOKEN" | "INVALID_TOKEN" => ErrorClass::ExpiredToken,
            "NO_AUTH_FOUND"
            | "INVALID_CREDENTIALS"
            | "WRONG_AUTH_TYPE"
            | "AUTHORIZE_ERROR"
            | "INVALID_REQUEST" => ErrorClass::BadCredentials,
            "INSUFFICIENT_SCOPE" => ErrorClass::InsufficientScope,
            "ACCESS_DENIED" | "OVERLOAD_LIMIT" | "PORTAL_DELETED" | "USER_ACCESS_ERROR"
            | "PAYMENT_REQUIRED" => ErrorClass::PortalUnavailable,
            "ERROR_METHOD_NOT_FOUND" => ErrorClass::MethodNotFound,
            "INTERNAL_SERVER_ERROR" | "ERROR_UNEXPECTED_ANSWER" | "ERROR_CORE" => {
                ErrorClass::Internal
            }
            // im.dialog.messages.get's documented errors (docs/bitrix24-api.md#task-chat).
            "ACCESS_ERROR" => ErrorClass::AccessDenied,
            "DIALOG_ID_EMPTY" => ErrorClass::Validation,
            // v1 numeric codes: `0` "Access denied.", `100` invalid value.
            "0" => ErrorClass::AccessDenied,
            "100" => ErrorClass::Validation,
            _ if self.status >= 500 => ErrorClass::Internal,
            _ => ErrorClass::Unknown,
        }
    }

    /// The fields the portal complained about, in order, without repeats.
    pub fn fields(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for f in self.validation.iter().filter_map(|v| v.field.as_deref()) {
            if !out.contains(&f) {
                out.push(f);
            }
        }
        out
    }

    /// Whether a validation entry names `field` (any case).
    pub fn has_field(&self, field: &str) -> bool {
        self.fields().iter().any(|f| f.eq_ignore_ascii_case(field))
    }
}

/// Why a call did not produce a decoded result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The portal answered with an error envelope.
    #[error("Bitrix24 error {} (HTTP {}): {}", .0.code, .0.status, .0.message)]
    Portal(PortalError),
    /// The portal could not be reached or the connection broke.
    #[error("{0}")]
    Transport(TransportError),
    /// The portal answered something that is not the documented envelope.
    #[error("unexpected answer from the portal (HTTP {status}): {detail}")]
    Decode {
        /// HTTP status of the answer.
        status: u16,
        /// What was wrong with it, safe to show.
        detail: String,
    },
    /// The call could not get a slot or a retry within its time budget; nothing was sent.
    #[error("{0}")]
    Budget(String),
    /// The OAuth access token could not be refreshed.
    #[error("OAuth token refresh failed ({code}): {detail}")]
    OAuth {
        /// The OAuth server's `error` (`invalid_grant`, `invalid_client`…), or
        /// `unreachable` / `HTTP_<status>` when it gave none.
        code: String,
        /// What happened, safe to show.
        detail: String,
    },
    /// A signed-in person's Bitrix24 grant is gone (revoked, expired, or the app was
    /// removed): only signing in again helps. Nothing was sent.
    #[error("the Bitrix24 sign-in has ended: {0}")]
    SignInEnded(String),
}

/// A network-level failure, with the URL (and so the webhook secret) stripped.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct TransportError {
    /// What kind of failure.
    pub kind: TransportKind,
    /// A redacted description.
    pub detail: String,
}

/// Network failure kinds; they differ in whether the request may have run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// No connection was made: the request did not run.
    Connect,
    /// The whole-request timeout fired: the request may have run.
    Timeout,
    /// The connection broke after the request was sent: it may have run.
    Interrupted,
    /// The answer was larger than the response cap.
    TooLarge,
    /// A redirect could not be followed.
    Redirect,
}

impl CallError {
    /// The portal error, when this is one.
    pub fn portal(&self) -> Option<&PortalError> {
        match self {
            CallError::Portal(p) => Some(p),
            _ => None,
        }
    }

    /// Whether the request may still be running on the portal: it was sent, and no answer
    /// of the portal's own came back (the connection broke, the timeout fired, or a proxy
    /// in front answered 5xx with its own page). A portal's own error answer means it has
    /// finished.
    pub fn may_still_run(&self) -> bool {
        match self {
            CallError::Transport(t) => {
                matches!(t.kind, TransportKind::Timeout | TransportKind::Interrupted)
            }
            CallError::Decode { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, code: &str) -> PortalError {
        PortalError {
            status,
            code: code.into(),
            message: String::new(),
            validation: vec![],
            operating_reset_at: None,
            retry_after: None,
        }
    }

    #[test]
    fn classification_is_by_code_and_case_insensitive() {
        use ErrorClass::*;
        for (status, code, class) in [
            (
                403,
                "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION",
                AccessDenied,
            ),
            (
                403,
                "bitrix_rest_v3_exception_accessdeniedexception",
                AccessDenied,
            ),
            (
                400,
                "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION",
                Validation,
            ),
            (
                400,
                "BITRIX_REST_V3_EXCEPTION_VALIDATION_DTOVALIDATIONEXCEPTION",
                Validation,
            ),
            (
                400,
                "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTFILTERVALIDATIONEXCEPTION",
                Validation,
            ),
            (
                400,
                "BITRIX_REST_V3_EXCEPTION_UNKNOWNDTOPROPERTYEXCEPTION",
                Validation,
            ),
            (
                400,
                "BITRIX_REST_V3_EXCEPTION_INVALIDPAGINATIONEXCEPTION",
                Validation,
            ),
            (
                422,
                "BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION",
                Validation,
            ),
            (
                400,
                "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION",
                NotFound,
            ),
            (
                403,
                "BITRIX_REST_V3_EXCEPTION_INSUFFICIENTSCOPEEXCEPTION",
                InsufficientScope,
            ),
            (
                400,
                "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION",
                MethodNotFound,
            ),
            (400, "BITRIX_REST_V3_EXCEPTION_SOMETHINGNEW", Unknown),
            (500, "BITRIX_REST_V3_EXCEPTION_SOMETHINGNEW", Internal),
            (503, "QUERY_LIMIT_EXCEEDED", QueryLimit),
            (429, "OPERATION_TIME_LIMIT", OperationTimeLimit),
            (401, "expired_token", ExpiredToken),
            (401, "EXPIRED_TOKEN", ExpiredToken),
            (401, "invalid_token", ExpiredToken),
            (401, "NO_AUTH_FOUND", BadCredentials),
            (401, "INVALID_CREDENTIALS", BadCredentials),
            (403, "INVALID_CREDENTIALS", BadCredentials),
            (401, "insufficient_scope", InsufficientScope),
            (403, "insufficient_scope", InsufficientScope),
            (401, "OVERLOAD_LIMIT", PortalUnavailable),
            (503, "OVERLOAD_LIMIT", PortalUnavailable),
            (404, "ERROR_METHOD_NOT_FOUND", MethodNotFound),
            (500, "INTERNAL_SERVER_ERROR", Internal),
            (400, "100", Validation),
            (400, "0", AccessDenied),
            (400, "ACCESS_ERROR", AccessDenied),
            (400, "DIALOG_ID_EMPTY", Validation),
            (502, "WHATEVER", Internal),
            (418, "WHATEVER", Unknown),
        ] {
            assert_eq!(err(status, code).class(), class, "{code} {status}");
        }
    }

    #[test]
    fn only_an_answer_of_the_portal_s_own_says_the_request_has_ended() {
        let transport = |kind| {
            CallError::Transport(TransportError {
                kind,
                detail: String::new(),
            })
        };
        assert!(transport(TransportKind::Interrupted).may_still_run());
        assert!(transport(TransportKind::Timeout).may_still_run());
        assert!(!transport(TransportKind::Connect).may_still_run());
        let page = |status| CallError::Decode {
            status,
            detail: String::new(),
        };
        assert!(page(502).may_still_run());
        assert!(!page(200).may_still_run());
        assert!(!CallError::Portal(err(500, "INTERNAL_SERVER_ERROR")).may_still_run());
    }

    #[test]
    fn fields_are_deduplicated_in_order() {
        let mut e = err(400, "X");
        e.validation = vec![
            FieldError {
                field: Some("id".into()),
                message: "a".into(),
            },
            FieldError {
                field: None,
                message: "b".into(),
            },
            FieldError {
                field: Some("filter".into()),
                message: "c".into(),
            },
            FieldError {
                field: Some("id".into()),
                message: "d".into(),
            },
        ];
        assert_eq!(e.fields(), ["id", "filter"]);
    }
}
