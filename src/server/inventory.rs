//! Which tools a server offers: the one place that applies `--read-only`, `--tools` and
//! `--exclude-tools`.
//!
//! Rules, in order:
//! 1. Every name given must be a tool name; an unknown one stops start-up with the list
//!    of valid names (a typo must not silently offer nothing, or everything).
//! 2. `--tools` (allow-list) keeps only the named tools; absent or empty means all.
//! 3. `--exclude-tools` (deny-list) removes the named tools.
//! 4. `--read-only` removes every tool that writes, whatever 2 and 3 said: it wins.
//! 5. No tool left is an error too: a server with nothing to offer is a configuration
//!    mistake the user should hear about at start-up, not discover in the client.
//!
//! At call time the server refuses write tools in read-only mode with an `isError`
//! result saying so (see `errors::read_only_refusal`), and any other tool that is not
//! offered with the same protocol error as an unknown tool.

use std::sync::{Arc, OnceLock};

use rmcp::model::Tool;

use crate::tools::{self, Entry, REGISTRY};

/// The selection asked for on the command line or in the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolSelection {
    /// `--read-only`: offer only tools that never change the portal.
    pub read_only: bool,
    /// `--tools`: allow-list; empty means every tool.
    pub tools: Vec<String>,
    /// `--exclude-tools`: deny-list.
    pub exclude: Vec<String>,
}

/// The tools a server offers, in listing order, and whether it runs read-only.
#[derive(Clone)]
pub struct Inventory {
    enabled: Vec<&'static dyn Entry>,
    read_only: bool,
    /// Built on the first `tools/list`: a server is created before the handshake.
    definitions: Arc<OnceLock<Arc<Vec<Tool>>>>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("enabled", &self.names())
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl PartialEq for Inventory {
    fn eq(&self, other: &Self) -> bool {
        self.names() == other.names() && self.read_only == other.read_only
    }
}

impl Default for Inventory {
    /// Every tool, writes allowed.
    fn default() -> Self {
        Self::of(REGISTRY.to_vec(), false)
    }
}

/// Every tool's definition, built once per process and shared by every inventory.
static ALL_DEFINITIONS: OnceLock<Vec<Tool>> = OnceLock::new();

impl Inventory {
    fn of(enabled: Vec<&'static dyn Entry>, read_only: bool) -> Self {
        Self {
            enabled,
            read_only,
            definitions: Arc::default(),
        }
    }

    /// The offered tools, in listing order.
    pub fn enabled(&self) -> &[&'static dyn Entry] {
        &self.enabled
    }

    /// The names of the offered tools, in listing order.
    pub fn names(&self) -> Vec<&'static str> {
        self.enabled.iter().map(|t| t.name()).collect()
    }

    /// Whether write tools are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether the tool `name` is offered.
    pub fn offers(&self, name: &str) -> bool {
        self.enabled.iter().any(|t| t.name() == name)
    }

    /// What a call of `name` runs into: the tool, or why it is not served.
    pub fn lookup(&self, name: &str) -> Lookup {
        match tools::find(name) {
            Some(tool) if self.read_only && !tool.read_only() => Lookup::ReadOnly(tool),
            Some(tool) if self.offers(name) => Lookup::Offered(tool),
            _ => Lookup::Unknown,
        }
    }

    /// The `tools/list` entries of the offered tools, built on first use.
    pub fn definitions(&self) -> &Arc<Vec<Tool>> {
        self.definitions.get_or_init(|| {
            let all =
                ALL_DEFINITIONS.get_or_init(|| REGISTRY.iter().map(|t| t.definition()).collect());
            Arc::new(
                all.iter()
                    .filter(|d| self.offers(&d.name))
                    .cloned()
                    .collect(),
            )
        })
    }
}

