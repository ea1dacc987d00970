//! Query digest statistics (like ProxySQL's stats_mysql_query_digest): per
//! normalized statement shape, how often it ran, how long it took, how many
//! rows it returned or changed, and where it was routed. Bounded: once a
//! session worker's table knows `capacity` shapes, its new shapes are
//! counted under one "other" entry, so memory stays flat whatever the
//! workload.

use crate::intmap::IntMap;
use crate::sharded::PerWorker;
use serde::Serialize;
use std::sync::Mutex;

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

/// The digest table: one per session worker, so that sessions on
/// different cores never take the same lock (every session running the
/// same statement would otherwise meet on one entry at every statement);
/// [`Digests::snapshot`] adds them up. Each worker's table holds up to
/// `capacity` shapes.
pub struct Digests {
    tables: PerWorker<Mutex<Table>>,
    capacity: usize,
}

#[derive(Default)]
struct Table {
    shapes: IntMap<u64, DigestStats>,
    /// Shapes beyond the table's capacity, once there are any.
    other: Option<DigestStats>,
}

impl Digests {
    pub fn new(capacity: usize) -> Digests {
        Digests { tables: PerWorker::default(), capacity: capacity.max(1) }
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
        let mut guard = self.tables.local().lock().expect("digest table");
        let table = &mut *guard;
        let full = table.shapes.len() >= self.capacity;
        let stats = match table.shapes.get_mut(&digest) {
            Some(s) => s,
            None if !full => table.shapes.entry(digest).or_insert_with(|| DigestStats {
                digest: format!("{digest:016x}"),
                text: shortened(text()),
                ..DigestStats::default()
            }),
            None => table.other.get_or_insert_with(other_entry),
        };
        merge(stats, &one_statement(micros, rows, on_primary));
    }

    /// All entries, the workers' tables added up, most run first.
    pub fn snapshot(&self) -> Vec<DigestStats> {
        let mut merged: IntMap<u64, DigestStats> = IntMap::default();
        let mut other: Option<DigestStats> = None;
        for table in self.tables.all() {
            let table = table.lock().expect("digest table");
            for (digest, s) in &table.shapes {
                merged
                    .entry(*digest)
                    .and_modify(|into| merge(into, s))
                    .or_insert_with(|| s.clone());
            }
            if let Some(s) = &table.other {
                merge(other.get_or_insert_with(other_entry), s);
            }
        }
        let mut all: Vec<DigestStats> = merged.into_values().collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.count));
        // Workers may know different shapes: the table shown keeps the
        // most run `capacity` of them, as one table would.
        for s in all.split_off(all.len().min(self.capacity)) {
            merge(other.get_or_insert_with(other_entry), &s);
        }
        if let Some(other) = other {
            let at = all.partition_point(|e| e.count >= other.count);
            all.insert(at, other);
        }
        all
    }
}

/// One statement's figures, to merge into its shape's.
fn one_statement(micros: u64, rows: u64, on_primary: bool) -> DigestStats {
    DigestStats {
        count: 1,
        total_time_us: micros,
        max_time_us: micros,
        rows,
        on_primary: u64::from(on_primary),
        on_replicas: u64::from(!on_primary),
        ..DigestStats::default()
    }
}

/// Longest shape text kept, in bytes (MySQL's `max_digest_length` is
/// 1024 too): a table of thousands of shapes, each the text of a statement
/// of up to `max_packet` bytes, would hold gigabytes.
pub const MAX_TEXT: usize = 1024;

/// `text` cut to [`MAX_TEXT`] bytes at a character boundary, marked `...`
/// (also the statement a slow-statement log line shows).
pub fn shortened(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
        text.shrink_to_fit();
    }
    text
}

fn other_entry() -> DigestStats {
    DigestStats {
        digest: "other".into(),
        text: "(statement shapes beyond the table's capacity)".into(),
        ..DigestStats::default()
    }
}

fn merge(into: &mut DigestStats, s: &DigestStats) {
    into.count += s.count;
    into.total_time_us += s.total_time_us;
    into.max_time_us = into.max_time_us.max(s.max_time_us);
    into.rows += s.rows;
    into.on_primary += s.on_primary;
    into.on_replicas += s.on_replicas;
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
    fn long_shape_texts_are_cut() {
        let d = Digests::new(100);
        let long = format!("SELECT {}", "é, ".repeat(100_000));
        d.record(1, || long.clone(), 1, 1, false);
        d.record(2, || "SELECT ?".into(), 1, 1, false);
        let s = d.snapshot();
        let cut = &s.iter().find(|e| e.digest == format!("{:016x}", 1)).unwrap().text;
        assert!(
            cut.len() <= MAX_TEXT + 3
                && cut.ends_with("...")
                && long.starts_with(cut.trim_end_matches("..."))
        );
        assert!(s.iter().any(|e| e.text == "SELECT ?"));
    }

    #[test]
    fn table_stays_bounded_under_any_workload() {
        let d = Digests::new(16);
        for i in 0..10_000u64 {
            d.record(i, || format!("shape {i}"), 1, 0, true);
        }
        let s = d.snapshot();
        assert_eq!(s.len(), 16 + 1, "16 shapes and the rest");
        let total: u64 = s.iter().map(|e| e.count).sum();
        assert_eq!(total, 10_000);
    }

    #[test]
    fn the_workers_tables_add_up_by_shape() {
        let d = std::sync::Arc::new(Digests::new(4));
        let digests = d.clone();
        crate::sharded::on_workers(3, move |worker| {
            digests.record(7, || "SELECT ?".into(), 10 * (worker as u64 + 1), 1, worker == 0);
            for i in 0..10 {
                digests.record(100 + i, || format!("shape {i}"), 1, 0, false);
            }
        });
        let s = d.snapshot();
        let seven = s.iter().find(|e| e.text == "SELECT ?").expect("merged shape");
        assert_eq!((seven.count, seven.total_time_us, seven.max_time_us), (3, 60, 30));
        assert_eq!((seven.on_primary, seven.on_replicas), (1, 2));
        assert_eq!(s.iter().filter(|e| e.text == "SELECT ?").count(), 1);
        let other = s.iter().find(|e| e.digest == "other").expect("beyond capacity");
        assert_eq!(other.count, 33 - 3 - 3 * 3, "the 4 most run shapes are kept");
        assert_eq!(s.iter().map(|e| e.count).sum::<u64>(), 33);
        // Each worker knew 4 shapes, but only 4 in all are shown.
        assert_eq!(s.len(), 4 + 1);
    }
}
