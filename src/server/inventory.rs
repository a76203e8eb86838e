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

use super::tools::ToolKind;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    enabled: Vec<ToolKind>,
    read_only: bool,
}

impl Default for Inventory {
    /// Every tool, writes allowed.
    fn default() -> Self {
        Self {
            enabled: ToolKind::ALL.to_vec(),
            read_only: false,
        }
    }
}

impl Inventory {
    /// The offered tools, in listing order.
    pub fn enabled(&self) -> &[ToolKind] {
        &self.enabled
    }

    /// Whether write tools are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether `kind` is offered.
    pub fn offers(&self, kind: ToolKind) -> bool {
        self.enabled.contains(&kind)
    }
}

/// Every valid tool name, comma-separated, for error messages.
pub fn valid_names() -> String {
    ToolKind::ALL
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ToolSelection {
    /// Applies the rules above.
    pub fn resolve(&self) -> Result<Inventory, String> {
        let allow = parse_names("--tools (BITRIX24_TOOLS)", &self.tools)?;
        let deny = parse_names("--exclude-tools (BITRIX24_EXCLUDE_TOOLS)", &self.exclude)?;
        let enabled: Vec<ToolKind> = ToolKind::ALL
            .into_iter()
            .filter(|k| allow.is_empty() || allow.contains(k))
            .filter(|k| !deny.contains(k))
            .filter(|k| !self.read_only || k.read_only())
            .collect();
        if enabled.is_empty() {
            let why = if self.read_only {
                " (--read-only keeps only the read-only tools: task_result_list, task_chat_messages_list)"
            } else {
                ""
            };
            return Err(format!(
                "the tool selection leaves no tool to offer{why}; check --tools, --exclude-tools and --read-only \
                 (BITRIX24_TOOLS, BITRIX24_EXCLUDE_TOOLS, BITRIX24_READ_ONLY). Valid tool names: {}",
                valid_names()
            ));
        }
        Ok(Inventory {
            enabled,
            read_only: self.read_only,
        })
    }
}

/// Splits comma-separated values, trims them, drops empty ones and checks every name.
fn parse_names(option: &str, values: &[String]) -> Result<Vec<ToolKind>, String> {
    let mut kinds = Vec::new();
    let mut unknown = Vec::new();
    for name in values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match ToolKind::from_name(name) {
            Some(k) => kinds.push(k),
            None => unknown.push(format!("`{}`", name.chars().take(64).collect::<String>())),
        }
    }
    if unknown.is_empty() {
        Ok(kinds)
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
        inv.enabled().iter().map(|k| k.name()).collect()
    }

    #[test]
    fn nothing_asked_offers_every_tool_in_order() {
        let inv = sel(false, &[], &[]).resolve().unwrap();
        assert_eq!(inv.enabled(), ToolKind::ALL);
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
            for k in ToolKind::ALL {
                assert!(e.contains(k.name()), "{e}");
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
        assert!(inv.offers(ToolKind::Add) && !inv.offers(ToolKind::Delete));
    }

    #[test]
    fn deny_list_removes_tools() {
        let inv = sel(false, &[], &["task_result_delete", "task_result_update"])
            .resolve()
            .unwrap();
        assert!(!inv.offers(ToolKind::Delete) && !inv.offers(ToolKind::Update));
        assert_eq!(inv.enabled().len(), ToolKind::ALL.len() - 2);
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
        assert!(inv.enabled().iter().all(|k| k.read_only()));
        assert!(inv.offers(ToolKind::List) && inv.offers(ToolKind::ChatMessages));
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
