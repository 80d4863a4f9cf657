//! Exit codes and messages of the commands a user types first.

use crate::helpers::*;

#[test]
fn check_config_prints_the_effective_config() {
    let o = run(keywatch()
        .args(["check-config", "-c", "config/keywatch.toml"])
        .env("KEYWATCH__ENGINE__MAX_KEYS", "12345"));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("max_keys = 12345"),
        "environment applied: {text}"
    );
    assert!(text.contains("[detectors.rate_spike]"), "{text}");
}

#[test]
fn bad_config_exits_64_naming_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[engine]\nlearning_period = \"soon\"\n").unwrap();
    let o = run(keywatch().arg("check-config").arg("-c").arg(&path));
    assert_eq!(o.status.code(), Some(64));
    let err = stderr(&o);
    assert!(
        err.contains("learning_period") && err.contains("soon"),
        "{err}"
    );

    std::fs::write(&path, "[engine]\nmax_keyz = 1\n").unwrap();
    let o = run(keywatch().arg("check-config").arg("-c").arg(&path));
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("max_keyz"), "{}", stderr(&o));

    let o = run(keywatch().args(["check-config", "-c", "/nonexistent.toml"]));
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("/nonexistent.toml"));
}

#[test]
fn bad_env_override_exits_64() {
    let o = run(keywatch()
        .args(["check-config", "-c", "config/keywatch.toml"])
        .env("KEYWATCH__DETECTORS__RATE_SPIKE__MIN_SCORE", "banana"));
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("banana"), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    assert_eq!(run(keywatch().arg("frobnicate")).status.code(), Some(64));
    assert_eq!(run(keywatch().arg("replay")).status.code(), Some(64));
    let o = run(keywatch().arg("--help"));
    assert!(o.status.success());
    assert!(stdout(&o).contains("replay"));
}

#[test]
fn unreadable_input_is_a_runtime_failure() {
    let o = run(keywatch().args(["replay", "/nonexistent/events.jsonl"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/events.jsonl"),
        "{}",
        stderr(&o)
    );
}
