//! Subcommands other than `aistd data`.

pub(crate) mod audit;
pub(crate) mod bundle;
pub(crate) mod compliance;
pub(crate) mod drift;
pub(crate) mod jobs;
pub(crate) mod keys;
pub(crate) mod pii;
pub(crate) mod registry;
pub(crate) mod report;
pub(crate) mod sched;
pub(crate) mod serve;
pub(crate) mod serve_bench;
pub(crate) mod train;
