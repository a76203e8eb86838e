//! HTTP throughput: tools/call per second through /mcp (filled in once the HTTP transport lands).

use crate::{Bins, Opts, Row};

pub fn run(_bins: &Bins, _rt: &tokio::runtime::Runtime, _opts: &Opts) -> Vec<Row> {
    vec![]
}
