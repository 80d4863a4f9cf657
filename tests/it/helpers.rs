//! Shared helpers: run the binary, find the shared data set, write files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The built `keywatch` binary.
pub fn keywatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keywatch"));
    cmd.env_remove("KEYWATCH_LOG").stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYWATCH__") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs a command to completion.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("keywatch runs")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `../shared/data/NAME` beside the checkout. Under `CI=true` a missing
/// folder fails the test; otherwise the test says it is skipped (a user's
/// clone has no `../shared`).
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{} is missing under CI=true", dir.display());
    }
    eprintln!(
        "skipped: {} not found (it sits beside the checkout in CI)",
        dir.display()
    );
    None
}

/// Parses JSON Lines output.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}
