//! The profile hint: when nearly every record was skipped for one reason,
//! a sample of the files is decoded with the other built-in profiles to
//! suggest one that fits.

use std::collections::BTreeMap;

use crate::decode::{profile, Decoder};

use super::input;
use super::report::Summary;
use super::stream::Opener;

/// Records sampled per profile when looking for one that fits better.
const HINT_SAMPLE: u64 = 1000;

/// When nearly every record was skipped for one reason, which built-in
/// profile decodes a sample of the files better.
pub(super) fn profile_hint(
    current: &str,
    opener: &Opener,
    files: &[input::File],
    summary: &Summary,
) -> Option<String> {
    let skipped: u64 = summary
        .skipped
        .iter()
        .filter(|(r, _)| **r != "filtered")
        .map(|(_, n)| n)
        .sum();
    let records = summary.events + skipped;
    let (reason, &most) = summary
        .skipped
        .iter()
        .filter(|(r, _)| **r != "filtered")
        .max_by_key(|(_, n)| **n)?;
    if records < 10 || (most as f64) < 0.9 * records as f64 {
        return None;
    }
    let sample = |decoder: &Decoder| {
        let (mut records, mut events) = (0, 0);
        for f in files.iter().filter(|f| !f.is_stdin()) {
            records += opener.sample(f, decoder, HINT_SAMPLE - records, |_| {
                events += 1;
                true
            });
            if records >= HINT_SAMPLE {
                break;
            }
        }
        (records, events)
    };
    let (sampled, _) = sample(&opener.decoder);
    if sampled == 0 {
        // Standard input cannot be read again to try the others on.
        return None;
    }
    let mut best: Option<(&str, u64)> = None;
    for name in profile::BUILTIN.iter().filter(|&&n| n != current) {
        let Ok(decoder) = Decoder::for_profile(name, &BTreeMap::new()) else {
            continue;
        };
        let (_, events) = sample(&decoder);
        if events > best.map_or(0, |b| b.1) {
            best = Some((name, events));
        }
    }
    let head =
        format!("{most} of {records} records were skipped as {reason} with profile `{current}`");
    Some(match best {
        Some((name, events)) if events * 2 >= sampled => format!(
            "{head}; profile `{name}` decodes {events} of {sampled} sampled records: try --profile {name}"
        ),
        _ => format!(
            "{head}; no built-in profile decodes them either ({}): a profile of your own in decode.profiles can map them",
            profile::BUILTIN.join(", ")
        ),
    })
}
