//! `doctor --oauth`: the sign-in side. Calls run as each signed-in person, so there is no
//! identity to probe the portal with; instead the checks are the ones a team's admin
//! gets wrong: the callback to register, the store and its key, and whether the OAuth
//! server knows the application (a refresh with a made-up token is refused with
//! `invalid_grant` when the client id and secret are right, `invalid_client` when not),
//! and whether the client metadata documents of the clients that use them can be fetched
//! from here (with the server's own fenced fetcher).

use crate::app::{open_store, start_sign_in_sandbox};
use crate::bitrix::CallError;
use crate::bitrix::grant::{self, App, GrantRequest};
use crate::settings::{PortalChoice, Settings, SignInSettings};
use crate::sign_in::callback_url;
use crate::sign_in::documents::{Fetcher, OwnNames, check_client_id};

use super::Report;

/// Runs the sign-in checks; `true` when sign-in can work.
pub async fn check(r: &mut Report, settings: &Settings, s: &SignInSettings) -> bool {
    r.heading("sign-in (--oauth)");
    let listen = match &settings.http {
        Ok(Some(h)) => h.listen.to_string(),
        _ => "127.0.0.1:8000".into(),
    };
    let public = s.public_url.clone().unwrap_or_else(|| {
        reqwest::Url::parse(&format!("http://{listen}/")).expect("a socket address makes a URL")
    });
    let callback = callback_url(&public);
    r.line(
        "info",
        &format!(
            "clients connect to {}/mcp and sign in there",
            public.as_str().trim_end_matches('/')
        ),
    );
    let mut ok = true;
    match open_store(&s.store, s.store_key.as_ref()).await {
        Ok(store) => match store.people().await {
            Ok(people) => r.line(
                "ok",
                &format!("sign-in store opens: {} people signed in", people.len()),
            ),
            Err(e) => {
                r.line("FAIL", &format!("sign-in store: {e}"));
                ok = false;
            }
        },
        Err(e) => {
            r.line("FAIL", &e);
            ok = false;
        }
    }
    let sandbox = matches!(
        settings.portal.as_ref().map(|p| &p.choice),
        Ok(PortalChoice::Sandbox)
    );
    // Held until the probe is done.
    let (app, oauth_url, _sandbox) = if sandbox {
        r.line(
            "info",
            &format!("callback {callback} (the sandbox's application registers it itself)"),
        );
        match start_sign_in_sandbox(&callback).await {
            Ok((_, sandbox, app)) => {
                let url = reqwest::Url::parse(&sandbox.base_url()).ok();
                (app, url, Some(sandbox))
            }
            Err(e) => {
                r.line("FAIL", &format!("cannot start the sandbox portal: {e}"));
                return false;
            }
        }
    } else {
        let Some(app) = s.app.clone() else {
            r.line(
                "FAIL",
                "no Bitrix24 application: set BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET",
            );
            return false;
        };
        r.line(
            "info",
            &format!(
                "register {callback} as the redirect (handler) address of the Bitrix24 application {}",
                app.client_id
            ),
        );
        (app, s.oauth_url.clone(), None)
    };
    ok &= probe_app(r, &app, oauth_url.as_ref()).await;
    documents(r, s.client_documents).await;
    r.line(
        "info",
        "portal calls run as each signed-in person: scopes are checked at their first call",
    );
    ok
}

async fn probe_app(r: &mut Report, app: &App, oauth_url: Option<&reqwest::Url>) -> bool {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    let url = grant::token_url(oauth_url, None);
    let origin = url.origin().ascii_serialization();
    match grant::exchange(
        &http,
        url,
        app,
        GrantRequest::Refresh("doctor-probe-not-a-token"),
    )
    .await
    {
        Err(CallError::OAuth { code, .. }) if code.eq_ignore_ascii_case("invalid_grant") => {
            r.line(
                "ok",
                &format!("the OAuth server {origin} knows the application"),
            );
            true
        }
        Err(CallError::OAuth { code, .. }) if code.eq_ignore_ascii_case("invalid_client") => {
            r.line(
                "FAIL",
                &format!(
                    "the OAuth server {origin} refused the application's credentials (invalid_client): check \
                     BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET and that the application is installed"
                ),
            );
            false
        }
        Err(e) => {
            r.line("FAIL", &format!("the OAuth server {origin}: {e}"));
            false
        }
        Ok(_) => {
            r.line("ok", &format!("the OAuth server {origin} answered"));
            true
        }
    }
}

/// The client metadata documents of the clients known to use them.
pub const WELL_KNOWN_DOCUMENTS: [(&str, &str); 2] = [
    (
        "Claude Code",
        "https://claude.ai/oauth/claude-code-client-metadata",
    ),
    ("Codex", "https://chatgpt.com/oauth/codex/client.json"),
];

/// Reports the documents setting and, when on, whether the well-known documents can be
/// fetched from here: a server that cannot fetch them leaves those clients unable to
/// sign in, since they use the document whenever the server advertises documents.
async fn documents(r: &mut Report, on: bool) {
    if !on {
        r.line(
            "info",
            "client metadata documents off (--client-metadata-documents off): every client \
             registers through /register",
        );
        return;
    }
    r.line(
        "info",
        "client metadata documents on: Claude Code and Codex name themselves by a document URL \
         this server fetches, and do not fall back to /register",
    );
    let fetcher = Fetcher::new(false);
    let fetches = WELL_KNOWN_DOCUMENTS.map(|(client, url)| {
        let fetcher = &fetcher;
        async move {
            let outcome = match check_client_id(url, false, &OwnNames::default()) {
                Ok(parsed) => fetcher.fetch(&parsed).await.map(|_| ()),
                Err(cause) => Err(cause.into()),
            };
            (client, url, outcome)
        }
    });
    let mut unreachable = false;
    for (client, url, outcome) in futures::future::join_all(fetches).await {
        match outcome {
            Ok(()) => r.line("ok", &format!("{client}'s document {url} can be fetched")),
            Err(refusal) => {
                unreachable |= refusal.cause.unreachable();
                r.line(
                    "warn",
                    &format!(
                        "{client}'s document {url} cannot be fetched ({}): {}",
                        refusal.cause.name(),
                        refusal.cause.says()
                    ),
                );
            }
        }
    }
    if unreachable {
        r.line(
            "warn",
            "this machine cannot fetch client documents from the internet, so Claude Code and Codex \
             cannot sign in: start the server with --client-metadata-documents off \
             (MCP_CLIENT_METADATA_DOCUMENTS=off) and they register through /register instead",
        );
    }
}
