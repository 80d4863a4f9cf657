//! Sources: where events come from. Kafka is the one live source; recorded
//! files go through [`keywatch_core::replay`].

pub mod dead_letter;
pub mod kafka;
pub mod lanes;
pub mod rebalance;
pub mod start;
pub mod status;
