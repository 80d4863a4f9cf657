use std::sync::Arc;

use super::*;
use crate::alert::tests::finding;
use keywatch_core::engine::{Detector, Severity};

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        path: dir.join("findings.db"),
        ..StoreConfig::default()
    }
}

fn at(f: &mut Finding, ms: i64) {
    f.observed_at = keywatch_core::decode::time::format_rfc3339(ms);
    f.id = format!("{:032x}", ms);
}

fn wait_rows(metrics: &Metrics, n: i64) {
    wait_until(&format!("{n} findings stored"), || {
        metrics.store_findings.get() >= n
    });
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
        incident: None,
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

/// A finding large enough that a few dozen need new pages of the file.
fn bulky(i: i64) -> Finding {
    let mut f = finding(
        &format!("AKIAFULL{}", i % 7),
        Detector::NewSource,
        "203.0.113.9",
    );
    at(&mut f, 1_770_100_000_000 + i * 1000);
    f.summary = format!("{i} {}", "x".repeat(3_000));
    f
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_store_that_cannot_write_holds_its_findings_and_stores_them_all_when_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let (store, writer) = FindingsStore::open(&config(dir.path()), metrics.clone(), None).unwrap();
    for i in 0..2 {
        store.record(&bulky(i));
    }
    wait_rows(&metrics, 2);
    assert_eq!(store.behind(), None);

    // The file may not grow: SQLite answers "database or disk is full".
    store.limit_pages(1);
    for i in 2..60 {
        store.record(&bulky(i));
    }
    wait_until("the store to say it is behind", || store.behind().is_some());
    let behind = store.behind().unwrap();
    assert!(behind.error.contains("full"), "{behind:?}");
    assert!(behind.unwritten > 0 && behind.unwritten <= 58, "{behind:?}");
    assert!(metrics.store_findings.get() < 60);
    assert!(metrics.store_writes.with_label_values(&["failed"]).get() > 0);

    // Room again: every finding is written, none dropped, nothing waits.
    store.limit_pages(0);
    wait_rows(&metrics, 60);
    wait_until("the store to catch up", || store.behind().is_none());
    assert_eq!(metrics.store_unwritten.get(), 0);
    assert_eq!(metrics.store_dropped.get(), 0);
    let page = store
        .query(&FindingsQuery {
            limit: 100,
            ..FindingsQuery::default()
        })
        .unwrap();
    assert_eq!(page.findings.len(), 60);
    drop(writer);
}

#[test]
fn past_the_queue_bound_findings_are_dropped_and_counted_never_lost_silently() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let cfg = StoreConfig {
        queue: 5,
        ..config(dir.path())
    };
    let (store, writer) = FindingsStore::open(&cfg, metrics.clone(), None).unwrap();
    store.record(&bulky(0));
    wait_rows(&metrics, 1);
    store.limit_pages(1);
    for i in 1..40 {
        store.record(&bulky(i));
        // Let the writer take its batch and fail on it.
        if i == 8 {
            wait_until("a failed write", || store.behind().is_some());
        }
    }
    let dropped = metrics.store_dropped.get();
    assert!(dropped > 0, "a queue of 5 cannot hold 39 findings");
    store.limit_pages(0);
    wait_until("the store to catch up", || {
        metrics.store_unwritten.get() == 0 && store.behind().is_none()
    });
    // Each finding is either stored or counted as dropped.
    assert_eq!(metrics.store_findings.get() + dropped as i64, 40);
    drop(writer);
}

#[test]
fn stopped_while_it_cannot_write_it_keeps_them_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let metrics = Arc::new(Metrics::new());
    let (store, writer) = FindingsStore::open(&cfg, metrics.clone(), None).unwrap();
    store.record(&bulky(0));
    wait_rows(&metrics, 1);
    store.limit_pages(1);
    for i in 1..30 {
        store.record(&bulky(i));
    }
    wait_until("a failed write", || store.behind().is_some());
    drop(store);
    drop(writer);
    assert_eq!(metrics.store_dropped.get(), 0);
    let spill = spill_path(&cfg.path);
    let kept = std::fs::read_to_string(&spill).unwrap().lines().count();
    assert_eq!(kept as i64 + metrics.store_findings.get(), 30);

    // The next start stores them first, and the file goes.
    let metrics = Arc::new(Metrics::new());
    let (store, writer) = FindingsStore::open(&cfg, metrics.clone(), None).unwrap();
    wait_rows(&metrics, 30);
    wait_until("the spill file to go", || !spill.exists());
    assert_eq!(
        store.get(&bulky(29).id).unwrap().0.finding.summary,
        bulky(29).summary
    );
    assert_eq!(metrics.store_unwritten.get(), 0);
    drop(writer);
}

