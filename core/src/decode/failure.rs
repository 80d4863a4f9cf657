//! What a failed call's error code says about who failed: the caller (it
//! was refused, or asked for something that is not there), or the provider
//! (it asked the caller to slow down, or was itself unavailable).
//!
//! The difference matters to the rate detectors. A permission probe, a key
//! used for what it was never granted, or enumeration of names that do not
//! exist fails with the caller's errors, and `error_spike` counts those. A
//! burst of `ThrottlingException` is the provider pacing a busy workload (an
//! SDK's retries after a rate limit): it says the key is busy, not that it
//! is probing. Server errors (`500`, `ServiceUnavailable`) are the
//! provider's outage, not the key's doing. So `error_spike` counts neither,
//! and `rate_spike` counts only the calls the provider served: a throttled
//! call did nothing, and a thief's served calls are counted all the same.
//!
//! One table, matched without regard to case: a code is throttling or
//! unavailability when it is one of these, or (for the spellings that vary
//! by service) contains one of the fragments. Every other code, and a failure
//! without a code, is the caller's.

use super::event::Outcome;

/// Who a failed call's error code blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Refused, not found, invalid: the caller's failure (and a failure
    /// with no code).
    Caller,
    /// A rate limit: the provider asked the caller to slow down.
    Throttled,
    /// The provider failed (5xx, unavailable, internal error).
    Provider,
}

/// Codes that are a rate limit, whole: AWS (`SlowDown` is S3's), HTTP,
/// Google's RPC status, Okta's rate-limit error.
const THROTTLED: &[&str] = &[
    "slowdown",
    "toomanyrequests",
    "toomanyrequestsexception",
    "requestlimitexceeded",
    "ratelimitexceeded",
    "rate exceeded",
    "provisionedthroughputexceededexception",
    "requestthrottled",
    "priorrequestnotcomplete",
    "429",
    "resource_exhausted",
    // Google's RPC status code for RESOURCE_EXHAUSTED, as the `gcp` profile
    // maps `status.code` (HTTP statuses have three digits, so no clash).
    "8",
    "e0000047",
];

/// Fragments that mark a rate limit however the service spells the rest
/// (`Throttling`, `ThrottlingException`, `ThrottledException`,
/// `RequestThrottledException`).
const THROTTLED_FRAGMENTS: &[&str] = &["throttl"];

/// Codes that are the provider's own failure.
const PROVIDER: &[&str] = &[
    "internalerror",
    "internalfailure",
    "internalservererror",
    "internalserviceerror",
    "internalserviceexception",
    "serviceunavailable",
    "serviceunavailableexception",
    "servicefailure",
    "unavailable",
    "internal",
    // Google's RPC INTERNAL, UNAVAILABLE.
    "13",
    "14",
    "500",
    "502",
    "503",
    "504",
];

impl Failure {
    /// Classifies a provider error code (`None`: the log gave none).
    pub fn of_code(code: Option<&str>) -> Failure {
        let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) else {
            return Failure::Caller;
        };
        // Compared in place, without a lowercased copy: this runs for every
        // failed call, once by each rate detector.
        let is = |table: &[&str]| table.iter().any(|c| c.eq_ignore_ascii_case(code));
        let contains = |fragment: &str| {
            code.as_bytes()
                .windows(fragment.len())
                .any(|w| w.eq_ignore_ascii_case(fragment.as_bytes()))
        };
        if is(THROTTLED) || THROTTLED_FRAGMENTS.iter().any(|f| contains(f)) {
            Failure::Throttled
        } else if is(PROVIDER) {
            Failure::Provider
        } else {
            Failure::Caller
        }
    }
}

impl Outcome<'_> {
    /// Who failed, for a failed call; `None` for a success.
    pub fn failure(&self) -> Option<Failure> {
        match self {
            Outcome::Success => None,
            Outcome::Failure { code } => Some(Failure::of_code(code.as_deref())),
        }
    }

    /// Whether the provider did not serve the call (a rate limit, or its
    /// own failure): it did nothing, and is not a request served.
    pub fn unserved(&self) -> bool {
        matches!(self.failure(), Some(Failure::Throttled | Failure::Provider))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_missing_names_are_the_callers() {
        for code in [
            "AccessDenied",
            "AccessDeniedException",
            "UnauthorizedOperation",
            "Client.UnauthorizedOperation",
            "InvalidClientTokenId",
            "NoSuchEntity",
            "NoSuchBucket",
            "ResourceNotFoundException",
            "ValidationException",
            // IAM's quota on users or keys is not a rate limit.
            "LimitExceeded",
            "403",
            "PERMISSION_DENIED",
            // Google's PERMISSION_DENIED, UNAUTHENTICATED, NOT_FOUND.
            "7",
            "16",
            "5",
            "permission denied",
        ] {
            assert_eq!(Failure::of_code(Some(code)), Failure::Caller, "{code}");
        }
        assert_eq!(Failure::of_code(None), Failure::Caller);
        assert_eq!(Failure::of_code(Some("  ")), Failure::Caller);
    }

    #[test]
    fn rate_limits_are_throttling_however_spelled() {
        for code in [
            "ThrottlingException",
            "Throttling",
            "ThrottledException",
            "RequestThrottledException",
            "SlowDown",
            "TooManyRequestsException",
            "RequestLimitExceeded",
            "ProvisionedThroughputExceededException",
            "Rate exceeded",
            "429",
            "RESOURCE_EXHAUSTED",
            "8",
            "E0000047",
        ] {
            assert_eq!(Failure::of_code(Some(code)), Failure::Throttled, "{code}");
        }
    }

    #[test]
    fn outages_are_the_providers() {
        for code in [
            "InternalError",
            "InternalFailure",
            "ServiceUnavailable",
            "ServiceUnavailableException",
            "503",
            "UNAVAILABLE",
            "14",
        ] {
            assert_eq!(Failure::of_code(Some(code)), Failure::Provider, "{code}");
        }
    }

    #[test]
    fn an_outcome_says_whether_it_was_served() {
        let throttled = Outcome::Failure {
            code: Some("ThrottlingException".into()),
        };
        let denied = Outcome::Failure {
            code: Some("AccessDenied".into()),
        };
        let outage = Outcome::Failure {
            code: Some("503".into()),
        };
        assert!(throttled.unserved() && outage.unserved());
        assert!(!denied.unserved());
        assert!(!Outcome::Success.unserved());
        assert_eq!(Outcome::Success.failure(), None);
        assert_eq!(denied.failure(), Some(Failure::Caller));
    }
}
