use super::*;

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keywatch.toml");
    std::fs::write(&path, toml).unwrap();
    Config::load_with_env(
        Some(&path),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

/// Loads `toml` (with `env`), which must be refused with an error naming
/// every one of `wants` (the key, its value, what would fit).
fn assert_refused(toml: &str, env: &[(&str, &str)], wants: &[&str]) {
    let err = load(toml, env).unwrap_err().to_string();
    for want in wants {
        assert!(err.contains(want), "{toml}: {err} lacks {want}");
    }
}

#[test]
fn empty_file_gives_defaults() {
    let cfg = load("", &[]).unwrap();
    assert_eq!(cfg, Config::default());
    assert_eq!(cfg.engine.learning_period, HumanDuration::days(7));
}

#[test]
fn file_values_and_env_overrides() {
    let cfg = load(
        r#"
[engine]
max_keys = 5000
learning_period = "3d"
forget_after = "10d"
allowlist_networks = ["10.0.0.0/8"]

[detectors.rate_spike]
min_count = 50
"#,
        &[
            ("KEYWATCH__ENGINE__MAX_KEYS", "9000"),
            ("KEYWATCH__DETECTORS__RATE_SPIKE__MIN_SCORE", "0.9999"),
            ("KEYWATCH__DETECTORS__DORMANT_REVIVAL__DORMANT_AFTER", "60d"),
        ],
    )
    .unwrap();
    assert_eq!(cfg.engine.max_keys, 9000, "environment wins over the file");
    assert_eq!(cfg.engine.learning_period, HumanDuration::days(3));
    assert_eq!(cfg.detectors.rate_spike.min_count, 50);
    assert_eq!(cfg.detectors.rate_spike.min_score, 0.9999);
    assert!(cfg.detectors.rate_spike.enabled, "unset keys keep defaults");
    assert_eq!(
        cfg.detectors.dormant_revival.dormant_after,
        HumanDuration::days(60)
    );
    assert_eq!(cfg.engine.allowlist_networks.len(), 1);
}

#[test]
fn unknown_keys_are_named() {
    let err = load("[engine]\nmax_kyes = 5\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_kyes"), "{err}");
    let err = load("[enigne]\n", &[]).unwrap_err().to_string();
    assert!(err.contains("enigne"), "{err}");
    let err = load("[detectors.rate_spike]\nratoi = 2.0\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("ratoi"), "{err}");
}

#[test]
fn bad_values_are_named_with_their_value() {
    for (toml, wants) in [
        (
            "[engine]\nlearning_period = \"7x\"\n",
            &["7x", "learning_period"][..],
        ),
        ("[engine]\nmax_keys = \"lots\"\n", &["lots", "max_keys"]),
        (
            "[engine]\nallowlist_networks = [\"10.0.0.0/33\"]\n",
            &["10.0.0.0/33"],
        ),
        (
            "[detectors.rate_spike]\nmin_score = 1.5\n",
            &["detectors.rate_spike.min_score", "1.5"],
        ),
        (
            "[detectors.new_source]\nalone_below = 1.5\n",
            &["detectors.new_source.alone_below", "1.5"],
        ),
        (
            "[detectors.new_source]\ncorroborate_within = \"0s\"\n",
            &["detectors.new_source.corroborate_within", "0s"],
        ),
        (
            "[detectors.error_spike]\naccept_after = \"1h\"\n",
            &["detectors.error_spike.accept_after", "1h"],
        ),
        (
            "[kafka]\napply_threads = 65\n",
            &["kafka.apply_threads", "65"],
        ),
        // The removed key is an error.
        ("[detectors.rate_spike]\nratio = 3.0\n", &["ratio"]),
        (
            "[detectors.rate_spike]\nbucket = \"7m\"\n",
            &["bucket", "7m"],
        ),
        (
            "[engine]\nlearning_period = \"30d\"\nforget_after = \"7d\"\n",
            &["engine.forget_after", "learning_period"],
        ),
        (
            "[decode]\nprofile = \"splunk\"\n",
            &["splunk", "decode.profile"],
        ),
    ] {
        assert_refused(toml, &[], wants);
    }
    assert_refused(
        "",
        &[("KEYWATCH__ENGINE__MAX_KEYS", "-3")],
        &["-3", "max_keys"],
    );
    let cfg = load("[kafka]\napply_threads = 3\n", &[]).unwrap();
    assert_eq!(cfg.kafka.apply_lanes(), 3);
    // Three apply threads and the polling thread's own pipeline; one apply
    // thread is the polling thread itself.
    assert_eq!(cfg.kafka.pipelines(), 4);
    let cfg = load("[kafka]\napply_threads = 1\n", &[]).unwrap();
    assert_eq!(cfg.kafka.pipelines(), 1);
}

#[test]
fn custom_profile_in_config() {
    let cfg = load(
        r#"
[decode]
profile = "edge"

[decode.profiles.edge]
extends = "generic"
key_id = ["/auth/key"]
"#,
        &[],
    )
    .unwrap();
    assert_eq!(cfg.decode.profile, "edge");
    let err = load(
        "[decode.profiles.edge]\nextends = \"generic\"\nkey = [\"/k\"]\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("key"), "{err}");
}

#[test]
fn missing_file_is_named() {
    let err = Config::load_with_env(Some(Path::new("/nonexistent/kw.toml")), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/kw.toml"), "{err}");
}

#[test]
fn effective_config_round_trips() {
    let cfg = Config::default();
    let text = cfg.to_toml();
    let back: Config = toml::from_str(&text).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn documented_example_is_the_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/keywatch.toml");
    let cfg = Config::load_with_env(Some(&path), Vec::new()).unwrap();
    assert_eq!(
        cfg,
        Config::default(),
        "config/keywatch.toml documents the defaults"
    );
}

#[test]
fn kafka_security_is_checked_and_secrets_masked() {
    std::env::set_var("KEYWATCH_TEST_KAFKA_PW", "s3cret-pw");
    let cfg = load(
        r#"
[kafka]
brokers = "b1:9093,b2:9093"
security_protocol = "sasl_ssl"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "kw"
sasl_password = "env:KEYWATCH_TEST_KAFKA_PW"
[kafka.properties]
"fetch.wait.max.ms" = "100"
"#,
        &[],
    )
    .unwrap();
    let props = cfg.kafka.client_properties();
    assert!(props.contains(&("sasl.password".into(), "s3cret-pw".into())));
    assert!(props.contains(&("sasl.mechanism".into(), "SCRAM-SHA-512".into())));
    let shown = cfg.to_toml();
    assert!(!shown.contains("s3cret-pw"), "{shown}");
    assert!(shown.contains("env:KEYWATCH_TEST_KAFKA_PW"), "{shown}");

    let err = load("[kafka]\nsecurity_protocol = \"sasl_ssl\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("kafka.sasl_mechanism"), "{err}");
    let err = load("[kafka]\nsasl_mechanism = \"PLAIN\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kafka.sasl_mechanism") && err.contains("PLAIN"),
        "{err}"
    );
    let err = load("[kafka]\nsasl_mechanism = \"GSSAPI\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("GSSAPI"), "{err}");
    let err = load("[kafka]\ntopics = []\n", &[]).unwrap_err().to_string();
    assert!(err.contains("kafka.topics"), "{err}");
    let err = load(
        "[kafka.properties]\n\"enable.auto.offset.store\" = \"true\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("enable.auto.offset.store"), "{err}");
    let cfg = load("", &[("KEYWATCH__KAFKA__TOPICS", "a,b")]).unwrap();
    assert_eq!(cfg.kafka.topics, ["a", "b"]);
}

/// A token that resolves empty (an unset-but-declared variable, an empty
/// file) would let requests without `Authorization` write: refused by name.
#[test]
fn an_empty_or_short_api_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("token");
    std::fs::write(&empty, "\n").unwrap();
    let err = load(
        &format!("[http]\napi_token = \"file:{}\"\n", empty.display()),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("http.api_token") && err.contains("0 characters"),
        "{err}"
    );
    assert!(!err.contains("\n\n"), "{err}");
    let err = load("[http]\napi_token = \"short\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 16"), "{err}");
    assert!(
        !err.contains("short"),
        "the token itself is never printed: {err}"
    );
    assert!(load("[http]\napi_token = \"a-token-long-enough\"\n", &[]).is_ok());
}

#[test]
fn errors_name_the_file_once_and_keep_their_dots() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keywatch.toml");
    let shown = path.display().to_string();

    std::fs::write(&path, "[engine\nmax_keys = 1\n").unwrap();
    let err = Config::load_with_env(Some(&path), [])
        .unwrap_err()
        .to_string();
    assert_eq!(err.matches("keywatch.toml").count(), 1, "{err}");
    assert!(err.starts_with(&shown), "{err}");

    std::fs::write(
        &path,
        "[[alerts.sinks]]\nname = \"x\"\ntype = \"stdout\"\nmin_severity = \"urgent\"\n",
    )
    .unwrap();
    let err = Config::load_with_env(Some(&path), [])
        .unwrap_err()
        .to_string();
    assert!(err.contains("alerts.sinks[0].min_severity"), "{err}");

    std::fs::write(&path, "[engine]\nmax_keys = 0\n").unwrap();
    let err = Config::load_with_env(Some(&path), [])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&shown) && err.contains("engine.max_keys"),
        "{err}"
    );

    let err = Config::load_with_env(Some(dir.path()), [])
        .unwrap_err()
        .to_string();
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn inline_credentials_are_not_printed() {
    let cfg = load(
        r#"
[kafka.properties]
"sasl.password" = "pl41n-pw"
"fetch.wait.max.ms" = "100"
[[alerts.sinks]]
name = "hook"
type = "webhook"
url = "https://kw:hunter2@hooks.example.com/in?token=t0ken"
"#,
        &[],
    )
    .unwrap();
    let shown = cfg.to_toml();
    for secret in ["pl41n-pw", "hunter2", "t0ken"] {
        assert!(!shown.contains(secret), "{secret} shown in:\n{shown}");
    }
    assert!(shown.contains("hooks.example.com/in"), "{shown}");
    assert!(shown.contains("\"100\""), "{shown}");
}

#[test]
fn the_findings_topic_must_be_a_kafka_sinks_topic_with_a_store() {
    let sink = "[[alerts.sinks]]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopic = \"keywatch-findings\"\n";
    let err = load(
        &format!("[store]\nfindings_topic = \"keywatch-findings\"\n{sink}"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("store.findings_topic") && err.contains("store.path"),
        "{err}"
    );
    let err = load(
        &format!("[store]\npath = \"f.db\"\nfindings_topic = \"findings\"\n{sink}"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("store.findings_topic")
            && err.contains("\"findings\"")
            && err.contains("kafka"),
        "{err}"
    );
    let cfg = load(
        &format!("[store]\npath = \"f.db\"\nfindings_topic = \"keywatch-findings\"\n{sink}"),
        &[],
    )
    .unwrap();
    assert_eq!(cfg.findings_sink().unwrap().brokers, "127.0.0.1:9092");
}

#[test]
fn a_sink_format_is_checked_naming_the_key_and_value() {
    let cfg = load(
        "[[alerts.sinks]]\ntype = \"file\"\npath = \"/tmp/kw-alerts.jsonl\"\nformat = \"ocsf\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        cfg.alerts.sinks[0].format,
        crate::alert::format::AlertFormat::Ocsf
    );
    assert!(cfg.to_toml().contains("format = \"ocsf\""));
    let err = load(
        "[[alerts.sinks]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nformat = \"splunk\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("alerts.sinks[0].format") && err.contains("splunk"),
        "{err}"
    );
    let err = load(
        "[[alerts.sinks]]\ntype = \"slack\"\nurl = \"http://127.0.0.1:9/\"\nformat = \"ecs\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("alerts.sinks[0].format") && err.contains("\"ecs\"") && err.contains("slack"),
        "{err}"
    );
}

#[test]
fn a_splunk_hec_token_is_never_printed_and_must_be_given() {
    let cfg = load(
        "[[alerts.sinks]]\ntype = \"splunk_hec\"\nurl = \"http://127.0.0.1:8088\"\ntoken = \"hec-s3cret-t0ken\"\nacknowledgements = true\n",
        &[],
    )
    .unwrap();
    assert!(!cfg.to_toml().contains("hec-s3cret-t0ken"));
    let err = load(
        "[[alerts.sinks]]\ntype = \"splunk_hec\"\nurl = \"http://127.0.0.1:8088\"\ntoken = \" \"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("alerts.sinks[0].token"), "{err}");
}

#[test]
fn lifecycle_sections_name_key_and_value() {
    for (text, wants) in [
        (
            "[review]\nevery = \"fortnightly\"\n",
            &["review.every", "fortnightly", "monthly"][..],
        ),
        (
            "[review]\nevery = \"30d\"\n",
            &["review.every", "30days", "inventory.path"][..],
        ),
        (
            "[inventory]\npath = \"k.csv\"\n[[response]]\nname = \"a\"\ndry_run = false\n[response.aws_deactivate_key]\naccess_key_id = \"a\"\nsecret_access_key = \"b\"\n",
            &["store.path", "dry_run = false"][..],
        ),
        (
            "[[response]]\nname = \"a\"\n",
            &["response[0]", "\"a\"", "exactly one action"][..],
        ),
        (
            "[[response]]\nname = \"a\"\nmax_per_hour = 0\n[response.webhook]\nurl = \"http://127.0.0.1:9/\"\n",
            &["response[0].max_per_hour", "0"][..],
        ),
        (
            "[inventory]\npath = \"k.json\"\ncredential_report = \"r.csv\"\n",
            &["inventory.credential_report", "r.csv", "format = \"aws\""][..],
        ),
        (
            "[inventory]\npath = \"keys.txt\"\nformat = \"keywatch\"\n",
            &["inventory.path", "keys.txt", "format = \"aws\""][..],
        ),
    ] {
        assert_refused(text, &[], wants);
    }
    let ok = load(
        "[inventory]\npath = \"keys.json\"\nformat = \"aws\"\ncredential_report = \"report.csv\"\nowners = \"owners.csv\"\n[[inventory.sources]]\npath = \"gcp.json\"\nformat = \"gcp\"\n[review]\nevery = \"monthly\"\n[[response]]\nname = \"rehearsal\"\n[response.aws_deactivate_key]\naccess_key_id = \"a\"\nsecret_access_key = \"b\"\n",
        &[],
    )
    .unwrap();
    assert!(
        ok.response[0].dry_run,
        "a rule is a dry run unless switched"
    );
    assert_eq!(ok.inventory.sources().unwrap().paths().len(), 4);
}
