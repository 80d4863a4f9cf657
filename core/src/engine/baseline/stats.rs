//! The distributions behind the tests: the negative-binomial upper tail and
//! the line for a probability, the normal CDF, and the hour of a time.

use crate::types::Secs;

pub(super) fn hour_of(t: Secs) -> usize {
    ((t / 3600) % 24) as usize
}

/// `P(X >= x)` for a count with mean `mu` and dispersion `phi`
/// (`var = mu + phi mu^2`; Poisson when `phi` is 0).
///
/// A negative binomial is a Poisson whose rate is Gamma distributed, so
/// `P(X >= x) = P(F(2x, 2/phi) <= mu / x)` exactly; Paulson's cube-root
/// normal approximation of the F distribution (Wilson–Hilferty for the
/// Poisson case) makes that a closed form accurate to a few percent far
/// into the tail.
pub fn upper_tail(x: f64, mu: f64, phi: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let mu = mu.max(1e-6);
    let f3 = (mu / x).cbrt();
    let a = 1.0 / (9.0 * x);
    let b = phi.max(0.0) / 9.0;
    let z = ((1.0 - b) * f3 - (1.0 - a)) / (a + f3 * f3 * b).sqrt();
    norm_cdf(z)
}

/// The smallest count whose upper tail is at most `p`.
pub fn threshold_for(mu: f64, phi: f64, p: f64) -> u32 {
    let mut lo = mu.floor().max(1.0);
    // Past u32 nothing is countable; and floats that far apart (a mean from
    // a damaged checkpoint, 1e20) are more than 1 apart, so the bisection
    // below would never close (found by fuzzing).
    if lo >= u32::MAX as f64 {
        return u32::MAX;
    }
    if upper_tail(lo, mu, phi) <= p {
        return lo as u32;
    }
    let mut hi = lo * 2.0 + 8.0;
    while upper_tail(hi, mu, phi) > p {
        lo = hi;
        hi *= 2.0;
        if hi >= u32::MAX as f64 {
            return u32::MAX;
        }
    }
    // upper_tail(lo) > p >= upper_tail(hi)
    while hi - lo > 1.0 {
        let mid = ((lo + hi) / 2.0).floor();
        if mid <= lo || mid >= hi {
            break;
        }
        if upper_tail(mid, mu, phi) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi as u32
}

pub(super) fn norm_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit,
/// relative error below 1.2e-7 everywhere).
pub(super) fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}
