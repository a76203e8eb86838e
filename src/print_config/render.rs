//! Rendering a snippet in each client's own format (JSON or TOML) plus the guide that
//! says where it goes. Snippets hold the command and the NAMES of the environment
//! variables, never a value: each client reads the secret from the user's environment or
//! a prompt (Claude Desktop, which can do neither, gets a placeholder to replace). Which
//! names and arguments a snippet carries is decided in `print_config`, not here.
//! Just over 400 lines: five clients times two transports sit in one match on purpose, so
//! the formats can be compared side by side.
//!
//! The Codex TOML (`toml_str`, `toml_array`, `toml_key` and the `[mcp_servers.X]` text) is
//! written by hand, not with the `toml` crate: toml 1.2's serializer gives the same layout
//! for ordinary values, but a string (or key) holding a backslash or a double quote, and
//! no single quote or control character, comes out as a literal string
//! (`command = 'C:\Users\me\mcp.exe'`, key `'q"x'`) where the snippets write basic strings
//! (`"C:\\Users\\me\\mcp.exe"`, `"q\"x"`). Every Windows path has backslashes, so every
//! Windows snippet would change; the output must stay as it is. Forcing basic strings
//! through `toml_writer` (under `toml`) comes closest, but it writes backspace and form
//! feed as `\b` and `\f` where `toml_str` writes `\u0008` and `\u000C`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cli::{ClientKind, Transport};

/// Env var holding the bearer token of the HTTP transport.
pub const AUTH_TOKEN_VAR: &str = "MCP_AUTH_TOKEN";

/// Codex: a cold start of the binary takes well under a second; leave room for slow disks.
const CODEX_STARTUP_TIMEOUT_SEC: u32 = 20;
/// Codex: above the portal's own 60 s cut-off and our 65 s request timeout.
const CODEX_TOOL_TIMEOUT_SEC: u32 = 120;

/// What to render.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub client: ClientKind,
    pub transport: Transport,
    /// Server name in the client's configuration.
    pub name: &'a str,
    /// The program the client starts (stdio only): the binary's absolute path, or `npx`.
    pub command: String,
    /// Its arguments (stdio only), e.g. `--read-only`.
    pub args: Vec<String>,
    /// The env vars the server needs from the client (stdio only).
    pub env: Vec<EnvVar>,
    /// Endpoint URL (http only).
    pub url: &'a str,
    /// The HTTP server signs people in (`--oauth`): no token in the snippet, the client
    /// runs the sign-in itself.
    pub sign_in: bool,
    /// The signing-in server accepts client ID metadata documents
    /// (`--client-metadata-documents`): clients that identify themselves by one need the
    /// server to reach the internet.
    pub documents: bool,
}

/// One variable a snippet names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    /// Its name.
    pub name: &'static str,
    /// Whether its value is a secret (VS Code then asks for it as a password).
    pub secret: bool,
}

/// A rendered snippet.
#[derive(Debug, Clone)]
pub struct Snippet {
    /// The configuration, in the client's format: print to stdout.
    pub config: String,
    /// Where it goes and what else to do: print to stderr.
    pub guide: String,
}

// Typed so that keys come out in the order the clients' docs show them.
#[derive(Serialize)]
#[serde(untagged)]
enum Server {
    Stdio {
        #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
        kind: Option<&'static str>,
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    },
    Http {
        #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
        kind: Option<&'static str>,
        url: String,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
    },
}

#[derive(Serialize)]
struct McpServers<'a> {
    #[serde(rename = "mcpServers")]
    servers: BTreeMap<&'a str, Server>,
}

#[derive(Serialize)]
struct VsCodeConfig<'a> {
    servers: BTreeMap<&'a str, Server>,
    inputs: Vec<Input>,
}

#[derive(Serialize)]
struct Input {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    description: String,
    password: bool,
}

fn stdio(
    kind: Option<&'static str>,
    exe: &str,
    req: &Request,
    value: impl Fn(&str) -> String,
) -> Server {
    Server::Stdio {
        kind,
        command: exe.to_string(),
        args: req.args.clone(),
        env: req
            .env
            .iter()
            .map(|v| (v.name.to_string(), value(v.name)))
            .collect(),
    }
}

