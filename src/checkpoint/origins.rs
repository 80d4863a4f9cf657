//! Numbers for topic-partitions, so a key can remember where its last event
//! came from in two bytes.

use std::sync::RwLock;

/// Topic-partitions seen by this process, numbered from 1.
#[derive(Debug, Default)]
pub struct Origins {
    known: RwLock<Vec<(String, i32)>>,
}

impl Origins {
    /// The number of `topic`/`partition`, assigned on first sight.
    pub fn index(&self, topic: &str, partition: i32) -> u16 {
        if let Ok(known) = self.known.read() {
            if let Some(i) = known
                .iter()
                .position(|(t, p)| *p == partition && t == topic)
            {
                return i as u16 + 1;
            }
        }
        let Ok(mut known) = self.known.write() else {
            return 0;
        };
        if let Some(i) = known
            .iter()
            .position(|(t, p)| *p == partition && t == topic)
        {
            return i as u16 + 1;
        }
        if known.len() >= u16::MAX as usize - 1 {
            return 0;
        }
        known.push((topic.to_owned(), partition));
        known.len() as u16
    }

    /// The topic-partition numbered `origin`.
    pub fn get(&self, origin: u16) -> Option<(String, i32)> {
        let known = self.known.read().ok()?;
        known.get((origin as usize).checked_sub(1)?).cloned()
    }
}
