//! Records deleted before keywatch applied them: a partition whose start
//! is below the broker's earliest retained record is reported and read
//! from that record.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::rebalance::{lock, SourceContext};

impl SourceContext {
    /// Newly assigned partitions whose start (the restored state's offset,
    /// or the group's committed one) is below the broker's earliest retained
    /// record: the records in between were deleted before keywatch applied
    /// them. That loss is reported (a warning naming the partition and the
    /// range, and `keywatch_source_offsets_lost_total`), and the partition
    /// is read from the earliest record the broker still has, whatever
    /// `auto.offset.reset` says.
    pub(super) fn skip_deleted(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        const ASK: Duration = Duration::from_secs(5);
        let mut starts: Vec<(String, i32, Option<i64>)> = tpl
            .elements()
            .iter()
            .map(|e| {
                let at = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (e.topic().to_owned(), e.partition(), at)
            })
            .collect();
        if starts.iter().any(|(_, _, at)| at.is_none()) {
            // Partitions that start where the group left them.
            let mut ask = TopicPartitionList::new();
            for (topic, partition, at) in &starts {
                if at.is_none() {
                    ask.add_partition(topic, *partition);
                }
            }
            match consumer.committed_offsets(ask, ASK) {
                Ok(committed) => {
                    for (topic, partition, at) in &mut starts {
                        if at.is_none() {
                            if let Some(Offset::Offset(o)) = committed
                                .find_partition(topic, *partition)
                                .map(|e| e.offset())
                            {
                                *at = Some(o);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the committed offsets to check them against retention")
                }
            }
        }
        for (topic, partition, at) in starts {
            let Some(at) = at else { continue };
            let low = match consumer.fetch_watermarks(&topic, partition, ASK) {
                Ok((low, _)) => low,
                Err(e) => {
                    tracing::debug!(%topic, partition, error = %e, "cannot read the partition's earliest offset");
                    continue;
                }
            };
            if low <= at {
                continue;
            }
            let lost = low - at;
            self.metrics
                .source_offsets_lost
                .with_label_values(&[&topic, &partition.to_string()])
                .inc_by(lost as u64);
            tracing::warn!(
                %topic,
                partition,
                from = at,
                to = low - 1,
                records = lost,
                "records were deleted by the broker before keywatch applied them (retention ran past the offset to resume from); reading from the earliest record the broker still has"
            );
            if let Err(e) = tpl.set_partition_offset(&topic, partition, Offset::Offset(low)) {
                tracing::warn!(%topic, partition, error = %e, "cannot point the partition at its earliest offset");
                continue;
            }
            let origin = self.origins.index(&topic, partition);
            let mut applied = lock(&self.applied);
            if let Some(next) = applied.get_mut(&origin) {
                *next = low;
            }
            drop(applied);
            if self.starts.is_pending(origin) {
                self.starts.expect(origin, low);
            }
        }
    }
}
