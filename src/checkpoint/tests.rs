use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::Config;
use keywatch_core::decode::{AuditEvent, Outcome, Source};

const T0: i64 = 1_767_571_200_000;

struct Ev {
    key: String,
    ms: i64,
    src: String,
    origin: u16,
    offset: i64,
    principal: Option<String>,
}

fn audit(e: &Ev) -> AuditEvent<'_> {
    AuditEvent {
        time_ms: e.ms,
        key_id: Cow::Borrowed(&e.key),
        principal: e.principal.as_deref().map(Cow::Borrowed),
        source: Source::parse(Cow::Borrowed(&e.src)),
        user_agent: Some(Cow::Borrowed("aws-cli/2.15.0")),
        action: Some(Cow::Borrowed("s3:GetObject")),
        action_namespace: None,
        outcome: Outcome::Success,
        region: None,
        count: 1,
    }
}

/// Two partitions, 20 keys, 40 days of events; a new network near the end.
fn events() -> Vec<Ev> {
    let mut out = Vec::new();
    let mut offsets = [0i64; 2];
    for i in 0..1200i64 {
        for k in 0..20 {
            let origin = (k % 2) as u16 + 1;
            let offset = offsets[origin as usize - 1];
            offsets[origin as usize - 1] += 1;
            let src = if i == 1199 && k == 3 {
                "185.220.101.7".to_owned()
            } else {
                format!("203.0.113.{}", k)
            };
            out.push(Ev {
                key: format!("AKIA{k:02}"),
                ms: T0 + i * 2_880_000 + k,
                src,
                origin,
                offset,
                principal: None,
            });
        }
    }
    out
}

fn apply(engine: &Engine, evs: &[Ev]) -> usize {
    let mut found = Vec::new();
    for e in evs {
        engine.process_at(
            &audit(e),
            Some(Position {
                origin: e.origin,
                offset: e.offset,
                record: 0,
            }),
            &mut found,
        );
    }
    found.len()
}

fn origins() -> Origins {
    let o = Origins::default();
    assert_eq!(o.index("audit", 0), 1);
    assert_eq!(o.index("audit", 1), 2);
    o
}

/// The live instance: half the events, then the resume offsets are taken,
/// then more events land (on both partitions, some keys) before the copy is
/// made. The copy and the resume offsets, by origin.
fn captured_while_events_flow(cfg: &Config, evs: &[Ev]) -> (Checkpoint, HashMap<u16, i64>) {
    let live = Engine::new(cfg);
    let half = evs.len() / 2;
    apply(&live, &evs[..half]);
    let mut resume = HashMap::new();
    for e in &evs[..half] {
        resume.insert(e.origin, e.offset + 1);
    }
    apply(&live, &evs[half..half + 333]);
    (Checkpoint::capture(&live, &origins(), &resume), resume)
}

/// A new process replays each partition from its resume offset, numbering
/// the partitions through its own `origins`.
fn replay_from(engine: &Engine, origins: &Origins, evs: &[Ev], resume: &HashMap<u16, i64>) {
    let mut found = Vec::new();
    for e in evs.iter().filter(|e| e.offset >= resume[&e.origin]) {
        let origin = origins.index("audit", e.origin as i32 - 1);
        engine.process_at(
            &audit(e),
            Some(Position {
                origin,
                offset: e.offset,
                record: 0,
            }),
            &mut found,
        );
    }
}

fn states(engine: &Engine) -> Vec<(CompactString, KeyState)> {
    let mut s = engine.snapshot(Entity::KeyId);
    s.sort_by(|a, b| a.0.cmp(&b.0));
    s
}