#[test]
fn a_damaged_store_is_moved_aside_and_rebuilt_from_what_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    {
        let metrics = Arc::new(Metrics::new());
        let (store, writer) = FindingsStore::open(&cfg, metrics.clone(), None).unwrap();
        for i in 0..600 {
            store.record(&bulky(i));
        }
        wait_rows(&metrics, 600);
        drop(store);
        drop(writer);
    }
    // Garbage over 16 KiB in the middle of the file (a bad sector, a
    // torn copy).
    let mut bytes = std::fs::read(&cfg.path).unwrap();
    let mid = bytes.len() / 2 / 4096 * 4096;
    for b in &mut bytes[mid..mid + 16_384] {
        *b = 0xA5;
    }
    std::fs::write(&cfg.path, &bytes).unwrap();

    let metrics = Arc::new(Metrics::new());
    let (store, writer) = FindingsStore::open(&cfg, metrics.clone(), None).unwrap();
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".damaged-") && !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the damaged file is kept beside, for a closer look"
    );
    let kept = metrics.store_findings.get();
    assert!(
        (560..600).contains(&kept),
        "the rows outside the damaged pages are kept: {kept}"
    );
    // A working store: new findings go in, and every row reads.
    store.record(&bulky(1_000));
    wait_rows(&metrics, kept + 1);
    let page = store
        .query(&FindingsQuery {
            limit: 1_000,
            ..FindingsQuery::default()
        })
        .unwrap();
    assert_eq!(page.findings.len() as i64, kept + 1);
    drop(store);
    drop(writer);

    // Not a database at all: an empty store, the file kept aside.
    std::fs::write(&cfg.path, vec![0x42u8; 10_000]).unwrap();
    let metrics = Arc::new(Metrics::new());
    let (_store, _writer) = FindingsStore::open(&cfg, metrics.clone(), None).unwrap();
    assert_eq!(metrics.store_findings.get(), 0);
}

#[test]
fn a_runs_record_keeps_the_latest_evidence_and_counts_its_updates() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let (store, writer) = FindingsStore::open(&config(dir.path()), metrics.clone(), None).unwrap();
    let mut f = finding("AKIAFOLD", Detector::NewSource, "198.51.100.7");
    f.folded = Some(keywatch_core::engine::Folded {
        run_since: "2026-02-01T00:00:00.000Z".into(),
        raised: 2,
        folded: 1,
    });
    store.record(&f);
    wait_rows(&metrics, 1);
    f.summary = "the latest, from 185.220.101.7".into();
    f.folded.as_mut().unwrap().folded = 2;
    store.record(&f);
    wait_until("the update", || {
        metrics.store_writes.with_label_values(&["repeated"]).get() == 1
    });
    let (stored, _) = store.get(&f.id).unwrap();
    assert_eq!(stored.repeats, 2);
    assert_eq!(stored.finding.summary, "the latest, from 185.220.101.7");
    assert_eq!(stored.finding.folded.unwrap().folded, 2);
    drop(writer);
}

