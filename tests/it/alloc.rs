//! The event path allocates nothing for a known key's ordinary event: no
//! formatting, no collections built per event, whatever the key remembers.
//! Counted by this test binary's allocator, per thread (so the other tests
//! running beside it do not count).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

use keywatch::config::Config;
use keywatch::decode::Decoder;
use keywatch::engine::Engine;

struct Counting;

thread_local!(static ALLOCATIONS: Cell<u64> = const { Cell::new(0) });

// SAFETY: every call is handed to the system allocator unchanged; the count
// is a thread-local `Cell` that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.realloc(ptr, layout, size)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// One generic event of `key` at `t` (seconds) from `source`.
fn event(key: usize, t: i64, source: &str, action: usize, client: usize) -> Vec<u8> {
    format!(
        r#"{{"time":{t},"key_id":"AKIAALLOC{key:06}","principal":"arn:aws:iam::123456789012:user/svc-{key}","source":"{source}","user_agent":"client-{client}/1.{client} (linux)","action":"svc{}:Action{action}","outcome":"success","region":"us-east-1"}}"#,
        action % 6,
    )
    .into_bytes()
}

/// Applies `events`; returns the allocations made on this thread and the
/// findings raised.
fn apply(decoder: &Decoder, engine: &Engine, events: &[Vec<u8>]) -> (u64, usize) {
    let mut out = Vec::with_capacity(64);
    let mut found = 0;
    let before = allocations();
    for e in events {
        decoder
            .decode(e, |r| engine.process(&r.expect("valid event"), &mut out))
            .expect("decodes");
        found += out.len();
        out.clear();
    }
    (allocations() - before, found)
}

/// `keys` keys, each with its own `sources` addresses, `actions` actions and
/// `clients` clients, one event every `every` seconds from `from` for
/// `events` events, cycling through what each key uses.
fn traffic(
    keys: usize,
    sources: usize,
    actions: usize,
    clients: usize,
    from: i64,
    every: i64,
    events: usize,
) -> Vec<Vec<u8>> {
    (0..events)
        .map(|i| {
            let key = i % keys;
            let turn = i / keys;
            let s = (turn * 7 + key) % sources;
            let source = format!("10.{}.{}.{}", key % 200, s, 10 + key % 100);
            event(
                key,
                from + i as i64 * every,
                &source,
                (turn + key) % actions,
                turn % clients,
            )
        })
        .collect()
}

const START: i64 = 1_767_571_200; // 2026-01-05

#[test]
fn known_keys_events_allocate_nothing() {
    let decoder = Decoder::for_profile("generic", &BTreeMap::new()).unwrap();
    for (what, keys, sources, actions, clients) in [
        ("many light keys", 2000, 1, 2, 1),
        ("busy keys remembering 48 networks", 40, 48, 40, 8),
    ] {
        let engine = Engine::new(&Config::default());
        // Three weeks of history, then two more days of the same use.
        let per_day = 4000;
        let warm = traffic(
            keys,
            sources,
            actions,
            clients,
            START,
            86_400 / per_day,
            21 * per_day as usize,
        );
        let later = START + 21 * 86_400;
        let timed = traffic(
            keys,
            sources,
            actions,
            clients,
            later,
            86_400 / per_day,
            2 * per_day as usize,
        );
        apply(&decoder, &engine, &warm);
        let (allocated, found) = apply(&decoder, &engine, &timed);
        assert_eq!(found, 0, "{what}: ordinary use raised findings");
        let per_event = allocated as f64 / timed.len() as f64;
        assert!(
            per_event < 0.01,
            "{what}: {allocated} allocations over {} events of known keys ({per_event:.3} per event)",
            timed.len()
        );
    }
}
