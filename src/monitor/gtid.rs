//! GTID positions and sets, parsed from what servers print, and the one
//! question the monitor asks of them: has a replica applied everything the
//! primary had?
//!
//! MariaDB: a *position* is a comma list of `domain-server_id-seq`, one
//! GTID per domain (`0-1-24,1-2-5`). Coverage compares `seq` per domain and
//! ignores `server_id`, as `MASTER_GTID_WAIT` does.
//!
//! MySQL: a *GTID set* is `uuid:1-5:7-9,uuid2:1-3` (8.3+ may add tags:
//! `uuid:tag:1-5`), printed with newlines after the commas.
//!
//! Both parsers accept surrounding whitespace and newlines anywhere between
//! tokens, treat an empty string as the empty position/set, and return an
//! error (never panic) on anything else.

use std::collections::BTreeMap;

/// Why a GTID string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtidError {
    #[error("malformed MariaDB GTID `{0}` (want domain-server_id-seq)")]
    MariaDb(String),
    #[error("malformed MySQL GTID set element `{0}` (want uuid:n[-m][:...])")]
    MySql(String),
}

/// One MariaDB GTID: `domain-server_id-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariaDbGtid {
    pub domain: u32,
    pub server_id: u32,
    pub seq: u64,
}

impl std::str::FromStr for MariaDbGtid {
    type Err = GtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let bad = || GtidError::MariaDb(text.to_string());
        let mut parts = text.split('-');
        let (Some(domain), Some(server_id), Some(seq), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(MariaDbGtid {
            domain: parse_digits(domain).ok_or_else(bad)?,
            server_id: parse_digits(server_id).ok_or_else(bad)?,
            seq: parse_digits(seq).ok_or_else(bad)?,
        })
    }
}

/// A MariaDB GTID position: the highest `seq` seen per replication domain.
///
/// `@@gtid_binlog_pos` may list several GTIDs of one domain (one per
/// server_id); the position keeps the highest `seq`, which in strict mode
/// is the latest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MariaDbPosition {
    /// domain -> highest seq.
    seq_by_domain: BTreeMap<u32, u64>,
}

impl MariaDbPosition {
    /// The highest `seq` of `domain`, if the position has that domain.
    pub fn seq(&self, domain: u32) -> Option<u64> {
        self.seq_by_domain.get(&domain).copied()
    }

    /// True when, in a domain both name, this position is past `other`.
    pub fn ahead_of(&self, other: &MariaDbPosition) -> bool {
        self.seq_by_domain
            .iter()
            .any(|(domain, seq)| other.seq(*domain).is_some_and(|theirs| *seq > theirs))
    }

    /// True when the position names no domain.
    pub fn is_empty(&self) -> bool {
        self.seq_by_domain.is_empty()
    }

    /// Whether this position has reached `target` in every domain of
    /// `target` (a domain missing here is not covered; an empty target is).
    pub fn covers(&self, target: &MariaDbPosition) -> bool {
        target
            .seq_by_domain
            .iter()
            .all(|(domain, seq)| self.seq(*domain).is_some_and(|have| have >= *seq))
    }
}

impl std::str::FromStr for MariaDbPosition {
    type Err = GtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut position = MariaDbPosition::default();
        for item in text.split(',') {
            if item.trim().is_empty() {
                // `@@gtid_slave_pos` is '' on a server that never replicated;
                // a trailing comma is harmless.
                continue;
            }
            let gtid: MariaDbGtid = item.parse()?;
            let seq = position.seq_by_domain.entry(gtid.domain).or_insert(0);
            *seq = (*seq).max(gtid.seq);
        }
        Ok(position)
    }
}

/// Whether a server's applied GTID `position` holds `target`, in the
/// server family's own notation (MariaDB positions, MySQL GTID sets).
pub fn position_covers(flavor: super::Flavor, position: &str, target: &str) -> bool {
    match flavor {
        super::Flavor::MariaDb => covers(position, target),
        super::Flavor::MySql => contains(position, target),
    }
}

/// Whether the MariaDB `position` covers `target` (a GTID or a position).
/// False when either does not parse.
pub fn covers(position: &str, target: &str) -> bool {
    match (position.parse::<MariaDbPosition>(), target.parse::<MariaDbPosition>()) {
        (Ok(position), Ok(target)) => position.covers(&target),
        _ => false,
    }
}