/// The answer of [`Inventory::lookup`].
pub enum Lookup {
    /// Offered: call it.
    Offered(&'static dyn Entry),
    /// A write tool on a read-only server: refused with a readable result, not "unknown
    /// tool".
    ReadOnly(&'static dyn Entry),
    /// Not a tool, or not offered: the same protocol error either way.
    Unknown,
}

/// Every valid tool name, comma-separated, for error messages.
pub fn valid_names() -> String {
    REGISTRY
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ToolSelection {
    /// Applies the rules above.
    pub fn resolve(&self) -> Result<Inventory, String> {
        let allow = parse_names("--tools (BITRIX24_TOOLS)", &self.tools)?;
        let deny = parse_names("--exclude-tools (BITRIX24_EXCLUDE_TOOLS)", &self.exclude)?;
        let enabled: Vec<&'static dyn Entry> = REGISTRY
            .iter()
            .copied()
            .filter(|t| allow.is_empty() || allow.contains(&t.name()))
            .filter(|t| !deny.contains(&t.name()))
            .filter(|t| !self.read_only || t.read_only())
            .collect();
        if enabled.is_empty() {
            let why = if self.read_only {
                format!(
                    " (--read-only keeps only the read-only tools: {})",
                    REGISTRY
                        .iter()
                        .filter(|t| t.read_only())
                        .map(|t| t.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                String::new()
            };
            return Err(format!(
                "the tool selection leaves no tool to offer{why}; check --tools, --exclude-tools and --read-only \
                 (BITRIX24_TOOLS, BITRIX24_EXCLUDE_TOOLS, BITRIX24_READ_ONLY). Valid tool names: {}",
                valid_names()
            ));
        }
        Ok(Inventory::of(enabled, self.read_only))
    }
}

/// Splits comma-separated values, trims them, drops empty ones and checks every name.
fn parse_names(option: &str, values: &[String]) -> Result<Vec<&'static str>, String> {
    let mut names = Vec::new();
    let mut unknown = Vec::new();
    for name in values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match tools::find(name) {
            Some(t) => names.push(t.name()),
            None => unknown.push(format!("`{}`", name.chars().take(64).collect::<String>())),
        }
    }
    if unknown.is_empty() {
        Ok(names)
    } else {
        Err(format!(
            "{option} names unknown tool(s) {}. Valid tool names: {}",
            unknown.join(", "),
            valid_names()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(read_only: bool, tools: &[&str], exclude: &[&str]) -> ToolSelection {
        ToolSelection {
            read_only,
            tools: tools.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn names(inv: &Inventory) -> Vec<&'static str> {
        inv.names()
    }

    fn all() -> Vec<&'static str> {
        REGISTRY.iter().map(|t| t.name()).collect()
    }

    #[test]
    fn nothing_asked_offers_every_tool_in_order() {
        let inv = sel(false, &[], &[]).resolve().unwrap();
        assert_eq!(names(&inv), all());
        assert!(!inv.read_only());
        assert_eq!(inv, Inventory::default());
    }

    #[test]
    fn unknown_names_fail_and_list_the_valid_ones() {
        for s in [
            sel(false, &["task_result_add", "task_result_ad"], &[]),
            sel(false, &[], &["nope"]),
            sel(true, &["TASK_RESULT_LIST"], &[]),
        ] {
            let e = s.resolve().unwrap_err();
            assert!(e.contains("unknown tool"), "{e}");
            for name in all() {
                assert!(e.contains(name), "{e}");
            }
        }
        let e = sel(false, &["task_result_ad"], &[]).resolve().unwrap_err();
        assert!(
            e.contains("`task_result_ad`") && e.contains("--tools"),
            "{e}"
        );
    }

    #[test]
    fn allow_list_keeps_listing_order_and_accepts_commas_and_spaces() {
        let inv = sel(false, &["task_result_list, task_result_add", ""], &[])
            .resolve()
            .unwrap();
        assert_eq!(names(&inv), ["task_result_add", "task_result_list"]);
        assert!(inv.offers("task_result_add") && !inv.offers("task_result_delete"));
    }

    #[test]
    fn deny_list_removes_tools() {
        let inv = sel(false, &[], &["task_result_delete", "task_result_update"])
            .resolve()
            .unwrap();
        assert!(!inv.offers("task_result_delete") && !inv.offers("task_result_update"));
        assert_eq!(inv.enabled().len(), REGISTRY.len() - 2);
    }

    #[test]
    fn deny_wins_over_allow() {
        let inv = sel(
            false,
            &["task_result_add", "task_result_list"],
            &["task_result_add"],
        )
        .resolve()
        .unwrap();
        assert_eq!(names(&inv), ["task_result_list"]);
    }

    #[test]
    fn read_only_keeps_only_read_tools_and_wins_over_the_allow_list() {
        let inv = sel(true, &[], &[]).resolve().unwrap();
        assert!(inv.read_only());
        assert!(inv.enabled().iter().all(|t| t.read_only()));
        assert!(inv.offers("task_result_list") && inv.offers("task_chat_messages_list"));
        let inv = sel(true, &["task_result_add", "task_result_list"], &[])
            .resolve()
            .unwrap();
        assert_eq!(names(&inv), ["task_result_list"]);
    }

    #[test]
    fn an_empty_selection_is_an_error() {
        let e = sel(true, &["task_result_add"], &[]).resolve().unwrap_err();
        assert!(e.contains("no tool") && e.contains("--read-only"), "{e}");
        let e = sel(false, &["task_result_add"], &["task_result_add"])
            .resolve()
            .unwrap_err();
        assert!(e.contains("no tool"), "{e}");
    }
}
