//! Query digest statistics (like ProxySQL's stats_mysql_query_digest): per
//! normalized statement shape, how often it ran, how long it took, how many
//! rows it returned or changed, and where it was routed. Bounded: once
//! `capacity` shapes are known, new shapes are counted under one "other"
//! entry, so memory stays flat whatever the workload.

use crate::intmap::IntMap;
use serde::Serialize;
use std::sync::Mutex;

const SHARDS: usize = 8;

/// Statistics of one statement shape.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DigestStats {
    pub digest: String,
    pub text: String,
    pub count: u64,
    pub total_time_us: u64,
    pub max_time_us: u64,
    pub rows: u64,
    pub on_primary: u64,
    pub on_replicas: u64,
}

/// The digest table, sharded by digest so sessions rarely contend.
pub struct Digests {
    shards: Vec<Mutex<IntMap<u64, DigestStats>>>,
    per_shard: usize,
    other: Mutex<DigestStats>,
}

impl Digests {
    pub fn new(capacity: usize) -> Digests {
        Digests {
            shards: (0..SHARDS).map(|_| Mutex::new(IntMap::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            other: Mutex::new(DigestStats {
                digest: "other".into(),
                text: "(statement shapes beyond the table's capacity)".into(),
                ..DigestStats::default()
            }),
        }
    }

    /// Records one statement; `text` builds the normalized text, called
    /// only for a shape not seen before.
    pub fn record(
        &self,
        digest: u64,
        text: impl FnOnce() -> String,
        micros: u64,
        rows: u64,
        on_primary: bool,
    ) {
        // The high bits pick the shard: the map's hash spreads keys by
        // their low bits, which must not be the same for all of a shard.
        let shard = &self.shards[(digest >> 61) as usize % SHARDS];
        let mut map = shard.lock().expect("digest shard");
        let full = map.len() >= self.per_shard;
        let mut other_guard;
        let stats = match map.get_mut(&digest) {
            Some(s) => s,
            None if !full => map.entry(digest).or_insert_with(|| DigestStats {
                digest: format!("{digest:016x}"),
                text: text(),
                ..DigestStats::default()
            }),
            None => {
                drop(map);
                other_guard = self.other.lock().expect("digest other");
                add(&mut other_guard, micros, rows, on_primary);
                return;
            }
        };
        add(stats, micros, rows, on_primary);
    }

    /// All entries, most run first.
    pub fn snapshot(&self) -> Vec<DigestStats> {
        let mut all: Vec<DigestStats> = self
            .shards
            .iter()
            .flat_map(|s| s.lock().expect("digest shard").values().cloned().collect::<Vec<_>>())
            .collect();
        let other = self.other.lock().expect("digest other").clone();
        if other.count > 0 {
            all.push(other);
        }
        all.sort_by_key(|e| std::cmp::Reverse(e.count));
        all
    }
}

fn add(s: &mut DigestStats, micros: u64, rows: u64, on_primary: bool) {
    s.count += 1;
    s.total_time_us += micros;
    s.max_time_us = s.max_time_us.max(micros);
    s.rows += rows;
    if on_primary {
        s.on_primary += 1;
    } else {
        s.on_replicas += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_shapes_accumulate() {
        let d = Digests::new(100);
        d.record(7, || "SELECT ?".into(), 10, 1, false);
        d.record(7, || unreachable!("text built once"), 30, 2, true);
        let s = d.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].count, s[0].total_time_us, s[0].max_time_us, s[0].rows), (2, 40, 30, 3));
        assert_eq!((s[0].on_primary, s[0].on_replicas), (1, 1));
    }

    #[test]
    fn table_stays_bounded_under_any_workload() {
        let d = Digests::new(16);
        for i in 0..10_000u64 {
            d.record(i, || format!("shape {i}"), 1, 0, true);
        }
        let s = d.snapshot();
        assert!(s.len() <= 16 + SHARDS + 1, "{} entries", s.len());
        let total: u64 = s.iter().map(|e| e.count).sum();
        assert_eq!(total, 10_000);
    }
}
