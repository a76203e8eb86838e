//! What one tool call came to, in a small fixed vocabulary: the metrics count it and the
//! audit trail records it. Nothing here carries a text of the call, an argument beyond
//! the ids, or anything of the caller's credentials.

use std::time::Duration;

use crate::bitrix::{CallError, ErrorClass};

/// How a tool call ended, as the model saw it. A closed set, so a metric label over it
/// stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call succeeded.
    Ok,
    /// The arguments did not parse; nothing was sent.
    InvalidArguments,
    /// A write tool on a read-only server; nothing was sent.
    ReadOnly,
    /// A request without a signed-in person under sign-in; nothing was sent.
    NoPerson,
    /// The tool refused on its own (e.g. an answer it cannot use); see its text.
    Refused,
    /// The portal found the request wrong.
    Validation,
    /// The caller may not do this to this object.
    Access,
    /// The object does not exist.
    NotFound,
    /// The webhook or application lacks a scope.
    Scope,
    /// The credentials are wrong, expired or revoked.
    Credentials,
    /// The portal's rate limit was still exceeded after the retries.
    RateLimit,
    /// The method is blocked by the portal's operating-time limit.
    OperatingLimit,
    /// No slot or retry fitted in the call's time budget; nothing more was sent.
    Budget,
    /// The portal failed, is unavailable, or answered outside the contract.
    Portal,
    /// The portal could not be reached or the connection broke.
    Network,
    /// The OAuth token could not be refreshed.
    Refresh,
    /// A signed-in person's Bitrix24 grant is gone: they must sign in again.
    SignInEnded,
    /// A bug: the call panicked.
    Internal,
}

impl Outcome {
    /// Every outcome, for pre-declaring metric series.
    pub const ALL: [Outcome; 18] = [
        Outcome::Ok,
        Outcome::InvalidArguments,
        Outcome::ReadOnly,
        Outcome::NoPerson,
        Outcome::Refused,
        Outcome::Validation,
        Outcome::Access,
        Outcome::NotFound,
        Outcome::Scope,
        Outcome::Credentials,
        Outcome::RateLimit,
        Outcome::OperatingLimit,
        Outcome::Budget,
        Outcome::Portal,
        Outcome::Network,
        Outcome::Refresh,
        Outcome::SignInEnded,
        Outcome::Internal,
    ];

    /// The word for labels and log fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::InvalidArguments => "invalid_arguments",
            Outcome::ReadOnly => "read_only",
            Outcome::NoPerson => "no_person",
            Outcome::Refused => "refused",
            Outcome::Validation => "validation",
            Outcome::Access => "access",
            Outcome::NotFound => "not_found",
            Outcome::Scope => "scope",
            Outcome::Credentials => "credentials",
            Outcome::RateLimit => "rate_limit",
            Outcome::OperatingLimit => "operating_limit",
            Outcome::Budget => "budget",
            Outcome::Portal => "portal",
            Outcome::Network => "network",
            Outcome::Refresh => "refresh",
            Outcome::SignInEnded => "sign_in_ended",
            Outcome::Internal => "internal",
        }
    }

    /// The outcome of a failed REST call, by the error's class (never its message).
    pub fn of_call(error: &CallError) -> Outcome {
        match error {
            CallError::Portal(p) => match p.class() {
                ErrorClass::Validation => Outcome::Validation,
                ErrorClass::NotFound => Outcome::NotFound,
                ErrorClass::AccessDenied => Outcome::Access,
                ErrorClass::InsufficientScope => Outcome::Scope,
                ErrorClass::ExpiredToken | ErrorClass::BadCredentials => Outcome::Credentials,
                ErrorClass::QueryLimit => Outcome::RateLimit,
                ErrorClass::OperationTimeLimit => Outcome::OperatingLimit,
                ErrorClass::MethodNotFound
                | ErrorClass::PortalUnavailable
                | ErrorClass::Internal
                | ErrorClass::Unknown => Outcome::Portal,
            },
            CallError::Transport(_) => Outcome::Network,
            CallError::Decode { .. } => Outcome::Portal,
            CallError::Budget(_) => Outcome::Budget,
            CallError::OAuth { .. } => Outcome::Refresh,
            CallError::SignInEnded(_) => Outcome::SignInEnded,
        }
    }
}

/// The task and result a call was about, when it names or made them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Subject {
    /// The task.
    pub task_id: Option<u64>,
    /// The result.
    pub result_id: Option<u64>,
}

impl Subject {
    /// `self`, completed by what `later` knows (an answer knows more than the arguments).
    pub fn or(self, later: Subject) -> Subject {
        Subject {
            task_id: later.task_id.or(self.task_id),
            result_id: later.result_id.or(self.result_id),
        }
    }
}

/// What a tool's run reports beside its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// How it ended.
    pub outcome: Outcome,
    /// The portal's error code, when the portal answered one (a code, never a message;
    /// characters outside `[A-Za-z0-9_.-]` dropped, at most 64).
    pub portal_code: Option<String>,
    /// What it was about.
    pub subject: Subject,
}

impl Ran {
    /// A run that ended with `outcome` and no portal code.
    pub fn ended(outcome: Outcome, subject: Subject) -> Ran {
        Ran {
            outcome,
            portal_code: None,
            subject,
        }
    }

    /// A run whose REST call failed with `error`.
    pub fn failed(error: &CallError, subject: Subject) -> Ran {
        let portal_code = match error {
            CallError::Portal(p) => Some(clean_code(&p.code)),
            CallError::OAuth { code, .. } => Some(clean_code(code)),
            _ => None,
        };
        Ran {
            outcome: Outcome::of_call(error),
            portal_code,
            subject,
        }
    }
}

/// A code as it may be recorded: codes are short words; anything else is dropped.
pub fn clean_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(64)
        .collect()
}

/// One finished tool call, for whoever observes calls (metrics, audit trail).
#[derive(Debug, Clone)]
pub struct CallReport {
    /// The tool's name (one of the registry's, or `unknown` never: unknown tools are
    /// protocol errors and not reported).
    pub tool: &'static str,
    /// Whether the tool changes the portal.
    pub writes: bool,
    /// How it ended, with the portal's code and what it was about.
    pub ran: Ran,
    /// From the call's arrival to its answer.
    pub duration: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitrix::PortalError;

    #[test]
    fn words_are_distinct_and_cover_every_outcome() {
        let mut words: Vec<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        words.sort();
        words.dedup();
        assert_eq!(words.len(), Outcome::ALL.len());
    }

    #[test]
    fn a_portal_code_is_kept_as_a_bare_word() {
        let e = CallError::Portal(PortalError {
            status: 403,
            code: "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION".into(),
            message: "Доступ запрещён".into(),
            validation: vec![],
            operating_reset_at: None,
            retry_after: None,
        });
        let ran = Ran::failed(&e, Subject::default());
        assert_eq!(ran.outcome, Outcome::Access);
        assert_eq!(
            ran.portal_code.as_deref(),
            Some("BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION")
        );
        assert_eq!(clean_code("X\n<script>&\u{1b}[0m"), "Xscript0m");
        assert_eq!(clean_code(&"A".repeat(100)).len(), 64);
    }

    #[test]
    fn an_answer_completes_the_arguments() {
        let asked = Subject {
            task_id: None,
            result_id: Some(7),
        };
        let answered = Subject {
            task_id: Some(3),
            result_id: None,
        };
        assert_eq!(
            asked.or(answered),
            Subject {
                task_id: Some(3),
                result_id: Some(7)
            }
        );
    }
}
