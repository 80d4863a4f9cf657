//! Sources: where events come from. Kafka is the one live source; recorded
//! files go through [`keywatch_core::replay`].
//!
//! - [`kafka`]: the poll loop; [`lanes`]: the apply threads it feeds;
//! - [`rebalance`]: partitions moving in and out (state restored, handed
//!   off, offsets committed); `retention`: partitions whose start the
//!   broker already deleted; [`start`]: each partition's first record
//!   checked against the state;
//! - `client`: librdkafka's statistics, errors and log; [`status`]: what
//!   `/readyz` and the metrics read; [`dead_letter`]: bad events kept.

mod client;
pub mod dead_letter;
pub mod kafka;
pub mod lanes;
pub mod rebalance;
mod retention;
pub mod start;
pub mod status;
