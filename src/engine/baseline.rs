//! Baselines the spike detectors share: a decaying peak, a bucketed counter
//! that learns its peak only from finished hours, and hour-of-day peaks.

use serde::{Deserialize, Serialize};

use super::state::Secs;

/// A decaying peak: the largest value observed, shrunk by a constant factor
/// on every *active* day (a day on which the key was used). Measuring decay in
/// active days keeps a dormant or weekend-idle key's baseline intact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Peak(f32);

impl Peak {
    /// The current (decayed) peak.
    pub fn value(self) -> f32 {
        self.0
    }

    /// Takes `x` into the envelope.
    pub fn observe(&mut self, x: f32) {
        self.0 = self.0.max(x);
    }

    /// One active day passes.
    pub fn decay(&mut self, factor: f32) {
        self.0 *= factor;
    }
}

/// Counts per bucket, with the key's learned peak bucket.
///
/// Finished buckets are learned only when their hour is over: a burst that
/// ramps up over a few buckets must not raise its own threshold on the way.
/// A bucket that crossed its threshold is learned as the threshold, so an
/// attack does not teach the baseline to accept the next one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketCounter {
    bucket: u32,
    count: u32,
    threshold: u32,
    pending: Peak,
    peak: Peak,
}

/// Finished buckets of one hour, learned into the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Learned {
    /// Start of the hour they belonged to.
    pub hour_start: Secs,
    /// Their (clamped) peak.
    pub value: f32,
}

impl BucketCounter {
    /// Moves to `bucket` if it is newer; returns whether it moved and what
    /// finished hour was learned. Events older than the current bucket count
    /// into the current one (event time never runs backwards here).
    pub fn roll(&mut self, bucket: u32, bucket_s: u32, clamp: bool) -> (bool, Option<Learned>) {
        if bucket <= self.bucket {
            return (false, None);
        }
        let prev_start = self.bucket.saturating_mul(bucket_s);
        if self.count > 0 {
            let x = if clamp && self.count >= self.threshold {
                self.threshold
            } else {
                self.count
            };
            self.pending.observe(x as f32);
        }
        let mut learned = None;
        if bucket.saturating_mul(bucket_s) / 3600 != prev_start / 3600 && self.pending.value() > 0.0
        {
            let value = self.pending.value();
            self.peak.observe(value);
            learned = Some(Learned {
                hour_start: prev_start - prev_start % 3600,
                value,
            });
            self.pending = Peak::default();
        }
        self.bucket = bucket;
        self.count = 0;
        (true, learned)
    }

    /// Sets the current bucket's threshold (after a roll).
    pub fn set_threshold(&mut self, threshold: u32) {
        self.threshold = threshold;
    }

    /// Adds `weight`; true when this addition crossed the threshold.
    pub fn add(&mut self, weight: u32) -> bool {
        let before = self.count;
        self.count = self.count.saturating_add(weight);
        before < self.threshold && self.count >= self.threshold
    }

    /// The learned peak (finished hours only).
    pub fn peak(&self) -> f32 {
        self.peak.value()
    }

    /// Count and threshold of the current bucket.
    pub fn current(&self) -> (u32, u32) {
        (self.count, self.threshold)
    }

    /// Start of the current bucket.
    pub fn bucket_start(&self, bucket_s: u32) -> Secs {
        self.bucket.saturating_mul(bucket_s)
    }

    /// One active day passes.
    pub fn decay(&mut self, factor: f32) {
        self.peak.decay(factor);
    }
}

/// Hour-of-day peaks, allocated only for keys with enough volume to matter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourlyPeaks {
    /// When the key started having them; used only after a learning period.
    pub since: Secs,
    slots: [Peak; 24],
}

impl HourlyPeaks {
    /// Empty peaks from `since`.
    pub fn new(since: Secs) -> HourlyPeaks {
        HourlyPeaks {
            since,
            slots: [Peak::default(); 24],
        }
    }

    /// Learns a finished hour.
    pub fn learn(&mut self, l: Learned) {
        self.slots[hour_of(l.hour_start)].observe(l.value);
    }

    /// The peak around the hour of `t` (that hour and its neighbours, which
    /// absorbs DST shifts and jobs that drift a little).
    pub fn around(&self, t: Secs) -> f32 {
        let h = hour_of(t);
        [(h + 23) % 24, h, (h + 1) % 24]
            .iter()
            .map(|&i| self.slots[i].value())
            .fold(0.0, f32::max)
    }

    /// One active day passes.
    pub fn decay(&mut self, factor: f32) {
        for s in &mut self.slots {
            s.decay(factor);
        }
    }
}

fn hour_of(t: Secs) -> usize {
    ((t / 3600) % 24) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_ramp_does_not_raise_its_own_threshold() {
        let mut c = BucketCounter::default();
        // Buckets of 5 minutes in one hour: 6, 14, then 28.
        for (bucket, n) in [(12u32, 6u32), (13, 14), (14, 28)] {
            c.roll(bucket, 300, true);
            c.set_threshold(18);
            let crossed = (0..n).map(|_| c.add(1)).filter(|&x| x).count();
            assert_eq!(crossed, usize::from(n >= 18), "bucket {bucket}");
        }
        assert_eq!(c.peak(), 0.0, "nothing learned within the hour");
        let (_, learned) = c.roll(24, 300, true);
        let learned = learned.unwrap();
        assert_eq!(
            learned.value, 18.0,
            "the crossing bucket is learned as its threshold"
        );
        assert_eq!(learned.hour_start, 3600);
        assert_eq!(c.peak(), 18.0);
    }

    #[test]
    fn late_events_count_in_the_current_bucket() {
        let mut c = BucketCounter::default();
        assert!(c.roll(10, 300, true).0);
        assert!(!c.roll(9, 300, true).0);
        c.set_threshold(2);
        c.add(1);
        assert!(c.add(1));
        assert_eq!(c.current(), (2, 2));
    }

    #[test]
    fn hourly_peaks_look_at_neighbouring_hours() {
        let mut h = HourlyPeaks::new(0);
        h.learn(Learned {
            hour_start: 2 * 3600,
            value: 500.0,
        });
        assert_eq!(h.around(3 * 3600 + 100), 500.0);
        assert_eq!(h.around(3600), 500.0);
        assert_eq!(h.around(4 * 3600), 0.0);
        assert_eq!(h.around(23 * 3600), 0.0);
    }
}
