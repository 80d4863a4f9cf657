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

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn generic_lines(key: &str, n: u32) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"time\":\"2026-01-05T10:{:02}:{:02}Z\",\"key_id\":\"{key}\",\"source\":\"203.0.113.1\"}}\n",
                i / 60,
                i % 60
            )
        })
        .collect()
}

/// Truncated, corrupt and padded gzip files and a missing one are each
/// reported by name and reason; the others are replayed; exit 1 at the end.
#[test]
fn broken_files_are_reported_and_the_rest_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("good.jsonl"), generic_lines("AKIAGOOD", 30)).unwrap();
    let whole = gz(generic_lines("AKIAGZ", 3000).as_bytes());
    std::fs::write(dir.join("truncated.json.gz"), &whole[..whole.len() / 2]).unwrap();
    let mut bad_crc = whole.clone();
    let at = bad_crc.len() - 8;
    bad_crc[at] ^= 0xff;
    std::fs::write(dir.join("badcrc.json.gz"), &bad_crc).unwrap();
    let mut padded = whole.clone();
    padded.extend_from_slice(b"trailing garbage");
    std::fs::write(dir.join("padded.json.gz"), &padded).unwrap();
    let o = run(keywatch()
        .arg("replay")
        .arg(dir)
        .arg(dir.join("missing.jsonl")));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("failed files: 4"), "{err}");
    for name in [
        "truncated.json.gz",
        "badcrc.json.gz",
        "padded.json.gz",
        "missing.jsonl",
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(name) && l.contains("events read before")),
            "{name} not reported: {err}"
        );
    }
    assert!(err.contains("key_id tracked: 2"), "{err}");
    let replayed: u64 = err
        .split("replayed ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    // The good file, and what the broken copies held before they broke.
    assert!(replayed >= 30 + 2 * 3000, "{err}");
    assert!(
        !err.contains('\r'),
        "no progress line off a terminal: {err}"
    );
}

#[test]
fn a_gzip_bomb_fails_naming_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let bomb = tmp.path().join("bomb.json.gz");
    std::fs::write(&bomb, gz(&vec![b' '; 16 << 20])).unwrap();
    let good = tmp.path().join("good.jsonl");
    std::fs::write(&good, generic_lines("AKIAGOOD", 5)).unwrap();
    let o = run(keywatch()
        .args(["replay", "--max-decompressed", "1MiB"])
        .arg(&bomb)
        .arg(&good));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("replayed 5 events"), "{err}");
    assert!(
        err.contains(
            "bomb.json.gz: decompressed size passed the limit of 1 MiB (--max-decompressed)"
        ),
        "{err}"
    );
}

#[test]
fn a_wrong_profile_is_named_with_one_that_fits() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("generic.jsonl");
    std::fs::write(&path, generic_lines("AKIA1", 200)).unwrap();
    let o = run(keywatch()
        .args(["replay", "--profile", "cloudtrail"])
        .arg(&path));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning: 200 of 200 records were skipped as no_key with profile `cloudtrail`; profile `generic` decodes 200 of 200 sampled records: try --profile generic"),
        "{err}"
    );
    let right = run(keywatch()
        .args(["replay", "--profile", "generic"])
        .arg(&path));
    assert!(!stderr(&right).contains("warning"), "{}", stderr(&right));
}

#[test]
fn keys_refused_by_max_keys_are_counted_as_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("many.jsonl");
    let text: String = (0..5)
        .map(|k| generic_lines(&format!("AKIA{k}"), 4))
        .collect();
    std::fs::write(&path, text).unwrap();
    let o = run(keywatch()
        .env("KEYWATCH__ENGINE__MAX_KEYS", "2")
        .arg("replay")
        .arg(&path));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("refused by engine.max_keys = 2: 3 new key ids and 0 new principals (12 events not tracked for them)"),
        "{err}"
    );
}
