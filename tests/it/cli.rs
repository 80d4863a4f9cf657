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
fn incidents_section_is_checked_like_the_others() {
    let o = run(keywatch()
        .args(["check-config", "-c", "config/keywatch.toml"])
        .env("KEYWATCH__INCIDENTS__WINDOW", "30m"));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("[incidents]"), "{text}");
    assert!(text.contains("window = \"30m\""), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    for (section, key, value) in [
        ("window = \"10s\"", "incidents.window", "10s"),
        ("max_open = 0", "incidents.max_open", "0"),
        ("windows = \"1h\"", "windows", "windows"),
    ] {
        std::fs::write(&path, format!("[incidents]\n{section}\n")).unwrap();
        let o = run(keywatch().arg("check-config").arg("-c").arg(&path));
        assert_eq!(o.status.code(), Some(64), "{section}");
        let err = stderr(&o);
        assert!(err.contains(key) && err.contains(value), "{section}: {err}");
    }
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

/// Files and directories left in `dir`.
fn left_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A short demo: the stolen key is found live, every finding is printed
/// once and in event order, none is also logged, and nothing stays in the
/// temporary directory.
#[test]
fn demo_prints_each_finding_once_in_event_order_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(keywatch()
        .args(["demo", "--duration", "50s", "--rate", "0.02", "--keys", "8"])
        .args(["--listen", "127.0.0.1:0"])
        .env("TMPDIR", tmp.path()));
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("Now live") && err.contains("in  20 s  a stolen key"),
        "says what is coming: {err}"
    );
    assert!(!err.contains("detector="), "a finding also logged: {err}");
    assert!(out.contains("── HIGH new_source"), "{out}\n{err}");
    // The demo lists the thieves' networks (a Tor exit list and a threat
    // feed it writes itself): the stolen key's first call is a listed source.
    assert!(
        err.contains("Network intelligence: the demo lists"),
        "{err}"
    );
    assert!(out.contains(" listed_source"), "{out}\n{err}");
    let ids: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("  id         "))
        .collect();
    let unique: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a finding printed twice: {out}");
    let times: Vec<&str> = out
        .lines()
        .filter_map(|l| {
            l.strip_prefix("  time       ")
                .or_else(|| l.strip_prefix("  ").filter(|t| t.starts_with("20")))
        })
        .map(|t| t.split_whitespace().next().unwrap())
        .collect();
    assert!(!times.is_empty());
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "not in event order: {times:?}"
    );
    assert!(
        err.contains("Injected attacks:") && err.contains("caught  by new_source"),
        "{err}"
    );
    // The stolen key's findings are one incident: opened once, printed
    // after its first finding, and summed up under the attack.
    assert!(out.contains(">> incident opened HIGH"), "{out}");
    let stolen = err
        .lines()
        .skip_while(|l| !l.starts_with("Injected attacks:"))
        .skip_while(|l| !l.contains("a stolen key used from a network"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        stolen.contains("as 1 incident: ") && stolen.contains("initial access"),
        "{err}"
    );
    assert_eq!(left_in(tmp.path()), Vec::<String>::new());
}

/// Ctrl-C ends the demo cleanly, its temporary directory removed.
#[test]
fn demo_interrupted_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let child = keywatch()
        .args([
            "demo",
            "--rate",
            "0.02",
            "--keys",
            "8",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(left_in(tmp.path()).len(), 1, "the demo's directory");
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(left_in(tmp.path()), Vec::<String>::new());
}

#[test]
fn demo_on_a_taken_port_names_listen_before_the_banner() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = run(keywatch().args(["demo", "--duration", "5s", "--listen", &addr]));
    assert_eq!(o.status.code(), Some(64));
    let err = stderr(&o);
    assert!(err.contains(&format!("--listen {addr}")), "{err}");
    assert!(!err.contains("Warm-up"), "the banner came first: {err}");
}

#[test]
fn failed_run_leaves_no_checkpoint_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("k.toml"),
        "[kafka]\nbrokers = \"127.0.0.1:1\"\ntopics = [\"audit\"]\nstartup_timeout = \"1s\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let o = run(keywatch()
        .args(["run", "-c", "k.toml"])
        .current_dir(dir.path()));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("127.0.0.1:1"), "{}", stderr(&o));
    assert_eq!(left_in(dir.path()), vec!["k.toml".to_owned()]);
}

#[test]
fn gen_to_an_unreachable_broker_fails_fast_naming_it() {
    let started = std::time::Instant::now();
    let o = run(keywatch().args([
        "gen",
        "--days",
        "1",
        "--keys",
        "1",
        "--brokers",
        "127.0.0.1:1",
        "--topic",
        "t",
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot reach Kafka at 127.0.0.1:1"),
        "{}",
        stderr(&o)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// `gen --inventory` gives `review` something to find in generated events.
#[test]
fn generated_inventory_has_unknown_stale_and_overdue_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (events, inventory) = (dir.path().join("ev.jsonl"), dir.path().join("inv.csv"));
    let o = run(keywatch()
        .args(["gen", "--days", "3", "--keys", "6", "--volume", "0.3", "-o"])
        .arg(&events)
        .arg("--inventory")
        .arg(&inventory));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(keywatch()
        .args(["review", "--format", "json", "--inventory"])
        .arg(&inventory)
        .arg(&events));
    assert!(o.status.success(), "{}", stderr(&o));
    let review: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let count = |field: &str| review[field].as_array().map_or(0, Vec::len);
    assert_eq!(count("unknown"), 2, "{review:#}");
    assert_eq!(count("stale"), 2, "{review:#}");
    assert_eq!(count("rotation_overdue"), 2, "{review:#}");
}

/// `gen --format gcp|azure|okta` writes the fleet of the generic format in
/// that provider's records, and `replay --profile` of each finds what the
/// generic one finds: the same ids, in the same order.
#[test]
fn each_provider_format_replays_to_the_findings_of_its_generic_twin() {
    let dir = tempfile::tempdir().unwrap();
    let findings = |format: &str| {
        let events = dir.path().join(format!("{format}.jsonl"));
        let o = run(keywatch()
            .args(["gen", "--format", format, "--keys", "8", "--days", "50"])
            .args([
                "--volume",
                "0.05",
                "--attacks",
                "--attack-set",
                "classic",
                "-o",
            ])
            .arg(&events));
        assert!(o.status.success(), "{}", stderr(&o));
        let o = run(keywatch()
            .args(["replay", "--profile", format])
            .arg(&events));
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("skipped records: none"),
            "{format}: {}",
            stderr(&o)
        );
        json_lines(&stdout(&o))
            .iter()
            .map(|f| {
                let field = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
                [
                    field("id"),
                    field("detector"),
                    field("key_id"),
                    field("observed_at"),
                ]
            })
            .collect::<Vec<_>>()
    };
    let generic = findings("generic");
    assert!(generic.len() >= 10, "{generic:?}");
    for format in ["gcp", "azure", "okta"] {
        assert_eq!(findings(format), generic, "{format}");
    }
}
