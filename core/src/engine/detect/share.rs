//! How often a key meets something new (a network, an action, a client),
//! as the novelty detectors judge it and as their evidence tells it.

/// Whether a key whose past days brought something new at `rate` meets
/// such things as a habit (`expected`,
/// [`super::NewSourceConfig::expected_novelty`]): one more says
/// nothing.
pub fn habitual(rate: f32, expected: f64) -> bool {
    rate as f64 >= expected
}

/// How often a key meets something new, in words: "on 38% of its active
/// days", "on none of its last 21 active days".
pub fn share_text(rate: f32, days: f32) -> String {
    if rate <= 0.0 {
        format!("on none of its last {:.0} active days", days)
    } else if rate < 0.01 {
        "on under 1% of its active days".to_owned()
    } else {
        format!("on {:.0}% of its active days", rate * 100.0)
    }
}

/// A share or dispersion for evidence, to three decimals.
pub fn round3(x: f32) -> f64 {
    (x as f64 * 1000.0).round() / 1000.0
}
