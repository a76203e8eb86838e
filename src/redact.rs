//! Process-wide secret redaction.
//!
//! Every secret the process learns (webhook secret, OAuth tokens, client secret, bearer
//! key) is registered here once; the log writer and every error shown to a client pass
//! through [`redact`], so a secret that slips into a message (reqwest errors embed URLs,
//! portals echo bodies) is masked wherever it ends up.

use std::borrow::Cow;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Secrets shorter than this are not registered: masking "1" would shred every message.
const MIN_LEN: usize = 4;

/// Registers a secret (and its percent-encoded form) for masking.
pub fn register(secret: &str) {
    if secret.len() < MIN_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for form in [secret.to_string(), percent_encode(secret)] {
        if !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    // Longest first, so a secret that contains another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Returns `text` with every registered secret replaced by [`MASK`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    Cow::Owned(out)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `tracing_subscriber` writer for stderr that masks secrets in every log line.
#[derive(Clone, Copy, Default)]
pub struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The fmt layer formats a whole event before writing it, so one call is one line.
        let text = String::from_utf8_lossy(buf);
        // A line that cannot be written (the client closed our stderr) is dropped: on an
        // error tracing-subscriber reports it with `eprintln!`, which panics on a closed
        // stderr, and that panic killed whichever task was logging (the signal handler,
        // rmcp's service loop, a tool call).
        let _ = std::io::stderr().write_all(redact(&text).as_bytes());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_registered_secrets_and_their_encoded_form() {
        register("s3cr3t-webhook-code");
        register("tok/en+with=chars");
        let text =
            "POST https://p.example/rest/api/1/s3cr3t-webhook-code/x auth=tok%2Fen%2Bwith%3Dchars";
        let out = redact(text);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(!out.contains("tok%2F"), "{out}");
        assert_eq!(out.matches(MASK).count(), 2);
    }

    #[test]
    fn leaves_text_without_secrets_untouched() {
        register("another-secret-value");
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn ignores_too_short_secrets() {
        register("ab");
        assert_eq!(redact("abc"), "abc");
    }
}
