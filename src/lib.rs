//! keywatch: a streaming monitor of credential use.
//!
//! Key-usage audit events (CloudTrail, Vault, Kubernetes, GitHub, any JSON)
//! are decoded through a mapping profile into [`decode::AuditEvent`]s and
//! applied, in event time, to one small state per key in the [`engine`],
//! whose detectors compare each use with the key's own history and raise
//! [`engine::Finding`]s.
//!
//! # Layout
//!
//! In the order an event flows:
//!
//! - [`decode`]: message bytes → events, through a mapping profile, borrowing
//!   from the input.
//! - [`engine`]: per-key state ([`engine::state`]), shared baselines
//!   ([`engine::baseline`]) and the detectors ([`engine::detect`], one file
//!   each; the policy detectors in [`engine::detect::policy`]) → findings.
//! - [`replay`]: recorded events through the engine in event-time order.
//! - [`alert`]: findings → suppression, redaction, routing → one bounded
//!   queue and worker per sink (one file each) → receivers; what cannot be
//!   delivered goes to a dead-letter file.
//!
//! Beside the flow:
//!
//! - [`store`]: every finding in one SQLite file, with its status, assignee
//!   and audit trail, for the console and `/api/v1/findings`.
//! - [`feedback`]: verdicts that act: `expected` teaches the baseline,
//!   `false_positive` mutes, `confirmed` re-notifies at critical.
//! - [`config`]: configuration file + environment, validated before start.
//! - [`inventory`]: the known keys and what each may do, reloaded on change;
//!   the policy detectors enforce it.
//! - [`netintel`]: who owns a source address and where it is (MaxMind DB,
//!   cloud ranges, labelled lists), reloaded on change; the network
//!   detectors and every finding's evidence read it.
//! - [`review`]: the key security review (stale, overdue, expired, unknown,
//!   least privilege, ranked by risk) from engine state, inventory and findings.
//! - [`metrics`]: every exported metric, defined once.
//! - [`owner`]: who owns a key, from the inventory to the alerts.
//! - [`gen`]: realistic traffic with injected attacks and ground truth.
//! - [`cli`], [`cmd`]: the command line; `main.rs` only parses and maps
//!   errors to exit codes.
//! - [`telemetry`]: logging setup.
//! - [`fuzz`]: one entry point per kind of untrusted input (messages,
//!   checkpoints, changelog chunks, inventories, configuration), for the
//!   fuzzers in `fuzz/` and the hostile-input test.

pub mod alert;
pub mod changelog;
pub mod checkpoint;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod engine;
pub mod feedback;
pub mod fuzz;
pub mod gen;
pub mod http;
pub mod inventory;
pub mod metrics;
pub mod netintel;
pub mod owner;
pub mod pipeline;
pub mod poll;
pub mod replay;
pub mod review;
pub mod source;
pub mod store;
pub mod telemetry;
