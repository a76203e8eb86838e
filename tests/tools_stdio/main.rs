//! The stdio server end to end, one module per area: the MCP protocol over stdio, the
//! tools against the sandbox, stdout carrying only JSON-RPC, a corpus of odd JSON-RPC,
//! what clients and models see (schemas, `initialize`, error texts: insta snapshots),
//! finding a task (search, get, completion of task ids), tool selection, prompts and
//! resources, chat messages, limits and retries, a hostile portal, property tests, the
//! portal's language, the unlimited plan, metrics over stdio, the audit trail of a webhook's
//! writes, and the opt-in check against a real portal (`live`, ignored).

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod chat_messages;
mod client_view;
mod hostile_portal;
mod jsonrpc_corpus;
mod limits;
mod live;
mod metrics_stdio;
mod plan_unlimited;
mod portal_language;
mod prompts_resources;
mod properties;
mod schema_snapshots;
mod stdio_protocol;
mod stdio_tools;
mod stdout_purity;
mod task_lookup;
mod tool_selection;
