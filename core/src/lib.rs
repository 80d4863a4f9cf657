//! keywatch's core: everything between an audit event's bytes and a
//! finding, with no I/O of its own beyond reading files it is pointed at.
//!
//! Key-usage audit events are decoded through a mapping profile into
//! [`decode::AuditEvent`]s and applied, in event time, to one small state
//! per key in the [`engine`], whose detectors compare each use with the
//! key's own history and raise [`engine::Finding`]s. The `keywatch` crate
//! is the shell around it: Kafka, HTTP, the findings store, alerts,
//! checkpoints and the command line.
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
//! - [`pipeline`]: one message through decode and engine, counted.
//! - [`replay`]: recorded events through the engine in event-time order.
//! - [`incident`]: findings on one identity, while they keep arriving, as one
//!   incident with a combined score and its ATT&CK tactics.
//!
//! What the engine reads:
//!
//! - [`config`]: the core's configuration sections, validated.
//! - [`inventory`]: the known keys and what each may do, reloaded on change;
//!   the policy detectors enforce it.
//! - [`netintel`]: who owns a source address and where it is (MaxMind DB,
//!   cloud ranges, labelled lists), reloaded on change; the network
//!   detectors and every finding's evidence read it.
//! - [`owner`]: who owns a key, from the inventory to the alerts.
//! - [`poll`]: the one loop that watches files for change.
//!
//! At the bottom:
//!
//! - [`types`]: what every floor shares (event time in seconds, the kinds
//!   of identity, networks and durations as written, the configuration
//!   error), so that no component pulls in another for them.
//!
//! Beside the flow:
//!
//! - [`review`]: the key security review (stale, overdue, expired, unknown,
//!   least privilege, ranked by risk) from engine state, inventory and findings.
//! - [`metrics`]: every exported metric, defined once (the names are a
//!   contract with dashboards and alert rules, so they live at the bottom,
//!   where every component can count).
//! - [`gen`]: realistic traffic with injected attacks and ground truth.

pub mod config;
pub mod decode;
pub mod engine;
pub mod gen;
pub mod incident;
pub mod inventory;
pub mod metrics;
pub mod netintel;
pub mod owner;
pub mod pipeline;
pub mod poll;
pub mod replay;
pub mod review;
pub mod types;

/// The modules a crate's `lib.rs` declares (`pub mod NAME;`) that its
/// layout doc does not name as [`NAME`]: what a layout test finds missing.
#[cfg(any(test, feature = "testing"))]
pub fn unnamed_modules(lib_rs: &str) -> Vec<&str> {
    let Some((doc, code)) = lib_rs.split_once("\npub mod") else {
        return Vec::new();
    };
    std::iter::once(code.split_once(';').map_or(code, |(n, _)| n).trim())
        .chain(
            code.lines()
                .filter_map(|l| l.strip_prefix("pub mod ").and_then(|l| l.strip_suffix(';'))),
        )
        .filter(|name| !doc.contains(&format!("[`{name}`]")))
        .collect()
}

#[cfg(test)]
mod layout {
    /// The layout above names every module, so it cannot fall behind.
    #[test]
    fn the_layout_doc_names_every_module() {
        assert_eq!(
            super::unnamed_modules(include_str!("lib.rs")),
            Vec::<&str>::new()
        );
        assert_eq!(
            super::unnamed_modules("//! [`a`]\n\npub mod a;\npub mod b;\n"),
            vec!["b"],
            "a module the doc leaves out is found"
        );
    }
}
