//! Paced burst (filled in once pacing lands).

use crate::{Bins, Opts, Row};

pub fn run(_bins: &Bins, _rt: &tokio::runtime::Runtime, _opts: &Opts) -> Vec<Row> {
    vec![]
}