#[test]
fn a_checkpoint_taken_while_events_flow_restores_exactly_once() {
    let cfg = Config::default();
    let evs = events();
    let straight = Engine::new(&cfg);
    let findings = apply(&straight, &evs);
    assert!(findings >= 1, "the new network is found");

    let (cp, resume) = captured_while_events_flow(&cfg, &evs);
    let bytes = format::encode(&cp).unwrap();

    // A new process: restore, then replay each partition from its offset.
    let restored = Engine::new(&cfg);
    let origins2 = Origins::default();
    let resume2 = format::decode(&bytes)
        .unwrap()
        .restore(&restored, &origins2);
    assert_eq!(resume2[&("audit".to_owned(), 0)], resume[&1]);
    replay_from(&restored, &origins2, &evs, &resume);
    assert!(
        restored
            .stats()
            .replayed
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the events applied after the resume offsets were skipped, not applied twice"
    );
    let (a, b) = (states(&straight), states(&restored));
    assert_eq!(a.len(), b.len());
    for ((ka, sa), (kb, sb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        assert_eq!(sa.events, sb.events, "{ka}: every event counted once");
        assert_eq!(sa.last_seen, sb.last_seen, "{ka}");
        assert_eq!(sa.sources, sb.sources, "{ka}");
        assert_eq!(sa.rate, sb.rate, "{ka}");
    }
}

#[test]
fn a_key_dormant_across_a_restore_is_still_revived() {
    let cfg = Config::default();
    let engine = Engine::new(&cfg);
    apply(&engine, &events()[..400]);
    let cp = Checkpoint::capture(&engine, &Origins::default(), &HashMap::new());
    let restored = Engine::new(&cfg);
    format::decode(&format::encode(&cp).unwrap())
        .unwrap()
        .restore(&restored, &Origins::default());
    let late = Ev {
        key: "AKIA05".into(),
        ms: T0 + 80 * 86_400_000,
        src: "203.0.113.5".into(),
        origin: 2,
        offset: 10_000,
        principal: None,
    };
    let mut found = Vec::new();
    restored.process(&audit(&late), &mut found);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0].detector,
        keywatch_core::engine::Detector::DormantRevival
    );
}

fn small() -> Checkpoint {
    let engine = Engine::new(&Config::default());
    apply(&engine, &events()[..100]);
    Checkpoint::capture(&engine, &origins(), &HashMap::from([(1, 50), (2, 50)]))
}

/// Found by the checkpoint fuzz target: a header stating a body of
/// u64::MAX bytes overflowed the size put in the error (a panic in debug).
#[test]
fn a_body_length_past_any_file_is_truncation() {
    let mut bytes = format::encode(&small()).unwrap();
    bytes[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    match format::decode(&bytes) {
        Err(CheckpointError::Truncated { have, want }) => {
            assert_eq!((have, want), (bytes.len(), usize::MAX));
        }
        other => panic!("{other:?}"),
    }
    // The fuzzer's input itself (after its mode byte).
    let crash = b"KWCHKPT\0\0\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
    assert!(matches!(
        format::decode(crash),
        Err(CheckpointError::Truncated { .. })
    ));
}

#[test]
fn corruption_is_detected() {
    let cp = small();
    let bytes = format::encode(&cp).unwrap();
    assert_eq!(format::decode(&bytes).unwrap(), cp, "round trip");
    let mut flipped = bytes.clone();
    let i = flipped.len() / 2;
    flipped[i] ^= 0x40;
    assert!(matches!(
        format::decode(&flipped),
        Err(CheckpointError::Checksum { .. })
    ));
    assert!(matches!(
        format::decode(&bytes[..bytes.len() - 7]),
        Err(CheckpointError::Truncated { .. })
    ));
    assert!(matches!(
        format::decode(&bytes[..10]),
        Err(CheckpointError::Truncated { .. })
    ));
    assert!(matches!(
        format::decode(b"PK\x03\x04 a zip file......."),
        Err(CheckpointError::BadMagic)
    ));
    let mut future = bytes.clone();
    let next = format::FORMAT_VERSION + 1;
    future[8..12].copy_from_slice(&next.to_le_bytes());
    let err = format::decode(&future).unwrap_err().to_string();
    assert!(
        err.contains(&format!("version {next}")) && err.contains("upgrade"),
        "{err}"
    );
}

#[test]
fn the_store_keeps_the_last_n_and_falls_back_past_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 2).unwrap();
    let mut cp = small();
    for t in [1_000, 2_000, 3_000] {
        cp.written_at_ms = t;
        store.write(&cp).unwrap();
    }
    let files = store.list();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[1]
        .to_string_lossy()
        .ends_with("checkpoint-0000000003000.kwc"));
    let newest = &files[1];
    let len = std::fs::metadata(newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(newest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (path, loaded) = store.load_newest().unwrap();
    assert_eq!(path, files[0]);
    assert_eq!(loaded.written_at_ms, 2_000);
    assert!(!dir.path().read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}

/// The v1 file committed in tests/data must stay readable by every later
/// version of keywatch.
#[test]
fn format_version_1_stays_readable() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoint-v1.kwc");
    // Written by the first-wave keywatch (format 1); its per-key state is
    // read through `engine::legacy` and keeps what today's models use.
    let cp = load(&path).unwrap();
    assert_eq!(cp.written_at_ms, 1_767_571_200_000);
    assert_eq!(cp.key_count(), 20);
    let sections: Vec<_> = cp
        .sections
        .iter()
        .map(|s| (s.topic.as_str(), s.partition, s.resume))
        .collect();
    assert_eq!(sections, [("audit", 0, Some(50)), ("audit", 1, Some(50))]);
    let engine = Engine::new(&Config::default());
    cp.restore(&engine, &Origins::default());
    assert_eq!(
        engine.with_key(Entity::KeyId, "AKIA03", |k| k.events),
        Some(5)
    );
    assert_eq!(
        engine.with_key(Entity::KeyId, "AKIA03", |k| k.sources.entries().len()),
        Some(1),
        "its sources carry over"
    );
}

/// A kill during a write leaves a `.tmp` the size of a checkpoint: the next
/// start removes it, and never touches finished checkpoints.
#[test]
fn half_written_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 3).unwrap();
    let done = store.write(&small()).unwrap().path;
    let leftover = dir.path().join(".checkpoint-0000000000001.kwc.tmp");
    std::fs::write(&leftover, vec![0u8; 4096]).unwrap();
    let unrelated = dir.path().join("notes.tmp");
    std::fs::write(&unrelated, b"mine").unwrap();
    let store = Store::open(dir.path(), 3).unwrap();
    assert!(!leftover.exists(), "the half-written checkpoint is gone");
    assert!(unrelated.exists(), "other files are left alone");
    assert_eq!(store.list(), vec![done]);
}

