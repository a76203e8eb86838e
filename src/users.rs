//! `users list` and `users revoke ID`: who is signed in to a server started with
//! `--oauth`, and ending a person's sign-in. Works on the store a running server uses:
//! the server asks the store on every request, so a revoke takes effect at once.

use std::process::ExitCode;

use crate::cli::{Cli, UsersAction, UsersArgs};
use crate::settings::store_location;
use crate::store::Store;

/// Runs the `users` subcommand; the report goes to stdout.
pub async fn run(cli: &Cli, args: &UsersArgs) -> ExitCode {
    // A wrong --store is a usage error (exit 2); a store that cannot be opened is not.
    let location = match store_location(&cli.sign_in) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {}", crate::redact::redact(&e));
            return ExitCode::from(2);
        }
    };
    let key = match crate::settings::store_key(&cli.sign_in) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {}", crate::redact::redact(&e));
            return ExitCode::from(2);
        }
    };
    // A revoke is recorded in the same audit trail as the server's (`--audit-log`).
    let audit = cli
        .audit_log
        .as_deref()
        .and_then(crate::audit::Target::parse)
        .filter(|_| matches!(args.action, UsersAction::Revoke { .. }));
    match audit.map(crate::audit::Writer::open).transpose() {
        Ok(Some(writer)) => {
            crate::audit::started(writer, None);
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {}", crate::redact::redact(&e));
            return ExitCode::FAILURE;
        }
    }
    let store = match crate::app::open_store(&location, key.as_ref()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", crate::redact::redact(&e));
            return ExitCode::FAILURE;
        }
    };

    match &args.action {
        UsersAction::List => list(store.as_ref()).await,
        UsersAction::Revoke { user_id } => revoke(store.as_ref(), *user_id).await,
    }
}

async fn list(store: &dyn Store) -> ExitCode {
    let people = match store.people().await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if people.is_empty() {
        println!("nobody is signed in");
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<10} {:<32} {:<22} {:>7}",
        "USER ID", "PORTAL", "LAST USE (UTC)", "GRANTS"
    );
    for p in people {
        println!(
            "{:<10} {:<32} {:<22} {:>7}",
            p.user_id,
            shown(&p.domain),
            utc(p.last_used_at),
            p.grants
        );
    }
    ExitCode::SUCCESS
}

async fn revoke(store: &dyn Store, user_id: i64) -> ExitCode {
    match store.revoke_person(None, user_id).await {
        Ok(0) => {
            eprintln!("user {user_id} is not signed in (see `users list`)");
            ExitCode::FAILURE
        }
        Ok(n) => {
            crate::audit::user_revoked(user_id, u64::from(n));
            println!(
                "user {user_id} signed out: {n} sign-in(s) revoked; their next request must sign in again"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A stored value as the terminal may show it: control characters (a newline would forge
/// a row, ESC would drive the terminal), bidirectional overrides (they reorder what is
/// shown) and the backslash (so an escape cannot be faked) become visible escapes such as
/// `\n` and `\u{1b}`. The domain comes from the sign-in's callback, so a stranger may have
/// chosen it.
fn shown(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                out.extend(c.escape_unicode())
            }
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS` for unix seconds.
fn utc(secs: i64) -> String {
    let (y, m, d, hh, mm, ss) = crate::clock::utc(secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_as_escapes() {
        assert_eq!(
            super::shown("evil.example\n1  9  admin\u{1b}[2J\u{1b}[H"),
            "evil.example\\n1  9  admin\\u{1b}[2J\\u{1b}[H"
        );
        assert_eq!(super::shown("a\\b\t\r\u{202e}x"), "a\\\\b\\t\\r\\u{202e}x");
        assert_eq!(super::shown("portal.bitrix24.ru"), "portal.bitrix24.ru");
        assert_eq!(super::shown("портал.рф"), "портал.рф");
    }

    #[test]
    fn dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_796_256_000), "2026-12-03 00:00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
    }
}
