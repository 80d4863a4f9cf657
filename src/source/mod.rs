//! Sources: where events come from. Kafka is the one live source; recorded
//! files go through [`crate::replay`].

pub mod dead_letter;
pub mod kafka;
pub mod lanes;
pub mod produce;
pub mod start;
