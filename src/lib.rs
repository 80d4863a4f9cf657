//! keywatch: a streaming monitor of credential use.
//!
//! This crate is the daemon's shell around [`keywatch_core`], which decodes
//! key-usage audit events and keeps one small state per key whose detectors
//! raise findings. Here is everything that talks to the world: Kafka in and
//! out, the HTTP server and console, the findings store, the alert sinks,
//! durable state, and the command line. The core's modules are re-exported
//! under their own names (`keywatch::engine` is `keywatch_core::engine`).
//!
//! # Layout
//!
//! In the order an event flows:
//!
//! - [`source`]: Kafka partitions → messages (the consumer, its rebalance
//!   and hand-off, lanes per partition), and what cannot be decoded to a
//!   dead-letter topic.
//! - the core's [`pipeline`] and [`engine`]: messages → findings.
//! - [`alert`]: findings → suppression, redaction, routing → one bounded
//!   queue and worker per sink (one file each) → receivers; what cannot be
//!   delivered goes to a dead-letter file.
//! - [`store`]: every finding in one SQLite file, with its status, assignee
//!   and audit trail, for the console and `/api/v1/findings`.
//! - [`cadence`]: the key review made on a schedule, stored with what
//!   changed since the previous one, and delivered.
//! - [`feedback`]: verdicts that act: `expected` teaches the baseline,
//!   `false_positive` mutes, `confirmed` re-notifies at critical.
//! - [`response`]: a confirmed compromise (or a named detector's finding)
//!   acts on the key at its provider: AWS deactivation, signed webhooks;
//!   dry run by default, rate-limited, audited.
//!
//! Durable state:
//!
//! - [`checkpoint`]: the engine's state with the offsets it reflects, so a
//!   restart resumes where it was.
//! - [`changelog`]: how a partition's state moves between instances,
//!   through a Kafka topic.
//!
//! Around them:
//!
//! - [`config`]: the configuration file and environment: the core's
//!   sections and the I/O ones, validated before start.
//! - [`http`]: `/metrics`, health, the JSON API and the triage console.
//! - [`auth`]: who a request comes from (proxy header, tokens, basic auth,
//!   client certificates) and which role each route needs.
//! - [`secret`]: secret values in configuration (`env:`, `file:`), never
//!   printed.
//! - [`kafka`]: the one Kafka adapter: every client's properties by role,
//!   the topics keywatch creates, the blocking admin calls.
//! - [`daemon`]: `keywatch run`'s wiring.
//! - [`cli`], [`cmd`]: the command line; `main.rs` only parses and maps
//!   errors to exit codes.
//! - [`telemetry`]: logging setup.

pub mod alert;
pub mod auth;
pub mod cadence;
pub mod changelog;
pub mod checkpoint;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod feedback;
pub mod http;
pub mod kafka;
pub mod response;
pub mod secret;
pub mod source;
pub mod store;
pub mod telemetry;

pub use keywatch_core::{
    decode, engine, gen, inventory, metrics, netintel, owner, pipeline, poll, replay, review,
};

#[cfg(test)]
mod layout {
    /// The layout above names every module, so it cannot fall behind.
    #[test]
    fn the_layout_doc_names_every_module() {
        let missing = keywatch_core::unnamed_modules(include_str!("lib.rs"));
        assert!(
            missing.is_empty(),
            "lib.rs's layout does not name {missing:?}"
        );
    }
}
