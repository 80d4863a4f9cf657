//! Inventory load and reload at scale: time, memory held, and the peak while
//! a reload builds the new inventory beside the old one.
//!
//! `cargo bench --bench inventory` (add `-- KEYS` to change the key count,
//! default 1,000,000). Each entry is realistic: one of 500 owners, 50 teams,
//! 30 systems, dates, one of 40 network lists and 40 action lists, a usage
//! cap on one key in ten, one-time on one in a hundred. Run by hand; under
//! `cargo test` it checks 10,000 keys only.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use keywatch_core::inventory::InventoryHandle;

#[path = "../../benches/support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{LIVE, PEAK};

const PRIVILEGES: [&str; 3] = ["read", "write", "admin"];

/// The fields of key `k`, as cells: CSV writes them joined, JSON and TOML quote them.
fn fields(k: u64) -> Vec<(&'static str, String)> {
    let day = |d: u64| {
        let d = 1_704_067_200 + d * 86_400; // from 2024-01-01
        chrono::DateTime::from_timestamp(d as i64, 0)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string()
    };
    let mut f = vec![
        ("key_id", format!("AKIA{k:016X}")),
        ("owner", format!("owner{}@example.com", k % 500)),
        ("team", format!("team{}", k % 50)),
        ("system", format!("system{}", k % 30)),
        ("privilege", PRIVILEGES[(k % 3) as usize].to_owned()),
        ("created", day(k % 700)),
        ("expires", day(k % 700 + 800)),
        ("last_rotated", day(k % 700 + 30)),
        ("last_used", day(k % 700 + 60)),
        (
            "allowed_cidrs",
            format!("10.{}.0.0/16;192.168.{}.0/24", k % 40, k % 40),
        ),
        (
            "allowed_actions",
            format!("s3:Get*;s3:ListBucket;sqs:Send{}*", k % 40),
        ),
    ];
    if k % 10 == 0 {
        f.push(("usage_cap", "10000/1d".to_owned()));
    }
    if k % 100 == 0 {
        f.push(("one_time", "true".to_owned()));
    }
    f
}

const COLUMNS: &str = "key_id,owner,team,system,privilege,created,expires,last_rotated,last_used,allowed_cidrs,allowed_actions,usage_cap,one_time";

fn write_inventories(dir: &Path, keys: u64) {
    let mut csv = String::with_capacity(keys as usize * 220);
    let mut json = String::with_capacity(keys as usize * 330);
    let mut toml = String::with_capacity(keys as usize * 330);
    csv.push_str(COLUMNS);
    csv.push('\n');
    json.push_str("{\"keys\": [\n");
    for k in 0..keys {
        let f = fields(k);
        let cell = |name: &str| {
            f.iter()
                .find(|(n, _)| *n == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let row: Vec<&str> = COLUMNS.split(',').map(cell).collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
        json.push_str(if k == 0 { "{" } else { ",\n{" });
        toml.push_str("[[keys]]\n");
        for (i, (name, value)) in f.iter().enumerate() {
            let (json_value, toml_value) = match *name {
                "allowed_cidrs" | "allowed_actions" => {
                    let items: Vec<String> = value.split(';').map(|v| format!("{v:?}")).collect();
                    (
                        format!("[{}]", items.join(",")),
                        format!("[{}]", items.join(", ")),
                    )
                }
                "one_time" => (value.clone(), value.clone()),
                _ => (format!("{value:?}"), format!("{value:?}")),
            };
            let _ = write!(
                json,
                "{}{name:?}:{json_value}",
                if i == 0 { "" } else { "," }
            );
            let _ = writeln!(toml, "{name} = {toml_value}");
        }
        json.push('}');
    }
    json.push_str("\n]}\n");
    std::fs::write(dir.join("inventory.csv"), csv).unwrap();
    std::fs::write(dir.join("inventory.json"), json).unwrap();
    std::fs::write(dir.join("inventory.toml"), toml).unwrap();
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let keys: u64 = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(if bench_mode { 1_000_000 } else { 10_000 });
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    write_inventories(dir.path(), keys);
    println!(
        "{keys} keys written in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    for format in ["csv", "json", "toml"] {
        let path = dir.path().join(format!("inventory.{format}"));
        let size = std::fs::metadata(&path).unwrap().len();
        let before = LIVE.load(Ordering::Relaxed);
        let started = Instant::now();
        let handle = InventoryHandle::open(&path, None).unwrap();
        let load_s = started.elapsed().as_secs_f64();
        let held = LIVE.load(Ordering::Relaxed) - before;
        PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
        let started = Instant::now();
        let reloaded = handle.reload().unwrap();
        let reload_s = started.elapsed().as_secs_f64();
        let peak = PEAK.load(Ordering::Relaxed) - before;
        assert_eq!(reloaded.len() as u64, keys);
        drop(reloaded);
        let inventory = handle.current();
        let probes: Vec<String> = (0..keys.min(100_000))
            .map(|k| format!("AKIA{:016X}", (k * 7919) % keys))
            .collect();
        let started = Instant::now();
        let hits = probes.iter().filter(|k| inventory.get(k).is_some()).count();
        let lookup_ns = started.elapsed().as_nanos() as f64 / probes.len() as f64;
        assert_eq!(hits, probes.len());
        println!(
            "{format:>4}: file {:.0} MiB; load {load_s:.2}s, reload {reload_s:.2}s; held {:.1} MiB = {:.0} B/key; \
             peak during reload {:.1} MiB (old + new + file); lookup {lookup_ns:.0} ns; RSS {:.0} MiB",
            size as f64 / (1 << 20) as f64,
            mib(held),
            held as f64 / keys as f64,
            mib(peak),
            rss_mib(),
        );
    }
}