/// An HTTP server entry; `authorization` is `None` when people sign in.
fn http(kind: Option<&'static str>, url: &str, authorization: Option<String>) -> Server {
    Server::Http {
        kind,
        url: url.to_string(),
        headers: authorization
            .map(|a| BTreeMap::from([("Authorization".to_string(), a)]))
            .unwrap_or_default(),
    }
}

fn mcp_servers(name: &str, server: Server) -> String {
    pretty(&McpServers {
        servers: BTreeMap::from([(name, server)]),
    })
}

/// Renders the snippet for `req`.
pub fn render(req: &Request) -> Snippet {
    let exe = req.command.as_str();
    let http = req.transport == Transport::Http;
    let bearer = |value: String| (!req.sign_in).then_some(value);
    let sign_in_step = |how: &str| {
        if req.sign_in && http {
            sign_in_guide(how, req.documents)
        } else {
            String::new()
        }
    };
    match req.client {
        ClientKind::ClaudeCode => {
            let server = if http {
                self::http(
                    Some("http"),
                    req.url,
                    bearer(format!("Bearer ${{{AUTH_TOKEN_VAR}}}")),
                )
            } else {
                stdio(Some("stdio"), exe, req, |n| format!("${{{n}}}"))
            };
            let line = if http && req.sign_in {
                format!(
                    "claude mcp add --transport http {} {}",
                    shell_quote(req.name),
                    shell_quote(req.url)
                )
            } else if http {
                format!(
                    "claude mcp add --transport http {} {} --header \"Authorization: Bearer ${AUTH_TOKEN_VAR}\"",
                    shell_quote(req.name),
                    shell_quote(req.url)
                )
            } else {
                let mut line = format!("claude mcp add {}", shell_quote(req.name));
                for v in &req.env {
                    let n = v.name;
                    line.push_str(&format!(" -e {n}=\"${n}\""));
                }
                line.push_str(" -- ");
                line.push_str(&shell_quote(exe));
                for a in &req.args {
                    line.push(' ');
                    line.push_str(&shell_quote(a));
                }
                line
            };
            let guide = if http && req.sign_in {
                format!(
                    "Claude Code: either run this once in your shell:\n  {line}\n\
                     or put the JSON below in .mcp.json at the project root. Check with: claude mcp list{}",
                    sign_in_step(&format!(
                        "run `claude mcp login {}` in a terminal, or in Claude Code run /mcp, pick the server and \
                         choose Authenticate.",
                        shell_quote(req.name)
                    ))
                )
            } else {
                format!(
                    "Claude Code: either run this once in your shell (it reads the value from your environment):\n  {line}\n\
                     or put the JSON below in .mcp.json at the project root (Claude Code expands ${{VAR}} from the \
                     environment it was started in). Check with: claude mcp list"
                )
            };
            Snippet {
                config: mcp_servers(req.name, server),
                guide,
            }
        }
        ClientKind::Cursor => {
            let server = if http {
                self::http(
                    None,
                    req.url,
                    bearer(format!("Bearer ${{env:{AUTH_TOKEN_VAR}}}")),
                )
            } else {
                stdio(Some("stdio"), exe, req, |n| format!("${{env:{n}}}"))
            };
            Snippet {
                config: mcp_servers(req.name, server),
                guide: if http && req.sign_in {
                    format!(
                        "Cursor: put this in ~/.cursor/mcp.json (every project) or .cursor/mcp.json (this project).{}",
                        sign_in_step(
                            "Cursor shows the server as needing a login in Settings > MCP: click it."
                        )
                    )
                } else {
                    "Cursor: put this in ~/.cursor/mcp.json (every project) or .cursor/mcp.json (this project); \
                     Cursor expands ${env:NAME} from the environment it was started in."
                        .to_string()
                },
            }
        }
        ClientKind::Codex => {
            let mut toml = format!("[mcp_servers.{}]\n", toml_key(req.name));
            if http {
                toml.push_str(&format!("url = {}\n", toml_str(req.url)));
                if !req.sign_in {
                    toml.push_str(&format!(
                        "bearer_token_env_var = {}\n",
                        toml_str(AUTH_TOKEN_VAR)
                    ));
                }
            } else {
                let names: Vec<&str> = req.env.iter().map(|v| v.name).collect();
                toml.push_str(&format!("command = {}\n", toml_str(exe)));
                toml.push_str(&format!("args = {}\n", toml_array(&req.args)));
                toml.push_str(&format!("env_vars = {}\n", toml_array(&names)));
            }
            toml.push_str(&format!(
                "startup_timeout_sec = {CODEX_STARTUP_TIMEOUT_SEC}\ntool_timeout_sec = {CODEX_TOOL_TIMEOUT_SEC}\n"
            ));
            Snippet {
                config: toml,
                guide: if http && req.sign_in {
                    format!(
                        "Codex: add this to ~/.codex/config.toml. Check with: codex mcp list{}{}",
                        sign_in_step(&format!(
                            "run `codex mcp login {}` once (add --no-browser on a machine without one: it prints the \
                             address to open).",
                            shell_quote(req.name)
                        )),
                        if req.documents {
                            format!(
                                "\nCodex only: `codex mcp login {} --oauth-client-registration dcr` registers instead of \
                                 using its metadata document.",
                                shell_quote(req.name)
                            )
                        } else {
                            String::new()
                        }
                    )
                } else {
                    "Codex: add this to ~/.codex/config.toml. Codex passes the variables named in env_vars (or the \
                     bearer token variable) from the environment it was started in. Check with: codex mcp list"
                        .to_string()
                },
            }
        }
        ClientKind::Vscode => {
            let input = |id: String, description: String, password: bool| Input {
                kind: "promptString",
                id,
                description,
                password,
            };
            let (server, inputs) = if http && req.sign_in {
                (self::http(Some("http"), req.url, None), Vec::new())
            } else if http {
                (
                    self::http(
                        Some("http"),
                        req.url,
                        Some("Bearer ${input:mcp-auth-token}".into()),
                    ),
                    vec![input(
                        "mcp-auth-token".into(),
                        format!("Bearer token of the Bitrix24 MCP server ({AUTH_TOKEN_VAR})"),
                        true,
                    )],
                )
            } else {
                (
                    stdio(Some("stdio"), exe, req, |n| {
                        format!("${{input:{}}}", input_id(n))
                    }),
                    req.env
                        .iter()
                        .map(|v| {
                            let n = v.name;
                            input(
                                input_id(n),
                                format!("{n} for the Bitrix24 MCP server"),
                                v.secret,
                            )
                        })
                        .collect(),
                )
            };
            Snippet {
                config: pretty(&VsCodeConfig {
                    servers: BTreeMap::from([(req.name, server)]),
                    inputs,
                }),
                guide: if http && req.sign_in {
                    format!(
                        "VS Code: put this in .vscode/mcp.json (or run \"MCP: Open User Configuration\").{}",
                        sign_in_step(
                            "VS Code asks to authenticate when the server first starts: allow it."
                        )
                    )
                } else {
                    "VS Code: put this in .vscode/mcp.json (or run \"MCP: Open User Configuration\"). VS Code asks \
                     for each value once and keeps it in its secret storage."
                        .to_string()
                },
            }
        }
        ClientKind::ClaudeDesktop => {
            let server = if http && req.sign_in {
                // mcp-remote runs the sign-in in the browser itself.
                Server::Stdio {
                    kind: None,
                    command: "npx".into(),
                    args: ["-y", "mcp-remote", req.url].map(String::from).to_vec(),
                    env: BTreeMap::new(),
                }
            } else if http {
                // Claude Desktop starts only local commands from this file; mcp-remote bridges to HTTP.
                Server::Stdio {
                    kind: None,
                    command: "npx".into(),
                    args: [
                        "-y",
                        "mcp-remote",
                        req.url,
                        "--header",
                        "Authorization:${AUTH_HEADER}",
                    ]
                    .map(String::from)
                    .to_vec(),
                    env: BTreeMap::from([(
                        "AUTH_HEADER".to_string(),
                        format!("Bearer <value of {AUTH_TOKEN_VAR}>"),
                    )]),
                }
            } else {
                stdio(None, exe, req, |n| format!("<value of {n}>"))
            };
            Snippet {
                config: mcp_servers(req.name, server),
                guide: if http && req.sign_in {
                    format!(
                        "Claude Desktop: merge this into claude_desktop_config.json (Settings > Developer > Edit Config; \
                         macOS ~/Library/Application Support/Claude/, Windows %APPDATA%\\Claude\\) and restart \
                         Claude Desktop.{}",
                        sign_in_step("at its first start mcp-remote opens your browser.")
                    )
                } else {
                    "Claude Desktop: merge this into claude_desktop_config.json (Settings > Developer > Edit Config; \
                     macOS ~/Library/Application Support/Claude/, Windows %APPDATA%\\Claude\\). Claude Desktop does \
                     not read your shell environment: replace each <value of ...> yourself, keep the file private, \
                     and restart Claude Desktop."
                        .to_string()
                },
            }
        }
    }
}

