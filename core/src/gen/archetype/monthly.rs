//! Monthly key: used on the 1st of each month only, ~30-day gaps between.

use std::net::Ipv4Addr;

use chrono::{DateTime, Datelike};
use rand::rngs::SmallRng;
use rand::Rng;

use super::{project, Built, Pattern};
use crate::gen::agent::AgentKind;
use crate::gen::catalog::{
    home_region, CE_GET_COST, MONTHLY_THEME, ORG_LIST_ACCOUNTS, REGIONS, S3_PUT_OBJECT,
    STS_CALLER_IDENTITY,
};
use crate::gen::net::Net24;
use crate::gen::traffic::{poisson, upgrade_days, Day, Habits, Sink, Span, MINUTE_MS};

/// A monthly report.
#[derive(Debug)]
pub(crate) struct Monthly {
    host: Ipv4Addr,
    utc_offset_min: i32,
    /// Local start, minutes after midnight.
    start_min: f64,
    calls: f64,
}

impl Pattern for Monthly {
    fn episodes(&self, day: &Day, rng: &mut SmallRng, sink: &mut Sink<'_>) {
        let first = DateTime::from_timestamp_millis(day.start_ms).is_some_and(|d| d.day() == 1);
        if !first {
            return;
        }
        let start = day.at_local(
            self.utc_offset_min,
            self.start_min + rng.gen_range(0.0..10.0),
        );
        let length = rng.gen_range(30 * MINUTE_MS..90 * MINUTE_MS);
        // The same script every month: who am I, which accounts, their
        // costs one by one, then the report goes to S3.
        let n = poisson(rng, self.calls * day.volume);
        let mut times: Vec<i64> = (0..n).map(|_| start + rng.gen_range(0..length)).collect();
        times.sort_unstable();
        let last = times.len().saturating_sub(1);
        for (i, t) in times.into_iter().enumerate() {
            let action = match i {
                0 => &STS_CALLER_IDENTITY,
                1 => &ORG_LIST_ACCOUNTS,
                i if i == last => &S3_PUT_OBJECT,
                _ => &CE_GET_COST,
            };
            let error = sink.habits().error(rng);
            sink.call(t, self.host, action, error);
        }
    }
}

/// A report of 20–60 calls run mid-morning on the 1st.
pub(super) fn build(rng: &mut SmallRng, span: &Span) -> Built {
    let region = home_region(rng);
    let habits = Habits::new(
        MONTHLY_THEME,
        MONTHLY_THEME.len(),
        0.005,
        upgrade_days(rng, span.days, 1),
        region,
    );
    let monthly = Monthly {
        host: Net24::random(rng).random_host(rng),
        utc_offset_min: REGIONS[usize::from(region)].utc_offset_min,
        start_min: rng.gen_range(540.0..660.0),
        calls: rng.gen_range(20.0..60.0),
    };
    let p = project(rng);
    Built::new(
        Box::new(monthly),
        habits,
        AgentKind::Server,
        format!("finops-{p}-report"),
        format!("{p}-finance"),
        rng,
    )
}
