//! The response worker's safeguards against a real HTTP receiver on
//! 127.0.0.1 (a webhook action): the hourly limit, one action per key,
//! dry runs that send nothing, retries only for failures that may pass,
//! and a failed key held rather than retried by every new finding.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use tokio_util::sync::CancellationToken;

use super::config::ResponseRule;
use super::Responder;
use crate::alert::tests::finding;
use keywatch_core::engine::Detector;
use keywatch_core::metrics::Metrics;

/// Each request: its `webhook-id` and `webhook-signature`, and its body.
type Got = Arc<Mutex<Vec<(String, String, String)>>>;

/// A receiver that records each request and answers 403 for bodies naming
/// `K403`, 503 for `K503`, 200 otherwise.
async fn receiver() -> (String, Got) {
    let got: Got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: String| {
        let keep = keep.clone();
        async move {
            let header = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            keep.lock().unwrap().push((
                header("webhook-id"),
                header("webhook-signature"),
                body.clone(),
            ));
            if body.contains("K403") {
                StatusCode::FORBIDDEN
            } else if body.contains("K503") {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/revoke", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn rule(url: &str, extra: &str) -> ResponseRule {
    let text = format!(
        "name = \"revoker\"\ndetectors = [\"expired_key\"]\n{extra}\n[webhook]\nurl = \"{url}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
    );
    toml::from_str(&text).unwrap()
}

fn count(m: &Metrics, result: &str) -> u64 {
    m.response_actions
        .with_label_values(&["webhook", result])
        .get()
}

/// Waits until the results add up to `n` decisions.
async fn decisions(m: &Metrics, n: u64) {
    let all = [
        "ok",
        "failed",
        "dry_run",
        "rate_limited",
        "never_touch",
        "already_done",
        "held",
    ];
    for _ in 0..200 {
        if all.iter().map(|r| count(m, r)).sum::<u64>() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} decisions were made");
}

fn start(rule: ResponseRule, metrics: &Arc<Metrics>) -> Responder {
    Responder::start(
        vec![rule],
        None,
        None,
        metrics.clone(),
        CancellationToken::new(),
    )
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn an_hourly_limit_and_one_action_per_key() {
    let (url, got) = receiver().await;
    let metrics = Arc::new(Metrics::new());
    let r = start(rule(&url, "dry_run = false\nmax_per_hour = 2"), &metrics);
    // Not a detector the rule names: nothing happens.
    r.detected(&finding("K1", Detector::NewSource, "198.51.100.7"));
    for key in ["K1", "K1", "K2", "K3"] {
        r.detected(&finding(key, Detector::ExpiredKey, "198.51.100.7"));
    }
    decisions(&metrics, 4).await;
    assert_eq!(count(&metrics, "ok"), 2);
    assert_eq!(count(&metrics, "already_done"), 1, "K1 once");
    assert_eq!(count(&metrics, "rate_limited"), 1, "K3 past the limit");
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].2.contains("\"key_id\":\"K1\"") && got[1].2.contains("\"key_id\":\"K2\""));
    assert!(
        got.iter().all(|(_, sig, _)| sig.starts_with("v1,")),
        "signed: {got:?}"
    );
}

#[tokio::test]
async fn a_dry_run_sends_nothing() {
    let (url, got) = receiver().await;
    let metrics = Arc::new(Metrics::new());
    let r = start(rule(&url, ""), &metrics);
    r.detected(&finding("K1", Detector::ExpiredKey, "198.51.100.7"));
    decisions(&metrics, 1).await;
    assert_eq!(count(&metrics, "dry_run"), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(got.lock().unwrap().is_empty(), "a dry run sent a request");
}

#[tokio::test]
async fn failures_are_retried_only_when_they_may_pass_and_then_held() {
    let (url, got) = receiver().await;
    let metrics = Arc::new(Metrics::new());
    let r = start(rule(&url, "dry_run = false"), &metrics);
    r.detected(&finding("K403", Detector::ExpiredKey, "198.51.100.7"));
    r.detected(&finding("K503", Detector::ExpiredKey, "198.51.100.7"));
    decisions(&metrics, 2).await;
    assert_eq!(count(&metrics, "failed"), 2);
    let tries = |key: &str| {
        got.lock()
            .unwrap()
            .iter()
            .filter(|(_, _, b)| b.contains(key))
            .count()
    };
    assert_eq!(tries("K403"), 1, "a refusal is not asked again");
    assert_eq!(tries("K503"), 3, "an outage is tried three times");
    let ids: std::collections::BTreeSet<String> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, b)| b.contains("K503"))
        .map(|(id, _, _)| id.clone())
        .collect();
    assert_eq!(ids.len(), 1, "every attempt is the same message: {ids:?}");
    // The next findings on the failed key do not start it over.
    r.detected(&finding("K503", Detector::ExpiredKey, "198.51.100.8"));
    r.detected(&finding("K503", Detector::ExpiredKey, "198.51.100.9"));
    decisions(&metrics, 4).await;
    assert_eq!(count(&metrics, "held"), 2);
    assert_eq!(tries("K503"), 3, "no storm against a failing endpoint");
}

#[tokio::test]
async fn a_confirmed_verdict_tries_a_held_key_again_and_the_trail_says_each_step() {
    let (url, got) = receiver().await;
    let metrics = Arc::new(Metrics::new());
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::StoreConfig {
        path: dir.path().join("findings.db"),
        ..Default::default()
    };
    let (store, writer) = crate::store::FindingsStore::open(&cfg, metrics.clone(), None).unwrap();
    let f = finding("K503", Detector::ExpiredKey, "198.51.100.7");
    store.record(&f);
    drop(writer);
    let r = Responder::start(
        vec![rule(&url, "dry_run = false")],
        Some(store.clone()),
        None,
        metrics.clone(),
        CancellationToken::new(),
    )
    .unwrap()
    .unwrap();
    r.detected(&f);
    r.detected(&f);
    decisions(&metrics, 2).await;
    r.confirmed(&f.id, "erin");
    decisions(&metrics, 3).await;
    assert_eq!(
        count(&metrics, "failed"),
        2,
        "the finding's try and the verdict's"
    );
    assert_eq!(count(&metrics, "held"), 1);
    assert_eq!(got.lock().unwrap().len(), 6, "three attempts each");
    let (_, trail) = store.get(&f.id).unwrap();
    let steps: Vec<(String, String, String)> = trail
        .iter()
        .filter(|a| a.action == "response")
        .map(|a| {
            (
                a.detail["result"].as_str().unwrap().to_owned(),
                a.detail["trigger"].as_str().unwrap().to_owned(),
                a.detail["requested_by"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let step = |r: &str, t: &str, b: &str| (r.to_owned(), t.to_owned(), b.to_owned());
    assert_eq!(
        steps,
        [
            step("failed", "detector expired_key", "keywatch"),
            step("held", "detector expired_key", "keywatch"),
            step("failed", "confirmed", "erin"),
        ]
    );
    let first = trail.iter().find(|a| a.action == "response").unwrap();
    assert_eq!(first.actor.who, super::AUDIT_WHO);
    assert!(
        first.detail["error"].as_str().unwrap().contains("503"),
        "{}",
        first.detail
    );
}