/// How a person signs in from a client: `how` (that client's own step), then what the
/// browser shows, and, while the server accepts metadata documents, what to do when it
/// cannot fetch one.
fn sign_in_guide(how: &str, documents: bool) -> String {
    let mut guide = format!(
        "\nSign in (each person, once): {how} The browser shows this server's consent page (allow the \
         client), then the Bitrix24 sign-in. No token or variable to set."
    );
    if documents {
        guide.push_str(
            "\nIf the browser says the server cannot fetch the client's metadata document (a server without \
             outbound internet), the server's operator turns documents off (--client-metadata-documents off, \
             MCP_CLIENT_METADATA_DOCUMENTS=off) and the client registers instead.",
        );
    }
    guide
}

fn input_id(var: &str) -> String {
    var.to_ascii_lowercase().replace('_', "-")
}

fn pretty<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_array<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items.iter().map(|s| toml_str(s.as_ref())).collect();
    format!("[{}]", parts.join(", "))
}

/// A bare TOML key when possible, else a quoted one.
fn toml_key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_string()
    } else {
        toml_str(s)
    }
}

/// Quotes for a POSIX shell when needed.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:,=+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn req(client: ClientKind, transport: Transport) -> Request<'static> {
        Request {
            client,
            transport,
            name: "bitrix24",
            command: "/opt/my tools/bitrix24-task-results-mcp".into(),
            args: vec!["--read-only".into()],
            env: vec![EnvVar {
                name: "BITRIX24_WEBHOOK_URL",
                secret: true,
            }],
            url: crate::cli::DEFAULT_HTTP_URL,
            sign_in: false,
            documents: true,
        }
    }

    #[test]
    fn json_clients_render_valid_json_with_names_only() {
        for client in [
            ClientKind::ClaudeCode,
            ClientKind::Cursor,
            ClientKind::Vscode,
            ClientKind::ClaudeDesktop,
        ] {
            let s = render(&req(client, Transport::Stdio));
            let v: Value = serde_json::from_str(&s.config).unwrap();
            let servers = v.get("mcpServers").or_else(|| v.get("servers")).unwrap();
            let server = &servers["bitrix24"];
            assert_eq!(
                server["command"],
                json!("/opt/my tools/bitrix24-task-results-mcp")
            );
            assert_eq!(server["args"], json!(["--read-only"]));
            assert!(server["env"]["BITRIX24_WEBHOOK_URL"].is_string());
        }
    }

    #[test]
    fn shell_line_quotes_paths() {
        let s = render(&req(ClientKind::ClaudeCode, Transport::Stdio));
        assert!(
            s.guide.contains(
                "claude mcp add bitrix24 -e BITRIX24_WEBHOOK_URL=\"$BITRIX24_WEBHOOK_URL\" -- '/opt/my tools/bitrix24-task-results-mcp' --read-only"
            ),
            "{}",
            s.guide
        );
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_str("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(toml_key("bitrix24"), "bitrix24");
        assert_eq!(toml_key("a b"), "\"a b\"");
    }
}
