//! `print-config`: the exact configuration snippet for an MCP client.
//!
//! stdout carries only the snippet, in the client's own format (JSON or TOML), so it can
//! be redirected into the file; stderr says where it goes (and, for Claude Code, gives
//! the equivalent `claude mcp add` line).
//!
//! The rule of what a stdio snippet carries lives here and nowhere else: every setting
//! the configuration in force uses travels with it. One set in the environment is
//! named (never its value), so the client passes it on from the user's environment;
//! Codex passes only the variables it is told, and Claude Desktop none of the shell's.
//! One given on the command line travels as the same argument, except a secret, which
//! is named too. Transport settings stay out: the client starts the server on stdio.

mod render;

use std::process::ExitCode;

pub use render::{AUTH_TOKEN_VAR, EnvVar, Request, Snippet, render};

use crate::cli::{Cli, Given, Launcher, Origin, PortalArgs, PrintConfigArgs};
use crate::settings::Settings;

/// The npm package that `--launcher npx` starts.
pub const NPM_PACKAGE: &str = "bitrix24-task-results-mcp";

/// Every variable that can travel into a stdio snippet, in the order it is named.
const TRAVELS: [EnvVar; 17] = [
    secret("BITRIX24_WEBHOOK_URL"),
    plain("BITRIX24_PORTAL_URL"),
    secret("BITRIX24_ACCESS_TOKEN"),
    plain("BITRIX24_CLIENT_ID"),
    secret("BITRIX24_CLIENT_SECRET"),
    secret("BITRIX24_REFRESH_TOKEN"),
    plain("BITRIX24_TOKEN_FILE"),
    plain("BITRIX24_OAUTH_URL"),
    plain("BITRIX24_PLAN"),
    plain("BITRIX24_RATE"),
    plain("BITRIX24_BURST"),
    plain("BITRIX24_CALL_BUDGET"),
    plain("BITRIX24_TIMEOUT"),
    plain("BITRIX24_READ_ONLY"),
    plain("BITRIX24_TOOLS"),
    plain("BITRIX24_EXCLUDE_TOOLS"),
    plain("MCP_METRICS_LISTEN"),
];

/// The variables that say which portal and credentials (the first six of [`TRAVELS`]).
const CREDENTIALS: usize = 6;

const fn secret(name: &'static str) -> EnvVar {
    EnvVar { name, secret: true }
}

const fn plain(name: &'static str) -> EnvVar {
    EnvVar {
        name,
        secret: false,
    }
}

/// What a stdio server needs from its client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerSetup {
    /// Arguments after the program (and the npx package), e.g. `--read-only`.
    pub args: Vec<String>,
    /// Variables the client passes on.
    pub env: Vec<EnvVar>,
}

/// The rule (see the module doc): the arguments and names for the configuration in force.
pub fn server_setup(portal: &PortalArgs, given: &Given) -> ServerSetup {
    let mut setup = ServerSetup::default();
    let mut credentials = false;
    for (i, var) in TRAVELS.iter().enumerate() {
        if portal.sandbox && i < CREDENTIALS {
            continue;
        }
        match given.origin(var.name) {
            None => continue,
            Some(Origin::Flag(argv)) if !var.secret => setup.args.extend(argv.iter().cloned()),
            Some(_) => setup.env.push(*var),
        }
        credentials |= i < CREDENTIALS;
    }
    if portal.sandbox {
        setup.args.insert(0, "--sandbox".into());
    } else if !credentials {
        // Nothing configured yet: the usual setup, a webhook.
        setup.env.insert(0, TRAVELS[0]);
    } else if given.origin("BITRIX24_WEBHOOK_URL").is_none() {
        // OAuth: the portal, and a token unless the server can obtain one itself.
        let refresh = given.origin("BITRIX24_CLIENT_ID").is_some()
            && given.origin("BITRIX24_CLIENT_SECRET").is_some();
        let mut needed = vec!["BITRIX24_PORTAL_URL"];
        if !refresh {
            needed.push("BITRIX24_ACCESS_TOKEN");
        }
        for name in needed {
            let named = setup.env.iter().any(|v| v.name == name)
                || given
                    .origin(name)
                    .is_some_and(|o| matches!(o, Origin::Flag(_)));
            if !named {
                setup
                    .env
                    .push(*TRAVELS.iter().find(|v| v.name == name).expect("listed"));
            }
        }
        setup
            .env
            .sort_by_key(|v| TRAVELS.iter().position(|t| t.name == v.name));
    }
    setup
}

/// `print-config`: the snippet on stdout, where it goes on stderr.
pub fn print(cli: &Cli, given: &Given, settings: &Settings, args: &PrintConfigArgs) -> ExitCode {
    // A snippet for a server that would refuse to start helps nobody.
    let checks = [
        settings.tools.resolve().err(),
        settings.pacing.as_ref().err().cloned(),
    ];
    if let Some(e) = checks.into_iter().flatten().next() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let (command, mut server_args) = match args.launcher {
        Launcher::Path => match std::env::current_exe().and_then(|p| p.canonicalize()) {
            Ok(p) => (p.display().to_string(), Vec::new()),
            Err(e) => {
                eprintln!("error: cannot find the path of this binary: {e}");
                return ExitCode::FAILURE;
            }
        },
        Launcher::Npx => (
            "npx".to_string(),
            vec!["-y".to_string(), NPM_PACKAGE.to_string()],
        ),
    };
    let setup = server_setup(&cli.portal, given);
    server_args.extend(setup.args);
    let snippet = render(&Request {
        client: args.client,
        transport: cli.http.transport,
        name: &args.name,
        command,
        args: server_args,
        env: setup.env,
        url: &args.url,
        sign_in: cli.sign_in.enabled,
        documents: cli.sign_in.client_metadata_documents,
    });
    eprintln!("{}", snippet.guide);
    print!("{}", snippet.config);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(args: &[&str]) -> ServerSetup {
        let mut argv = vec!["x", "print-config", "--client", "codex"];
        argv.extend_from_slice(args);
        let (cli, given) = Cli::try_parse_given(argv).unwrap();
        server_setup(&cli.portal, &given)
    }

    fn names(s: &ServerSetup) -> Vec<&str> {
        s.env.iter().map(|v| v.name).collect()
    }

    #[test]
    fn secrets_given_as_flags_are_named_others_travel_as_flags() {
        let s = setup(&[
            "--portal-url",
            "https://p.example",
            "--access-token",
            "zzsecretzz",
            "--plan",
            "enterprise",
        ]);
        assert_eq!(names(&s), ["BITRIX24_ACCESS_TOKEN"]);
        assert_eq!(
            s.args,
            ["--portal-url", "https://p.example", "--plan", "enterprise"]
        );
    }

    #[test]
    fn defaults_and_sandbox() {
        assert_eq!(names(&setup(&[])), ["BITRIX24_WEBHOOK_URL"]);
        let s = setup(&["--sandbox", "--read-only"]);
        assert!(s.env.is_empty());
        assert_eq!(s.args, ["--sandbox", "--read-only"]);
    }
}
