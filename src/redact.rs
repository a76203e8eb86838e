//! Process-wide secret redaction.
//!
//! Every secret the process learns (webhook secret, OAuth tokens, client secret, bearer
//! key) is registered here; the log writer and every error shown to a client pass
//! through [`redact`], so a secret that slips into a message (reqwest errors embed URLs,
//! portals echo bodies) is masked wherever it ends up. Secrets fixed for the process are
//! [`register`]ed once; those that rotate (an OAuth identity's token pair) live in a
//! [`Slot`], which holds only the pair in force (and the one before it), so the registry
//! stays bounded however often tokens are refreshed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

static REGISTRY: RwLock<Registry> = RwLock::new(Registry {
    fixed: Vec::new(),
    slots: BTreeMap::new(),
    all: Vec::new(),
});

/// Slot ids; never reused, so a slot cannot overwrite another's secrets.
static NEXT_SLOT: AtomicU64 = AtomicU64::new(0);

struct Registry {
    /// Secrets registered for the whole process, each in its plain and encoded form.
    fixed: Vec<String>,
    /// Per slot: the forms of the secrets in force, and of those they replaced.
    slots: BTreeMap<u64, [Vec<String>; 2]>,
    /// Everything above, deduplicated, longest first: what [`redact`] masks.
    all: Vec<String>,
}

impl Registry {
    fn rebuild(&mut self) {
        let mut all: Vec<String> = self.fixed.clone();
        for form in self.slots.values().flatten().flatten() {
            if !all.contains(form) {
                all.push(form.clone());
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self.all = all;
    }
}

fn write() -> std::sync::RwLockWriteGuard<'static, Registry> {
    REGISTRY.write().unwrap_or_else(|e| e.into_inner())
}

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Secrets shorter than this are not registered: masking "1" would shred every message.
const MIN_LEN: usize = 4;

/// The forms a secret is masked in: as it is, percent-encoded, and escaped as in a JSON
/// string (how `--log-format json` and `Debug` write a quote or backslash inside it); none when
/// too short.
fn forms(secret: &str) -> Vec<String> {
    if secret.len() < MIN_LEN {
        return Vec::new();
    }
    let mut forms = vec![secret.to_string()];
    let quoted = serde_json::to_string(secret).unwrap_or_default();
    let json = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(secret);
    for form in [percent_encode(secret), json.to_string()] {
        if !forms.contains(&form) {
            forms.push(form);
        }
    }
    forms
}

/// Registers a secret that stays the same for the whole process (and its
/// percent-encoded form) for masking.
pub fn register(secret: &str) {
    let new = forms(secret);
    if new.is_empty() {
        return;
    }
    let mut registry = write();
    let mut changed = false;
    for form in new {
        if !registry.fixed.contains(&form) {
            registry.fixed.push(form);
            changed = true;
        }
    }
    if changed {
        registry.rebuild();
    }
}

/// Secrets that are replaced over time, such as one OAuth identity's token pair.
///
/// [`Slot::replace`] swaps the set in force for a new one; the set it replaces stays
/// masked until the next replacement, because a call sent with the old access token just
/// before a refresh may still bring it back in an error. Dropping a slot keeps its last
/// secrets: an error text made while it lived may still be shown.
#[derive(Debug)]
pub struct Slot(u64);

impl Slot {
    /// An empty slot.
    pub fn new() -> Self {
        Slot(NEXT_SLOT.fetch_add(1, Ordering::Relaxed))
    }

    /// Makes `secrets` the set in force for this slot.
    pub fn replace(&self, secrets: &[&str]) {
        let current: Vec<String> = secrets.iter().flat_map(|s| forms(s)).collect();
        let mut registry = write();
        let entry = registry.slots.entry(self.0).or_default();
        let [now, before] = entry;
        *before = std::mem::replace(now, current);
        registry.rebuild();
    }

    /// How many forms this slot keeps masked.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
        registry
            .slots
            .get(&self.0)
            .map_or(0, |[now, before]| now.len() + before.len())
    }
}

impl Default for Slot {
    fn default() -> Self {
        Slot::new()
    }
}

/// Returns `text` with every registered secret replaced by [`MASK`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    let secrets = &registry.all;
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

/// Everything but the RFC 3986 unreserved characters (`A-Z a-z 0-9 - _ . ~`) is encoded,
/// as `%XX` with upper-case hex: the form a secret takes in a URL or a form body.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
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
    fn masks_the_json_escaped_form_too() {
        register("json\"quoted\\secret");
        let line = serde_json::json!({"message": "sent json\"quoted\\secret"}).to_string();
        let out = redact(&line);
        assert!(!out.contains("quoted"), "{out}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&out).is_ok(),
            "{out}"
        );
    }

    #[test]
    fn leaves_text_without_secrets_untouched() {
        register("another-secret-value");
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
    }

    /// How many registered forms contain `marker` (other tests register their own).
    fn registered_with(marker: &str) -> usize {
        let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
        registry.all.iter().filter(|s| s.contains(marker)).count()
    }

    #[test]
    fn a_slot_holds_only_the_pair_in_force_and_the_one_before() {
        let slot = Slot::new();
        for n in 0..100 {
            let access = format!("slotmark-access/{n}");
            let refresh = format!("slotmark-refresh/{n}");
            slot.replace(&[&access, &refresh]);
        }
        // Two pairs, each token plain and percent-encoded.
        assert_eq!(registered_with("slotmark-"), 8);
        for kept in [
            "slotmark-access/99",
            "slotmark-refresh/99",
            "slotmark-access/98",
        ] {
            assert_eq!(redact(&format!("x {kept} y")), "x *** y", "{kept}");
        }
        assert_eq!(redact("slotmark-access%2F99"), MASK);
        assert_eq!(redact("slotmark-access/97"), "slotmark-access/97");
    }

    #[test]
    fn slots_do_not_replace_each_other_or_fixed_secrets() {
        let (a, b) = (Slot::new(), Slot::new());
        register("twoslots-fixed");
        a.replace(&["twoslots-a-0"]);
        b.replace(&["twoslots-b-0"]);
        a.replace(&["twoslots-a-1"]);
        a.replace(&["twoslots-a-2"]);
        a.replace(&["twoslots-fixed"]);
        a.replace(&["twoslots-a-3"]);
        let out = redact("twoslots-fixed twoslots-a-0 twoslots-a-3 twoslots-b-0");
        assert_eq!(out, "*** twoslots-a-0 *** ***");
    }

    #[test]
    fn ignores_too_short_secrets() {
        register("ab");
        assert_eq!(redact("abc"), "abc");
    }
}
