//! `keywatch replay` end to end.

use std::io::Write;

use crate::helpers::*;

#[test]
fn hostile_lines_are_counted_and_the_rest_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("mixed.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        r#"{{"time":"2026-01-05T10:00:00Z","key_id":"AKIAGOOD1","source":"203.0.113.1"}}"#
    )
    .unwrap();
    writeln!(f, r#"{{"time":"2026-01-05T10:00:01Z","key_id":"AKIAGOOD1""#).unwrap();
    f.write_all(b"{\"time\":\"2026-01-05T10:00:02Z\",\"key_id\":\"\xff\xfe\"}\n")
        .unwrap();
    writeln!(
        f,
        r#"{{"time":"2026-01-05T10:00:03Z","key_id":{{"deep":[[[[1]]]]}}}}"#
    )
    .unwrap();
    writeln!(
        f,
        r#"{{"time":"2026-01-05T10:00:04Z","key_id":"{}"}}"#,
        "K".repeat(100 * 1024)
    )
    .unwrap();
    writeln!(
        f,
        r#"{{"time":"2026-01-05T10:00:05Z","key_id":"AKIAGOOD2","user_agent":"{}"}}"#,
        "u".repeat(10 << 20)
    )
    .unwrap();
    writeln!(f, "{}", "[".repeat(100_000)).unwrap();
    writeln!(
        f,
        r#"{{"time":"2026-01-05T10:00:06Z","source":"203.0.113.1"}}"#
    )
    .unwrap();
    writeln!(
        f,
        r#"{{"time":"2026-01-05T10:00:07Z","key_id":"AKIAGOOD1","source":"203.0.113.1"}}"#
    )
    .unwrap();
    drop(f);
    let o = run(keywatch().arg("replay").arg(&path));
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("replayed 3 events"), "{err}");
    assert!(err.contains("key_id tracked: 2"), "{err}");
    for reason in [
        "truncated 2",
        "invalid_utf8 1",
        "wrong_type 1",
        "key_too_long 1",
        "no_key 1",
    ] {
        assert!(err.contains(reason), "{reason} missing from: {err}");
    }
}

#[test]
fn stdin_and_cloudtrail_files() {
    let doc = r#"{"Records":[
      {"eventTime":"2026-01-05T10:00:00Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers",
       "sourceIPAddress":"AWS Internal","userIdentity":{"accessKeyId":"AKIA1"}},
      {"eventTime":"2026-01-05T09:00:00Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt",
       "sourceIPAddress":"kms.amazonaws.com","userIdentity":{"type":"AWSService"}}]}"#;
    let mut child = keywatch()
        .args(["replay", "--profile", "cloudtrail", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("replayed 1 events"), "{}", stderr(&o));
    assert!(stderr(&o).contains("no_key 1"), "{}", stderr(&o));
}

/// A warm start: a replay writes its state as a checkpoint; a daemon
/// restoring it knows the keys' baselines and dormancy from day one.
#[test]
fn replay_writes_a_checkpoint_a_daemon_can_start_from() {
    let dir = tempfile::tempdir().unwrap();
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scenario.jsonl.gz");
    let o = run(keywatch()
        .arg("replay")
        .arg(&data)
        .arg("--write-checkpoint")
        .arg(dir.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("checkpoint of 22 keys written"),
        "{}",
        stderr(&o)
    );
    let store = keywatch::checkpoint::Store::open(dir.path(), 3).unwrap();
    let (_, cp) = store.load_newest().unwrap();
    let engine = keywatch::engine::Engine::new(&keywatch::config::Config::default());
    cp.restore(&engine, &keywatch::checkpoint::Origins::default());
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.with_file_name("truth.json")).unwrap()).unwrap();
    for key in truth["normal_keys"].as_object().unwrap().keys() {
        let learned = engine.explain(keywatch::config::Entity::KeyId, key);
        let learned = learned.unwrap_or_else(|| panic!("{key} restored"));
        let enough = learned["events"].as_u64().unwrap() >= 20;
        assert_eq!(
            learned["eligible"], enough,
            "{key}: past learning iff 20 events: {learned}"
        );
    }
}
