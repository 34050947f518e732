//! Helpers shared by the CLI tests.

use std::process::{Command, Output};

/// Runs the `aistd` binary with `args`.
pub(crate) fn aistd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aistd"))
        .args(args)
        .output()
        .expect("run aistd")
}

/// Its standard output, after asserting it succeeded (showing both streams if not).
pub(crate) fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
