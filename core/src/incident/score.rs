//! The incident's score: each finding's weight by its severity, combined
//! over detectors by noisy-OR, and the severity a score stands for.

use crate::engine::Severity;

/// The probability a finding of this severity stands for: the scale the
/// detectors' own severities are set on (a high `new_source` is a network
/// new to a key that almost never meets one).
pub fn finding_weight(severity: Severity) -> f64 {
    match severity {
        Severity::Info => 0.05,
        Severity::Low => 0.2,
        Severity::Medium => 0.4,
        Severity::High => 0.7,
        Severity::Critical => 0.95,
    }
}

/// The severity of a combined score: each line is a single finding's
/// weight, so one finding keeps its severity and only combined evidence
/// moves an incident up.
pub fn severity_of_score(score: f64) -> Severity {
    if score >= 0.95 {
        Severity::Critical
    } else if score >= 0.7 {
        Severity::High
    } else if score >= 0.4 {
        Severity::Medium
    } else if score >= 0.2 {
        Severity::Low
    } else {
        Severity::Info
    }
}

/// Noisy-OR: the chance at least one of independent signals is real,
/// rounded to 1e-9 so that one finding's score is its weight exactly
/// (1 − (1 − 0.2) is 0.19999999999999996 in floating point, below the line
/// of `low`).
pub fn noisy_or(weights: impl IntoIterator<Item = f64>) -> f64 {
    let p = 1.0
        - weights
            .into_iter()
            .map(|p| 1.0 - p.clamp(0.0, 1.0))
            .product::<f64>();
    (p * 1e9).round() / 1e9
}
