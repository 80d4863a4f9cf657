//! The network memory (which networks, owners and places a key was used
//! from) survives a restart: through a checkpoint, in today's format and
//! from one written before the memory was kept, and through changelog
//! chunks, old ones included. The scenarios and fixtures are the core's
//! (`keywatch_core::netintel::testing`).

use keywatch_core::netintel::testing::*;

use keywatch_core::engine::{Detector, Engine, Severity};

/// Checkpoints `engine` and restores it into a new enriched engine, as a
/// restart does: in today's format, or (`old_format`) as a keywatch that
/// did not checkpoint the network memory wrote it.
fn restart(learned: &Engine, old_format: bool) -> Engine {
    use crate::checkpoint::{format, Checkpoint, Origins};
    let cp = Checkpoint::capture(learned, &Origins::default(), &Default::default());
    let bytes = if old_format {
        format::encode_old::<keywatch_core::engine::legacy::KeyStateV2>(&cp, 2)
    } else {
        format::encode(&cp).unwrap()
    };
    let restored = engine(true);
    format::decode(&bytes)
        .unwrap()
        .restore(&restored, &Origins::default());
    restored
}

#[test]
fn after_a_restart_a_key_is_judged_by_the_networks_it_had_learned() {
    let engine = engine(true);
    let found = run_on(&engine, two_offices("AKIAOFFICES", 10));
    assert!(found.is_empty(), "{found:#?}");
    let next = T0 + 10 * DAY + 9 * HOUR;
    let same_day = || {
        vec![
            ev(next, "AKIAOFFICES", "81.0.7.12"),
            ev(next + HOUR / 2, "AKIAOFFICES", "24.0.3.3"),
        ]
    };

    // Restored from a checkpoint: the usual day raises nothing.
    let restored = restart(&engine, false);
    let view = restored
        .explain(crate::config::Entity::KeyId, "AKIAOFFICES")
        .unwrap();
    assert_eq!(view["network"]["countries"].as_array().unwrap().len(), 2);
    let found = run_on(&restored, same_day());
    assert!(found.is_empty(), "{found:#?}");

    // A checkpoint of a keywatch that did not keep the memory still loads;
    // the key has forgotten its second country, and the same day reads as
    // impossible travel: what keeping the memory is for.
    let forgetful = restart(&engine, true);
    assert!(forgetful
        .explain(crate::config::Entity::KeyId, "AKIAOFFICES")
        .is_some());
    let found = run_on(&forgetful, same_day());
    assert_eq!(
        of(&found, Detector::ImpossibleTravel).len(),
        1,
        "{found:#?}"
    );
}

#[test]
fn after_a_restart_a_new_country_is_still_found_from_the_first_use() {
    let engine = engine(true);
    let events = settled_in_berlin("AKIARESTART", 10);
    let last = events.last().unwrap().t;
    run_on(&engine, events);
    let restored = restart(&engine, false);
    // The first use after the restart, from Sydney an hour after Berlin.
    let found = run_on(&restored, vec![ev(last + HOUR, "AKIARESTART", "101.0.0.5")]);
    let travel = of(&found, Detector::ImpossibleTravel);
    assert_eq!(travel.len(), 1, "{found:#?}");
    assert_eq!(
        travel[0].evidence.observed["from"]["place"]["city"],
        "Berlin"
    );
    let new = of(&found, Detector::NewSource);
    assert_eq!(new.len(), 1, "{found:#?}");
    assert_eq!(new[0].severity, Severity::High);
    assert!(new[0].evidence.observed["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "new_country"));
}

#[test]
fn after_a_restart_a_workload_credential_outside_the_cloud_is_still_found() {
    let role = "arn:aws:sts::123456789012:assumed-role/app-server/i-0abc";
    let engine = engine(true);
    let mut events = Vec::new();
    for i in 0..48 {
        let mut e = ev(
            T0 + i * HOUR,
            &format!("ASIARESTART{i:04}"),
            &format!("3.81.{}.{}", i % 7, 10 + i % 50),
        );
        e.principal = Some(role.to_owned());
        events.push(e);
    }
    run_on(&engine, events);
    let stolen = || {
        let mut e = ev(T0 + 48 * HOUR + 600, "ASIARESTART0047", "24.0.3.3");
        e.principal = Some(role.to_owned());
        vec![e]
    };
    let found = run_on(&restart(&engine, false), stolen());
    assert_eq!(
        of(&found, Detector::CloudCredentialOutsideCloud).len(),
        1,
        "{found:#?}"
    );
    // Without the memory the role would have to prove itself a cloud one again.
    let found = run_on(&restart(&engine, true), stolen());
    assert!(of(&found, Detector::CloudCredentialOutsideCloud).is_empty());
}

#[test]
fn the_network_memory_travels_in_changelog_chunks_and_old_chunks_still_read() {
    use crate::changelog::format::{self, ChunkHeader, Entry, EntryRef, EntryV3};
    use keywatch_core::engine::legacy::{KeyStateV2, KeyStateV3, KeyStateV4};
    let engine = engine(true);
    run_on(&engine, settled_in_berlin("AKIACHUNK", 3));
    let (key, state) = engine.snapshot(crate::config::Entity::KeyId).pop().unwrap();
    assert!(state.net.is_some());
    let header = |entries| ChunkHeader {
        topic: "audit".into(),
        partition: 0,
        snapshot: 1,
        index: 0,
        count: 1,
        resume: 10,
        written_at_ms: 1,
        entries,
        group: "g".into(),
    };
    let body = postcard::to_stdvec(&EntryRef::Key(&key, &state)).unwrap();
    let chunk = format::encode_chunk(&header(1), &body).unwrap();
    let (h, rest) = format::decode_header(&chunk).unwrap();
    let got = format::decode_entries(rest, h.entries, format::version_of(&chunk)).unwrap();
    assert_eq!(got, vec![Entry::Key(key.clone(), state.clone())]);

    // An older chunk of `version`, holding `old`, read back.
    let read_old = |version: u32, old: Vec<u8>| {
        let mut body = postcard::to_stdvec(&header(1)).unwrap();
        body.extend(old);
        let mut chunk = format::MAGIC.to_vec();
        chunk.extend(version.to_le_bytes());
        chunk.extend(crc32fast::hash(&body).to_le_bytes());
        chunk.extend(&body);
        let (h, rest) = format::decode_header(&chunk).unwrap();
        format::decode_entries(rest, h.entries, version).unwrap()
    };

    // A version 3 chunk (no memory) reads, with an empty memory.
    let old = EntryV3::Key(key.clone(), KeyStateV2::from(state.clone()));
    let got = read_old(3, postcard::to_stdvec(&old).unwrap());
    let Entry::Key(k, s) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(k, &key);
    assert!(s.net.is_none());
    assert_eq!((s.events, s.first_seen), (state.events, state.first_seen));

    // Chunks of versions 4 (before forgotten networks were kept) and 5
    // (before the novelty estimate) read whole, network memory included;
    // the novelty estimate starts anew.
    let mut anew = state.clone();
    anew.novelty = Default::default();
    let old = format::EntryV4::Key(key.clone(), KeyStateV3::from(state.clone()));
    let got = read_old(4, postcard::to_stdvec(&old).unwrap());
    assert_eq!(
        got,
        vec![Entry::Key(key.clone(), anew.clone())],
        "nothing forgotten to drop"
    );
    let old = format::EntryV5::Key(key.clone(), KeyStateV4::from(state.clone()));
    let got = read_old(5, postcard::to_stdvec(&old).unwrap());
    assert_eq!(got, vec![Entry::Key(key, anew)]);
}
