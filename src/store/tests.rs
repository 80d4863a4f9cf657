use std::sync::Arc;

use super::*;
use crate::alert::tests::finding;
use crate::engine::{Detector, Severity};

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        path: dir.join("findings.db"),
        ..StoreConfig::default()
    }
}

fn at(f: &mut Finding, ms: i64) {
    f.observed_at = crate::decode::time::format_rfc3339(ms);
    f.id = format!("{:032x}", ms);
}

fn wait_rows(metrics: &Metrics, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics.store_findings.get() < n {
        assert!(
            Instant::now() < deadline,
            "the writer stored {} of {n}",
            metrics.store_findings.get()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn findings_are_stored_once_and_filtered_by_every_column() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let (store, writer) = FindingsStore::open(&config(dir.path()), metrics.clone(), None).unwrap();
    for i in 0..30i64 {
        let detector = if i % 3 == 0 {
            Detector::RateSpike
        } else {
            Detector::NewSource
        };
        let mut f = finding(&format!("AKIA{}", i % 5), detector, "203.0.113.9");
        at(&mut f, 1_770_000_000_000 + i * 1000);
        f.severity = if i % 2 == 0 {
            Severity::High
        } else {
            Severity::Low
        };
        store.record(&f);
        if i == 7 {
            // The same finding again: a repeat, not a second row.
            store.record(&f);
        }
    }
    wait_rows(&metrics, 30);
    drop(writer);
    assert_eq!(
        metrics.store_writes.with_label_values(&["repeated"]).get(),
        1
    );

    let q = |q: FindingsQuery| store.query(&FindingsQuery { limit: 100, ..q }).unwrap();
    assert_eq!(q(FindingsQuery::default()).findings.len(), 30);
    let by_key = q(FindingsQuery {
        key_id: Some("AKIA2".into()),
        ..Default::default()
    });
    assert_eq!(by_key.findings.len(), 6);
    assert!(by_key.findings.iter().all(|f| f.finding.key_id == "AKIA2"));
    let rate = q(FindingsQuery {
        detector: Some(Detector::RateSpike),
        ..Default::default()
    });
    assert_eq!(rate.findings.len(), 10);
    let high = q(FindingsQuery {
        severity: Some(Severity::High),
        ..Default::default()
    });
    assert_eq!(high.findings.len(), 15);
    let window = q(FindingsQuery {
        since_ms: Some(1_770_000_010_000),
        until_ms: Some(1_770_000_020_000),
        ..Default::default()
    });
    assert_eq!(window.findings.len(), 10);
    // Newest first, and the repeat counted on its row.
    let all = q(FindingsQuery::default()).findings;
    assert!(all[0].finding.observed_at > all[1].finding.observed_at);
    assert_eq!(
        all.iter().find(|f| f.repeats == 2).unwrap().finding.id,
        format!("{:032x}", 1_770_000_007_000i64)
    );

    // Pages by cursor cover everything once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(&FindingsQuery {
                limit: 7,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .unwrap();
        seen.extend(page.findings.iter().map(|f| f.finding.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 30);
}

#[test]
fn statuses_and_the_audit_trail_survive_a_reopen_without_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let (store, writer) = FindingsStore::open(&config(dir.path()), metrics.clone(), None).unwrap();
    let f = finding("AKIAOPS", Detector::NewSource, "203.0.113.9");
    store.store_now(&f).unwrap();
    let actor = Actor {
        who: "alice".into(),
        remote: "127.0.0.1:5000".into(),
        user_agent: "curl/8".into(),
    };
    store
        .set_status(
            &f.id,
            Status::Acknowledged,
            Some("alice"),
            Some("looking"),
            &actor,
        )
        .unwrap();
    assert!(matches!(
        store.set_status("nope", Status::Resolved, None, None, &actor),
        Err(StoreError::NotFound(_))
    ));
    // As a crash would leave it: nothing closed, nothing flushed by hand.
    std::mem::forget(store);
    std::mem::forget(writer);

    let (store, _writer) =
        FindingsStore::open(&config(dir.path()), Arc::new(Metrics::new()), None).unwrap();
    let (got, trail) = store.get(&f.id).unwrap();
    assert_eq!(got.status, Status::Acknowledged);
    assert_eq!(got.assignee.as_deref(), Some("alice"));
    let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["status", "assignee", "note"]);
    assert_eq!(trail[0].actor, actor);
    let by_status = store
        .query(&FindingsQuery {
            status: Some(Status::Acknowledged),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_status.findings.len(), 1);
}

#[test]
fn the_oldest_go_past_max_rows() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let cfg = StoreConfig {
        max_rows: 10,
        ..config(dir.path())
    };
    let (store, writer) = FindingsStore::open(&cfg, metrics.clone(), None).unwrap();
    for i in 0..25i64 {
        let mut f = finding("AKIA1", Detector::NewSource, "203.0.113.9");
        at(&mut f, 1_770_000_000_000 + i);
        store.record(&f);
    }
    drop(writer);
    drop(store);
    let (store, _w) = FindingsStore::open(&cfg, metrics.clone(), None).unwrap();
    let all = store
        .query(&FindingsQuery {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.findings.len(), 10, "pruned at start");
    assert_eq!(
        metrics.store_pruned.with_label_values(&["max_rows"]).get(),
        15
    );
}

#[test]
fn findings_of_other_instances_are_stored_once_and_the_position_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let (store, writer) = FindingsStore::open(&config(dir.path()), metrics.clone(), None).unwrap();
    let mut own = finding("AKIAOWN", Detector::NewSource, "198.51.100.7");
    at(&mut own, 1_770_000_000_000);
    let mut other = finding("AKIAOTHER", Detector::NewSource, "198.51.100.8");
    at(&mut other, 1_770_000_001_000);
    let item = |f: Option<&Finding>, offset: i64| Ingested {
        finding: f.cloned(),
        team: Some("blue".into()),
        stored_ms: now_ms() - 60_000,
        topic: "findings".into(),
        partition: 1,
        offset,
    };
    // This instance's own finding, then its copy from the topic; another
    // instance's finding delivered twice; a message that held none.
    store.record(&own);
    assert!(store.ingest(item(Some(&own), 10)));
    assert!(store.ingest(item(Some(&other), 11)));
    assert!(store.ingest(item(Some(&other), 12)));
    assert!(store.ingest(item(None, 13)));
    drop(writer);

    let all = store
        .query(&FindingsQuery {
            limit: 100,
            ..Default::default()
        })
        .unwrap()
        .findings;
    assert_eq!(all.len(), 2, "one row per finding id");
    let own_row = all.iter().find(|f| f.finding.key_id == "AKIAOWN").unwrap();
    assert_eq!(own_row.repeats, 1, "the topic's copy is not a repeat");
    let other_row = all
        .iter()
        .find(|f| f.finding.key_id == "AKIAOTHER")
        .unwrap();
    assert_eq!(other_row.team.as_deref(), Some("blue"));
    assert_eq!(other_row.status, Status::Open);
    let ingested = |r: &str| metrics.store_ingested.with_label_values(&[r]).get();
    assert_eq!((ingested("inserted"), ingested("known")), (1, 2));
    assert_eq!(metrics.store_findings.get(), 2);

    // Reopened: reading resumes after the last message.
    drop(store);
    let (store, _writer) =
        FindingsStore::open(&config(dir.path()), Arc::new(Metrics::new()), None).unwrap();
    assert_eq!(
        store.ingest_offsets("findings").unwrap(),
        std::collections::HashMap::from([(1, 14)])
    );
    assert!(store.ingest_offsets("other").unwrap().is_empty());
}