/// A key drawing from more networks than it remembers: every 20 minutes
/// for `days` days, a host of one of 96 /24s.
fn wide_pool(days: i64) -> Vec<Ev> {
    (0..days * 72)
        .map(|i| {
            let net = (i * 37) % 96;
            Ev {
                key: "AKIAPOOL".into(),
                ms: T0 + i * 1_200_000,
                src: format!("100.{}.{net}.{}", 64 + net / 8, 1 + i % 250),
                origin: 1,
                offset: i,
                principal: None,
            }
        })
        .collect()
}

#[test]
fn networks_forgotten_for_room_survive_a_restart_and_version_3_still_reads() {
    let cfg = Config::default();
    let engine = Engine::new(&cfg);
    let mut evs = events();
    evs.extend(wide_pool(30));
    evs.sort_by_key(|e| e.ms);
    apply(&engine, &evs);
    let forgot = |e: &Engine| {
        let at = (T0 / 1000 + 30 * 86_400) as u32;
        e.with_key(Entity::KeyId, "AKIAPOOL", |k| k.returns(at, 30 * 86_400))
            .unwrap()
    };
    let cooling = |e: &Engine| {
        let at = (T0 / 1000 + 40 * 86_400) as u32 - 60;
        e.with_key(Entity::KeyId, "AKIA03", |k| {
            k.cooling(keywatch_core::engine::Detector::NewSource as u8, 0, at)
        })
        .unwrap()
    };
    assert_eq!(forgot(&engine).0, 3, "the pool key came back on 3+ days");
    assert!(cooling(&engine), "AKIA03's new network cools it down");
    let cp = Checkpoint::capture(&engine, &Origins::default(), &HashMap::new());

    // Today's format: every key's state, forgotten networks included.
    let restored = Engine::new(&cfg);
    format::decode(&format::encode(&cp).unwrap())
        .unwrap()
        .restore(&restored, &Origins::default());
    let kept = |e: &Engine| {
        states(e)
            .into_iter()
            .map(|(k, s)| (k, s.events, s.sources, s.rare))
            .collect::<Vec<_>>()
    };
    assert!(kept(&restored) == kept(&engine), "the states differ");
    // So the pool key stays quiet on its next "new" networks.
    let next = wide_pool(31).split_off(30 * 72);
    assert_eq!(apply(&restored, &next), 0);

    // An older file, read into a fresh engine: the rest of every key's
    // state carries over, and the novelty estimate starts anew.
    let upgrade = |old: Vec<u8>| {
        let upgraded = Engine::new(&cfg);
        format::decode(&old)
            .unwrap()
            .restore(&upgraded, &Origins::default());
        assert!(cooling(&upgraded));
        for ((ka, a), (kb, b)) in states(&engine).iter().zip(&states(&upgraded)) {
            assert_eq!(ka, kb);
            assert!(
                (a.events, &a.sources, &a.values, &a.rate)
                    == (b.events, &b.sources, &b.values, &b.rate),
                "{ka}: the state differs"
            );
            assert_eq!(b.novelty, Default::default(), "{ka}");
        }
        upgraded
    };
    // Version 4 (before the novelty estimate and folding runs): forgotten
    // networks included.
    let upgraded = upgrade(format::encode_old::<
        keywatch_core::engine::legacy::KeyStateV4,
    >(&cp, 4));
    assert_eq!(forgot(&upgraded), forgot(&engine));
    // Version 3 (before forgotten networks were kept): the key notes
    // forgotten networks anew.
    let upgraded = upgrade(format::encode_old::<
        keywatch_core::engine::legacy::KeyStateV3,
    >(&cp, 3));
    assert_eq!(forgot(&upgraded), (0, 0));
}