/// A MySQL GTID set: per source (uuid and optional tag), sorted disjoint
/// closed intervals of transaction numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MySqlGtidSet {
    /// (lower-case uuid, tag) -> merged intervals `[start, end]`.
    intervals: BTreeMap<(String, String), Vec<(u64, u64)>>,
}

impl MySqlGtidSet {
    /// True when the set holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.intervals.values().all(Vec::is_empty)
    }

    /// Whether every transaction of `subset` is in this set.
    pub fn contains(&self, subset: &MySqlGtidSet) -> bool {
        subset.intervals.iter().all(|(source, wanted)| {
            let have = self.intervals.get(source).map(Vec::as_slice).unwrap_or(&[]);
            wanted.iter().all(|interval| interval_covered(have, *interval))
        })
    }

    fn add(&mut self, source: (String, String), start: u64, end: u64) {
        let list = self.intervals.entry(source).or_default();
        list.push((start, end));
        list.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(list.len());
        for &(start, end) in list.iter() {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        *list = merged;
    }
}

/// Whether `[start, end]` lies inside one of the merged intervals `have`.
fn interval_covered(have: &[(u64, u64)], (start, end): (u64, u64)) -> bool {
    have.iter().any(|&(a, b)| a <= start && end <= b)
}

impl std::str::FromStr for MySqlGtidSet {
    type Err = GtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut set = MySqlGtidSet::default();
        for element in text.split(',') {
            let element: String = element.chars().filter(|c| !c.is_whitespace()).collect();
            if element.is_empty() {
                continue;
            }
            parse_set_element(&element, &mut set)
                .ok_or_else(|| GtidError::MySql(element.clone()))?;
        }
        Ok(set)
    }
}

/// `uuid(:tag)?(:interval)+(:tag(:interval)+)*` into `set`; None if malformed.
fn parse_set_element(element: &str, set: &mut MySqlGtidSet) -> Option<()> {
    let mut parts = element.split(':');
    let uuid = parts.next().filter(|uuid| is_uuid(uuid))?.to_ascii_lowercase();
    let mut tag = String::new();
    let mut intervals = 0;
    for part in parts {
        if part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            if !part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            tag = part.to_ascii_lowercase();
            continue;
        }
        let (start, end) = match part.split_once('-') {
            Some((start, end)) => (parse_digits(start)?, parse_digits(end)?),
            None => {
                let n = parse_digits(part)?;
                (n, n)
            }
        };
        if start == 0 || end < start {
            return None;
        }
        set.add((uuid.clone(), tag.clone()), start, end);
        intervals += 1;
    }
    (intervals > 0).then_some(())
}

