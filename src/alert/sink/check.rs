//! The checks several sinks' keys share.

use keywatch_core::types::{invalid, ConfigError, HumanDuration};

/// An `http://` or `https://` URL with a host; the error shows it masked.
pub fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let shown = format!("{:?}", crate::secret::mask_url(url));
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(invalid(key, shown, "must be an http:// or https:// URL")),
        Err(e) => Err(invalid(key, shown, format!("not a URL: {e}"))),
    }
}

/// Longest duration any alerts key takes: past it a value is surely a typo
/// (and far-future deadlines would overflow the clock).
pub const LONGEST: HumanDuration = HumanDuration::days(30);

/// More than zero and at most [`LONGEST`].
pub fn check_positive(key: &str, d: HumanDuration) -> Result<(), ConfigError> {
    if d.0.is_zero() || d > LONGEST {
        return Err(invalid(key, d, "must be more than 0s and at most 30d"));
    }
    Ok(())
}
