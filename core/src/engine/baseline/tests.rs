use super::*;

/// Found by the checkpoint fuzz target: a restored slot whose dispersion
/// was NaN made `day_level` clamp between NaN bounds, a panic (in release
/// too) on the first event of the key.
#[test]
fn a_line_for_a_mean_past_any_count_is_the_largest_count_at_once() {
    // Found by fuzzing a checkpoint: a mean of 1e20 once looped forever.
    for mu in [1e10, 1e20, 1e300, f64::INFINITY, f64::NAN, -1e20] {
        let t = threshold_for(mu, 0.1, 1e-6);
        assert!(t >= 1, "{mu}: {t}");
    }
    assert_eq!(threshold_for(1e20, 0.1, 1e-6), u32::MAX);
    assert!(threshold_for(4.0, 0.1, 1e-6) < 100);
}

#[test]
fn a_nan_dispersion_from_restored_state_never_panics() {
    let slot = Slot {
        disp: f32::NAN,
        ..Slot::default()
    };
    assert!(slot.phi().is_finite());
    let s = Seasonal::new();
    assert!(s.day_level(f32::NAN).is_finite());
    assert!(s.day_level(-1.0).is_finite());
}

#[test]
fn peak_keeps_the_maximum_and_decays() {
    let mut p = Peak::default();
    p.observe(100.0);
    p.observe(40.0);
    assert_eq!(p.value(), 100.0);
    let daily = 0.5f32.powf(1.0 / 14.0);
    for _ in 0..14 {
        p.decay(daily);
    }
    assert!((p.value() - 50.0).abs() < 0.01);
    p.observe(60.0);
    assert_eq!(p.value(), 60.0);
}

/// Exact Poisson upper tail by summation.
fn poisson_tail(x: u32, mu: f64) -> f64 {
    let mut term = (-mu).exp();
    for k in 0..x {
        term *= mu / (k as f64 + 1.0);
    }
    let mut tail = 0.0;
    let mut t = term;
    let mut k = x as f64;
    while t > 1e-300 && k < x as f64 + 10_000.0 {
        tail += t;
        k += 1.0;
        t *= mu / k;
    }
    tail
}

#[test]
fn tail_approximation_is_close_to_the_exact_poisson() {
    // Within a few percent where thresholds live (1e-3 .. 1e-9)...
    for (x, mu) in [
        (30u32, 10.0),
        (20, 10.0),
        (8, 2.0),
        (140, 100.0),
        (60, 25.0),
    ] {
        let exact = poisson_tail(x, mu);
        let approx = upper_tail(x as f64, mu, 0.0);
        let r = approx / exact;
        assert!(
            (0.7..1.4).contains(&r),
            "x={x} mu={mu}: {approx} vs {exact}"
        );
    }
    // ...and the right order of magnitude far beyond (scores of 1 - 1e-18).
    let (exact, approx) = (poisson_tail(50, 10.0), upper_tail(50.0, 10.0, 0.0));
    assert!(
        (0.1..10.0).contains(&(approx / exact)),
        "{approx} vs {exact}"
    );
    // Overdispersion widens the tail.
    assert!(upper_tail(30.0, 10.0, 0.2) > 10.0 * upper_tail(30.0, 10.0, 0.0));
}

#[test]
fn threshold_is_the_first_count_past_p() {
    let t = threshold_for(10.0, 0.0, 1e-6);
    assert!(upper_tail(t as f64, 10.0, 0.0) <= 1e-6);
    assert!(upper_tail(t as f64 - 1.0, 10.0, 0.0) > 1e-6);
    assert!((28..=34).contains(&t), "{t}");
    assert!(threshold_for(10.0, 0.25, 1e-6) > t);
}

#[test]
fn cusum_line_matches_its_score() {
    let p = RateParams::new(300, 20, 1.0 - 1e-6, 3);
    assert!((cusum_score(p.h) - (1.0 - 1e-6)).abs() < 1e-9, "{}", p.h);
}