fn is_uuid(text: &str) -> bool {
    let hex_groups: Vec<&str> = text.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    hex_groups.len() == lengths.len()
        && hex_groups
            .iter()
            .zip(lengths)
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether the MySQL GTID `set` contains `subset`. False when either does
/// not parse.
pub fn contains(set: &str, subset: &str) -> bool {
    match (set.parse::<MySqlGtidSet>(), subset.parse::<MySqlGtidSet>()) {
        (Ok(set), Ok(subset)) => set.contains(&subset),
        _ => false,
    }
}

/// Decimal digits only (no sign, no `+`), trimmed, within the type's range.
fn parse_digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID_A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const UUID_B: &str = "4f22ab58-82db-22f2-af44-d91bb0530673";

    #[test]
    fn gtid_position_covers_lower_seq_in_same_domain() {
        assert!(covers("0-1-24", "0-1-20"));
    }

    #[test]
    fn gtid_position_covers_equal_seq() {
        assert!(covers("0-1-24", "0-1-24"));
    }

    #[test]
    fn gtid_position_does_not_cover_higher_seq() {
        assert!(!covers("0-1-24", "0-1-25"));
    }

    #[test]
    fn gtid_coverage_ignores_server_id() {
        assert!(covers("0-2-30", "0-1-30"));
        assert!(!covers("0-1-29", "0-2-30"));
    }

    #[test]
    fn gtid_domain_missing_from_position_is_not_covered() {
        assert!(!covers("0-1-100", "0-1-5,1-2-1"));
    }

    #[test]
    fn gtid_position_covers_every_domain_of_multi_domain_target() {
        assert!(covers("1-2-5,0-1-24", "0-1-24,1-2-5"));
        assert!(!covers("1-2-4,0-1-24", "0-1-24,1-2-5"));
    }

    #[test]
    fn gtid_empty_target_is_covered_and_empty_position_covers_nothing() {
        assert!(covers("", ""));
        assert!(covers("0-1-1", ""));
        assert!(!covers("", "0-1-1"));
    }

    #[test]
    fn gtid_position_tolerates_whitespace_and_newlines() {
        assert!(covers(" 0-1-24,\n 1-2-5 \n", "1-2-5,\n0-1-3"));
    }

    #[test]
    fn gtid_position_keeps_highest_seq_per_domain() {
        let position: MariaDbPosition = "0-1-10,0-2-12,0-3-11".parse().unwrap();
        assert_eq!(position.seq(0), Some(12));
    }

    #[test]
    fn gtid_garbage_is_an_error_and_never_covers() {
        for garbage in [
            "x",
            "0-1",
            "0-1-2-3",
            "-1-2",
            "0--2",
            "0-1-+2",
            "0-1-99999999999999999999",
            "4294967296-1-1",
            "0-1-2;",
            "\u{0}",
            "0-1-2,,zz",
            "é-1-1",
        ] {
            assert!(garbage.parse::<MariaDbPosition>().is_err(), "{garbage:?}");
            assert!(!covers(garbage, ""), "{garbage:?}");
            assert!(!covers("0-1-5", garbage), "{garbage:?}");
        }
    }

    #[test]
    fn gtid_parses_single_gtid() {
        let gtid: MariaDbGtid = " 2-3-4 ".parse().unwrap();
        assert_eq!(gtid, MariaDbGtid { domain: 2, server_id: 3, seq: 4 });
    }

    #[test]
    fn mysql_set_contains_subset_of_intervals() {
        let set = format!("{UUID_A}:1-5:7-9,{UUID_B}:1-3");
        assert!(contains(&set, &format!("{UUID_A}:2-4:8")));
        assert!(contains(&set, &format!("{UUID_B}:3")));
        assert!(contains(&set, ""));
    }

    #[test]
    fn mysql_set_does_not_contain_gap_or_missing_uuid() {
        let set = format!("{UUID_A}:1-5:7-9");
        assert!(!contains(&set, &format!("{UUID_A}:6")));
        assert!(!contains(&set, &format!("{UUID_A}:4-7")));
        assert!(!contains(&set, &format!("{UUID_B}:1")));
    }

    #[test]
    fn mysql_set_merges_adjacent_intervals() {
        let set = format!("{UUID_A}:1-5:6-9");
        assert!(contains(&set, &format!("{UUID_A}:4-7")));
    }

    #[test]
    fn mysql_set_tolerates_newlines_and_upper_case() {
        let set = format!("{UUID_A}:1-10,\n{}:1-3\n", UUID_B.to_uppercase());
        assert!(contains(&set, &format!("{UUID_B}:2,\n {UUID_A}:10")));
    }

    #[test]
    fn mysql_set_with_tags_keeps_tags_apart() {
        let set = format!("{UUID_A}:1-5:blue:1-2");
        assert!(contains(&set, &format!("{UUID_A}:blue:2")));
        assert!(!contains(&set, &format!("{UUID_A}:blue:3")));
        assert!(contains(&set, &format!("{UUID_A}:3")));
    }

    #[test]
    fn mysql_set_garbage_is_an_error_and_never_contains() {
        for garbage in [
            "x",
            "abc:1-5",
            UUID_A,
            &format!("{UUID_A}:"),
            &format!("{UUID_A}:0"),
            &format!("{UUID_A}:5-1"),
            &format!("{UUID_A}:1-"),
            &format!("{UUID_A}:-3"),
            &format!("{UUID_A}:1-99999999999999999999"),
            &format!("{UUID_A}:tag-x:1"),
            "\u{0}:1",
        ] {
            assert!(garbage.parse::<MySqlGtidSet>().is_err(), "{garbage:?}");
            assert!(!contains(garbage, ""), "{garbage:?}");
            assert!(!contains(&format!("{UUID_A}:1-9"), garbage), "{garbage:?}");
        }
    }

    #[test]
    fn mysql_empty_set_parses_empty() {
        let set: MySqlGtidSet = " \n".parse().unwrap();
        assert!(set.is_empty());
    }
}