/// Another instance's incident events, read from the findings topic, keep
/// the incident's newest revision, however late an older one arrives; this
/// instance's own incident is stored the same way.
#[test]
fn incidents_keep_their_newest_revision_from_every_instance() {
    use crate::alert::IncidentAlert;
    use keywatch_core::incident::{Filter, IncidentsConfig, Status as IncidentStatus, Tracker};

    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let (store, writer) = FindingsStore::open(&config(dir.path()), metrics.clone(), None).unwrap();
    let mut tracker = Tracker::new(&IncidentsConfig::default(), true);
    let mut first = finding("AKIAOTHER", Detector::NewSource, "198.51.100.8");
    at(&mut first, 1_770_000_000_000);
    let mut second = finding("AKIAOTHER", Detector::NewAction, "198.51.100.8");
    at(&mut second, 1_770_000_060_000);
    let opened = tracker.observe(&first).events.remove(0);
    let updated = tracker.observe(&second).events.remove(0);
    let resolved = tracker.resolve_all().remove(0);
    let redactor = crate::alert::Redactor::new(&Default::default()).unwrap();
    let payload = |e: &keywatch_core::incident::IncidentEvent| {
        serde_json::to_vec(&IncidentAlert::from_event(e, None, &redactor)).unwrap()
    };
    let item = |e, offset| Ingested {
        finding: None,
        incident: super::ingest::incident_of(Some(&payload(e))),
        team: None,
        stored_ms: now_ms(),
        topic: "findings".into(),
        partition: 0,
        offset,
    };
    assert!(store.ingest(item(&opened, 1)));
    assert!(store.ingest(item(&resolved, 2)));
    assert!(store.ingest(item(&updated, 3)), "late and older: ignored");
    drop(writer);

    let all = store.incidents(&Filter::default(), 10).unwrap();
    assert_eq!(all.len(), 1);
    let incident = &all[0];
    assert_eq!(incident.id, opened.incident.id);
    assert_eq!(incident.status, IncidentStatus::Resolved);
    assert_eq!(incident.findings, 2);
    assert_eq!(incident.last_seen_ms(), 1_770_000_060_000);
    let open = Filter {
        status: Some(IncidentStatus::Open),
        ..Filter::default()
    };
    assert!(store.incidents(&open, 10).unwrap().is_empty());
    let (_, findings) = store.incident(&incident.id).unwrap();
    assert!(
        findings.is_empty(),
        "the findings themselves were not on the topic"
    );
    assert!(matches!(
        store.incident("nope"),
        Err(StoreError::NotFound(_))
    ));
}

/// A restart in the middle of an attack: the incident open when the process
/// stopped is taken back from the store, so the next finding joins it under
/// its id (one incident, one page) instead of opening a second one.
#[test]
fn an_incident_open_at_a_restart_takes_the_next_finding_under_its_id() {
    use crate::alert::Incidents;
    use keywatch_core::incident::{Change, Filter, IncidentsConfig, Status as IncidentStatus};

    let dir = tempfile::tempdir().unwrap();
    let cfg = IncidentsConfig::default();
    let mut first = finding("AKIARESTART", Detector::NewSource, "198.51.100.8");
    at(&mut first, 1_770_000_000_000);
    let mut second = finding("AKIARESTART", Detector::NewAction, "198.51.100.8");
    at(&mut second, 1_770_000_060_000);
    let open = Filter {
        status: Some(IncidentStatus::Open),
        ..Filter::default()
    };
    let opened_id = {
        let metrics = Arc::new(Metrics::new());
        let (store, writer) =
            FindingsStore::open(&config(dir.path()), metrics.clone(), None).unwrap();
        let incidents = Incidents::new(&cfg, true, metrics.clone());
        let observed = incidents.observe(&first, None);
        assert_eq!(observed.events[0].change, Change::Opened);
        for e in &observed.events {
            store.record_incident(&e.incident);
        }
        wait_until("the incident stored", || {
            store.incidents(&open, 10).unwrap().len() == 1
        });
        drop(writer);
        observed.incident_id
    };

    // Started again on the same store.
    let metrics = Arc::new(Metrics::new());
    let (store, writer) = FindingsStore::open(&config(dir.path()), metrics.clone(), None).unwrap();
    let incidents = Incidents::new(&cfg, true, metrics.clone());
    crate::daemon::restore_incidents(&store, &incidents, cfg.max_open);
    assert_eq!(metrics.incidents_open.get(), 1);
    assert!(
        incidents.get(&opened_id).is_some(),
        "listed by the API again"
    );
    let observed = incidents.observe(&second, None);
    assert_eq!(observed.incident_id, opened_id, "the same incident");
    assert_ne!(observed.events[0].change, Change::Opened);
    assert_eq!(observed.events[0].incident.findings, 2);
    assert!(
        incidents.observe(&first, None).events.is_empty(),
        "the first finding found again while catching up changes nothing"
    );
    // Without it, the same finding would have opened a second incident.
    let forgetful = Incidents::new(&cfg, true, Arc::new(Metrics::new()));
    let fresh = forgetful.observe(&second, None);
    assert_eq!(fresh.events[0].change, Change::Opened);
    assert_ne!(fresh.incident_id, opened_id);
    drop(writer);
}