#[test]
fn a_copy_owning_no_partition_never_rotates_out_the_state() {
    // An instance with state on two partitions checkpoints it; restarted,
    // it owns no partition while the group waits for the killed member, and
    // its periodic copies hold nothing. With `keep = 1` any write would
    // remove the good file: none is written, and the state is still there.
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default();
    let engine = Engine::new(&cfg);
    let evs = events();
    apply(&engine, &evs);
    let origins = Arc::new(origins());
    let mut resume = HashMap::new();
    for e in &evs {
        resume.insert(e.origin, e.offset + 1);
    }
    let metrics = Arc::new(keywatch_core::metrics::Metrics::new());
    let start = |engine: Engine, origins: Arc<Origins>| {
        Checkpointer::start(
            Some(Store::open(dir.path(), 1).unwrap()),
            engine,
            origins,
            metrics.clone(),
            Duration::from_secs(3600),
            Arc::new(std::sync::atomic::AtomicI64::new(0)),
        )
        .unwrap()
    };
    start(engine, origins).finish(&resume);
    let store = Store::open(dir.path(), 1).unwrap();
    let (good, cp) = store.load_newest().expect("the first checkpoint");
    assert_eq!(cp.key_count(), 20);

    // Restarted: nothing assigned, nothing applied.
    for _ in 0..3 {
        start(Engine::new(&cfg), Arc::new(Origins::default())).finish(&HashMap::new());
    }
    assert_eq!(
        store.list(),
        vec![good.clone()],
        "the good checkpoint stays"
    );
    assert_eq!(store.load_newest().unwrap().1.key_count(), 20);
    assert_eq!(
        metrics.checkpoints.with_label_values(&["empty"]).get(),
        3,
        "the skipped copies are counted"
    );
}

#[test]
fn principals_across_partitions_restore_exactly_once_whatever_the_partitions_numbers() {
    let cfg = Config::default();
    // Three roles, each holding keys on both partitions.
    let mut evs = events();
    for e in &mut evs {
        let k: usize = e.key[4..].parse().unwrap();
        e.principal = Some(format!("arn:aws:iam::123456789012:role/r{}", k % 3));
    }
    let straight = Engine::new(&cfg);
    apply(&straight, &evs);

    let (cp, resume) = captured_while_events_flow(&cfg, &evs);
    assert_eq!(cp.principal_positions.len(), 3);
    let bytes = format::encode(&cp).unwrap();

    // The new process numbers the partitions the other way round.
    let restored = Engine::new(&cfg);
    let origins2 = Origins::default();
    assert_eq!(origins2.index("audit", 1), 1);
    let resume2 = format::decode(&bytes)
        .unwrap()
        .restore(&restored, &origins2);
    assert_eq!(resume2[&("audit".to_owned(), 1)], resume[&2]);
    replay_from(&restored, &origins2, &evs, &resume);
    let principals = |engine: &Engine| {
        let mut s = engine.snapshot(Entity::Principal);
        s.sort_by(|a, b| a.0.cmp(&b.0));
        s.into_iter()
            .map(|(k, st)| (k, st.events, st.last_seen, st.sources))
            .collect::<Vec<_>>()
    };
    let (a, b) = (principals(&straight), principals(&restored));
    assert_eq!(a.len(), 3);
    assert_eq!(a, b, "every principal counts every event once");
}

#[test]
fn a_version_5_checkpoint_still_reads_and_its_principals_start_without_positions() {
    let cfg = Config::default();
    let engine = Engine::new(&cfg);
    let mut evs = events();
    evs.truncate(400);
    for e in &mut evs {
        e.principal = Some("arn:aws:iam::123456789012:role/r".into());
    }
    apply(&engine, &evs);
    let origins = origins();
    let cp = Checkpoint::capture(&engine, &origins, &HashMap::from([(1, 200), (2, 200)]));
    assert_eq!(
        cp.principal_positions[0].1.len(),
        2,
        "one position per partition"
    );
    let old = format::decode(&format::encode_old::<KeyState>(&cp, 5)).unwrap();
    assert!(old.principal_positions.is_empty());
    assert_eq!(old.sections, cp.sections);
    let restored = Engine::new(&cfg);
    old.restore(&restored, &Origins::default());
    let p = restored.snapshot(Entity::Principal);
    assert_eq!(p[0].1.events, 400);
    assert!(p[0].1.positions().is_empty(), "no stale partition numbers");
}
