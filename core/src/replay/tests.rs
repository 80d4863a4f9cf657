use std::io::Write;

use super::*;
use crate::gen::{Format, GenConfig, Scenario};

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Replays `inputs` with `opts`, and again with two jobs (files opened,
/// decompressed and decoded off the merging thread): both must read,
/// skip, fail and find exactly the same.
fn run_with(opts: &Options, inputs: &[Input]) -> (Summary, Vec<String>) {
    let one = run_jobs(opts, inputs);
    let two = run_jobs(
        &Options {
            jobs: if opts.jobs == 2 { 1 } else { 2 },
            ..opts.clone()
        },
        inputs,
    );
    let read = |s: &Summary| {
        format!(
            "messages {} events {} skipped {:?} errors {:?} failed {:?} late {} by {} span {:?}",
            s.messages,
            s.events,
            s.skipped,
            s.decode_errors,
            s.failed,
            s.late,
            s.late_by_ms,
            s.span_ms
        )
    };
    assert_eq!(
        read(&one.0),
        read(&two.0),
        "jobs {} and the other",
        opts.jobs
    );
    assert_eq!(one.1, two.1, "the same findings in the same order");
    one
}

fn run_jobs(opts: &Options, inputs: &[Input]) -> (Summary, Vec<String>) {
    let cfg = Config::default();
    let mut found = Vec::new();
    let summary = replay_into(&Engine::new(&cfg), &cfg, opts, inputs, |f| {
        found.push(serde_json::to_string(f).unwrap());
        Ok(())
    })
    .unwrap();
    (summary, found)
}

fn run(inputs: &[Input]) -> Summary {
    run_with(&Options::default(), inputs).0
}

fn ev(minute: u32, key: &str) -> String {
    let time = crate::decode::time::format_rfc3339(1_767_607_200_000 + i64::from(minute) * 60_000);
    format!(r#"{{"time":"{time}","key_id":"{key}","source":"203.0.113.1"}}"#)
}

#[test]
fn layouts() {
    let one = |s: &str| run(&[Input::bytes("t", s.as_bytes().to_vec())]);
    let e1 = ev(0, "a");
    let e2 = ev(1, "a");
    let jsonl = one(&format!("{e1}\n{e2}\n\n"));
    assert_eq!((jsonl.messages, jsonl.events), (2, 2));
    let array = one(&format!("[{e1},\n{e2}]"));
    assert_eq!((array.messages, array.events), (1, 2));
    let records = one(&format!("{{\n  \"Records\": [\n {e1},\n {e2}\n ]\n}}\n"));
    assert_eq!((records.messages, records.events), (1, 2));
    let pretty = one("{\n  \"time\": \"2026-01-05T10:00:00Z\",\n  \"key_id\": \"k\"\n}\n");
    assert_eq!((pretty.messages, pretty.events), (1, 1));
    assert_eq!(one(&e1).events, 1);
    assert_eq!(one("  \n ").messages, 0);
    // A broken line stays one bad message, the rest are read.
    let broken = one(&format!("{e1}\n{{\"a\":\n{e2}"));
    assert_eq!((broken.messages, broken.events), (3, 2));
    assert_eq!(broken.decode_errors.get("truncated"), Some(&1));
}

#[test]
fn a_broken_first_line_is_one_bad_record_of_a_json_lines_file() {
    let mut text = String::from("{\"time\":\"2026-01-05T10:00:00Z\",\"key_id\":\"AKIA\n");
    for m in 0..1000 {
        text.push_str(&ev(m, "AKIA1"));
        text.push('\n');
    }
    let s = run(&[Input::bytes("t", text.into_bytes())]);
    assert_eq!(s.events, 1000, "{}", s.render());
    assert_eq!(s.decode_errors.values().sum::<u64>(), 1, "{}", s.render());
}

#[test]
fn gzip_is_detected_and_a_document_larger_than_the_head_streams() {
    // One line of about 3 MiB (as CloudTrail writes its files): read as a
    // document, record by record.
    let records: Vec<String> = (0..40_000).map(|m| ev(m % 600, "AKIA1")).collect();
    let doc = format!("{{\"Records\":[{}]}}", records.join(","));
    assert!(doc.len() > 2 << 20);
    let s = run(&[Input::bytes("t.json.gz", gz(doc.as_bytes()))]);
    assert_eq!((s.messages, s.events), (1, 40_000), "{}", s.render());
    assert!(s.failed.is_empty());
}

#[test]
fn a_document_read_whole_and_one_streamed_give_the_same_events() {
    // The same values, a few bytes apart (read whole) and padded past the
    // size read whole (streamed): concatenated documents, then one broken.
    let doc = |gap: &str| {
        let records = |from: u32| {
            let r: Vec<String> = (from..from + 50).map(|m| ev(m, "AKIA1")).collect();
            format!("{{\"Records\":[{}]}}", r.join(","))
        };
        format!(
            "{}{gap}{}{gap}[{}]{gap}{{\"Records\":[{},",
            records(0),
            records(50),
            ev(100, "AKIA2"),
            ev(101, "AKIA3")
        )
    };
    let small = doc("\n");
    let large = doc(&" ".repeat(100 << 10));
    assert!(small.len() < 64 << 10 && large.len() > 64 << 10);
    let summary = |text: &str| {
        let s = run(&[Input::bytes("t.json.gz", gz(text.as_bytes()))]);
        (
            s.messages,
            s.events,
            s.decode_errors.clone(),
            s.failed.len(),
        )
    };
    let whole = summary(&small);
    assert_eq!(whole, summary(&large));
    assert_eq!((whole.0, whole.1), (4, 102), "{whole:?}");
    assert_eq!(
        whole.2.values().sum::<u64>(),
        1,
        "the broken last document: {whole:?}"
    );
}

#[test]
fn sizes_parse_and_print() {
    assert_eq!("4GiB".parse::<ByteSize>(), Ok(ByteSize(4 << 30)));
    assert_eq!("500 MB".parse::<ByteSize>(), Ok(ByteSize(500_000_000)));
    assert_eq!("1024".parse::<ByteSize>(), Ok(ByteSize(1024)));
    assert!("0".parse::<ByteSize>().is_err());
    assert!("4 parsecs".parse::<ByteSize>().is_err());
    assert_eq!(ByteSize(4 << 30).to_string(), "4 GiB");
    assert_eq!(ByteSize(1536).to_string(), "1.5 KiB");
}

#[test]
fn a_gzip_bomb_is_one_failed_file_naming_the_limit() {
    let bomb = gz(&vec![b' '; 8 << 20]);
    let good = ev(0, "AKIA1").into_bytes();
    let opts = Options {
        max_decompressed: 1 << 20,
        ..Options::default()
    };
    let (s, _) = run_with(
        &opts,
        &[
            Input::bytes("bomb.json.gz", bomb),
            Input::bytes("good", good),
        ],
    );
    assert_eq!(s.events, 1);
    assert_eq!(s.failed.len(), 1, "{}", s.render());
    assert_eq!(s.failed[0].name, "bomb.json.gz");
    assert!(
        s.failed[0].reason.contains("1 MiB (--max-decompressed)"),
        "{}",
        s.failed[0].reason
    );
}

#[test]
fn events_later_than_the_window_are_applied_and_counted() {
    let mut text = String::new();
    for m in 0..120 {
        text.push_str(&ev(m, "AKIA1"));
        text.push('\n');
    }
    // 10 minutes late: within the window. 100 minutes late: beyond it.
    text.push_str(&ev(110, "AKIA2"));
    text.push('\n');
    text.push_str(&ev(20, "AKIA3"));
    text.push('\n');
    let s = run(&[Input::bytes("t", text.into_bytes())]);
    assert_eq!(s.events, 122);
    assert_eq!(s.late, 1, "{}", s.render());
    assert_eq!(s.late_by_ms, 99 * 60_000);
    assert!(
        s.render()
            .contains("late events: 1 more than the reorder window"),
        "{}",
        s.render()
    );
}

/// The same events, whole and sorted (what replay did before it streamed).
fn sorted_replay(cfg: &Config, files: &[Vec<u8>]) -> Vec<String> {
    let decoder = Decoder::for_profile(&cfg.decode.profile, &cfg.decode.profiles).unwrap();
    let mut events = Vec::new();
    for f in files {
        for line in f.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            decoder
                .decode(line, |r| {
                    if let Ok(e) = r {
                        events.push(e)
                    }
                })
                .unwrap();
        }
    }
    events.sort_by_key(|e| e.time_ms);
    let engine = Engine::new(cfg);
    let mut out = Vec::new();
    let mut found = Vec::new();
    for e in &events {
        engine.process(e, &mut found);
        out.extend(found.drain(..).map(|f| serde_json::to_string(&f).unwrap()));
    }
    out
}

#[test]
fn streaming_finds_what_sorting_everything_finds() {
    let scenario = Scenario::new(GenConfig {
        keys: 8,
        days: 45,
        volume: 0.05,
        format: Format::Generic,
        ..GenConfig::default()
    });
    // Four files, by key, each in time order but shuffled within 10 minutes;
    // the first one also gzip: a fleet's logs as a collector writes them.
    let mut files = vec![Vec::new(); 4];
    let mut shuffle = Vec::new();
    let mut events = 0;
    for e in scenario.events() {
        let f = (xxhash_rust::xxh3::xxh3_64(e.key_id.as_bytes()) % 4) as usize;
        shuffle.push((f, e.time_ms, e.json));
        events += 1;
    }
    let mut rng = 7u64;
    for i in 1..shuffle.len() {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = i - 1;
        let (a, b) = (&shuffle[j], &shuffle[i]);
        if (rng >> 33) % 3 == 0 && a.0 == b.0 && b.1 - a.1 < 10 * 60_000 {
            shuffle.swap(j, i);
        }
    }
    for (f, _, json) in &shuffle {
        files[*f].extend_from_slice(json.as_bytes());
        files[*f].push(b'\n');
    }
    let cfg = Config::default();
    let expected = sorted_replay(&cfg, &files);
    assert!(expected.len() >= 10, "a fleet with findings");
    let inputs: Vec<Input> = files
        .iter()
        .enumerate()
        .map(|(i, f)| match i {
            0 => Input::bytes(format!("f{i}.jsonl.gz"), gz(f)),
            _ => Input::bytes(format!("f{i}.jsonl"), f.clone()),
        })
        .collect();
    for jobs in [1, 3] {
        let opts = Options {
            jobs,
            ..Options::default()
        };
        let (s, found) = run_with(&opts, &inputs);
        assert_eq!(s.events, events);
        assert_eq!(s.late, 0);
        assert_eq!(
            found, expected,
            "jobs {jobs}: same findings in the same order"
        );
        // Memory: the window holds minutes of traffic, not the history.
        assert!(
            s.peak_held < 4 * 1024 + 2_000,
            "held {} of {events}",
            s.peak_held
        );
    }
}

#[test]
fn directories_are_walked_and_non_event_files_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let day = dir
        .path()
        .join("AWSLogs/111122223333/CloudTrail/eu-west-1/2026/01/05");
    let digest = dir
        .path()
        .join("AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2026/01/05");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::create_dir_all(&digest).unwrap();
    let record = |m: u32| {
        format!(
            r#"{{"eventTime":"2026-01-05T10:{m:02}:00Z","eventName":"ListUsers","eventSource":"iam.amazonaws.com","sourceIPAddress":"203.0.113.1","userIdentity":{{"accessKeyId":"AKIA1"}}}}"#
        )
    };
    for (name, minutes) in [("b_1005Z.json.gz", 5..10), ("a_1000Z.json.gz", 0..5)] {
        let doc = format!(
            "{{\"Records\":[{}]}}",
            minutes.map(record).collect::<Vec<_>>().join(",")
        );
        std::fs::write(day.join(name), gz(doc.as_bytes())).unwrap();
    }
    std::fs::write(digest.join("d.json.gz"), gz(b"{\"digestEndTime\":1}")).unwrap();
    std::fs::write(day.join("README.md"), "not events").unwrap();
    let mut cfg = Config::default();
    cfg.decode.profile = "cloudtrail".into();
    let s = replay_into(
        &Engine::new(&cfg),
        &cfg,
        &Options::default(),
        &[Input::path(dir.path())],
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!((s.files, s.events, s.late), (2, 10, 0), "{}", s.render());
    assert_eq!(s.not_events.len(), 2, "{:?}", s.not_events);
    assert!(s.skipped.is_empty(), "{}", s.render());
}
