//! Subcommands other than `aistd data`.

pub(crate) mod audit;
