//! The parser tier: statements the lexer is unsure of are parsed with `sqlparser`
//! (MySqlDialect) and the kind read off the syntax tree. Verdicts are cached in a
//! [`Tier2Cache`], because parsing costs 10–250 µs.
//!
//! The tree only decides the *kind* (a data-changing statement anywhere in it, CTEs and
//! subqueries included, makes it that statement; otherwise a query is a read) and adds
//! LOCKING_READ and INTO where it sees them; every other flag comes from the lexer, which sees every token. A text that
//! does not parse is `Unknown` (the proxy sends it to the primary): unsure never means read.
//!
//! A verdict depends only on the statement's normalized text (literal values never decide
//! a kind that reaches this tier), so the cache is keyed by a hash of that text. Not by the
//! fast digest, which a crafted statement could collide with another's: the cache key is
//! SipHash with per-cache random keys, so one client cannot poison another's verdict.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hasher, RandomState};
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlparser::ast::{Query, SetExpr, Statement, Visit, Visitor};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::digest::{Normalizer, Out};
use super::info::{Flags, StatementKind as K};
use super::lexer::Backslashes;
use super::scan;
use super::words::Kw;

/// The parser tier's verdict on one statement.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Verdict {
    pub kind: K,
    pub flags: Flags,
}

const UNKNOWN: Verdict = Verdict { kind: K::Unknown, flags: Flags::EMPTY };

/// Parses one statement's code (see `scan::code_text`) and decides its kind.
pub(super) fn decide(code: &str) -> Verdict {
    // sqlparser bounds its recursion, but a panic on some odd input must still never
    // escape the classifier: unsure means primary.
    let parsed = std::panic::catch_unwind(|| Parser::parse_sql(&MySqlDialect {}, code));
    match parsed {
        Ok(Ok(stmts)) if stmts.len() == 1 => statement(&stmts[0]),
        _ => UNKNOWN,
    }
}

fn statement(s: &Statement) -> Verdict {
    let mut walk = Walk::default();
    let _ = s.visit(&mut walk);
    let kind = match s {
        Statement::Query(_) => walk.write.unwrap_or(K::Select),
        _ => walk.write.unwrap_or(K::Other),
    };
    Verdict { kind, flags: walk.flags }
}

/// Walks the whole tree: the first data-changing statement anywhere (the root first,
/// then CTEs, set operations and subqueries) decides the kind.
#[derive(Default)]
struct Walk {
    write: Option<K>,
    flags: Flags,
}

impl Visitor for Walk {
    type Break = ();

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        let kind = match s {
            Statement::Insert(i) if i.replace_into => K::Replace,
            Statement::Insert(_) => K::Insert,
            Statement::Update(_) => K::Update,
            Statement::Delete(_) => K::Delete,
            Statement::Merge(_) => K::Other,
            _ => return ControlFlow::Continue(()),
        };
        self.write.get_or_insert(kind);
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if !q.locks.is_empty() {
            self.flags |= Flags::LOCKING_READ;
        }
        if let SetExpr::Select(s) = q.body.as_ref()
            && s.into.is_some()
        {
            self.flags |= Flags::INTO;
        }
        ControlFlow::Continue(())
    }
}

/// A `Hasher` that passes a digest through: keys are already hashes.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Slot {
    key: u64,
    verdict: Verdict,
    referenced: bool,
}

/// One shard: a CLOCK (second chance) cache, which approximates LRU with O(1) work.
struct Shard {
    slots: Vec<Slot>,
    index: HashMap<u64, usize, BuildHasherDefault<Identity>>,
    hand: usize,
    capacity: usize,
}

impl Shard {
    fn new(capacity: usize) -> Shard {
        Shard { slots: Vec::new(), index: HashMap::default(), hand: 0, capacity }
    }

    fn get(&mut self, key: u64) -> Option<Verdict> {
        let i = *self.index.get(&key)?;
        self.slots[i].referenced = true;
        Some(self.slots[i].verdict)
    }

    fn insert(&mut self, key: u64, verdict: Verdict) {
        if let Some(&i) = self.index.get(&key) {
            self.slots[i].verdict = verdict;
            return;
        }
        let slot = Slot { key, verdict, referenced: false };
        if self.slots.len() < self.capacity {
            self.index.insert(key, self.slots.len());
            self.slots.push(slot);
            return;
        }
        while self.slots[self.hand].referenced {
            self.slots[self.hand].referenced = false;
            self.hand = (self.hand + 1) % self.capacity;
        }
        self.index.remove(&self.slots[self.hand].key);
        self.index.insert(key, self.hand);
        self.slots[self.hand] = slot;
        self.hand = (self.hand + 1) % self.capacity;
    }
}

/// Normalized text into a keyed SipHash.
struct Keyed(DefaultHasher);

impl Out for Keyed {
    fn byte(&mut self, b: u8) {
        self.0.write_u8(b);
    }
    fn text(&mut self, s: &str) {
        self.0.write(s.as_bytes());
    }
    fn upper(&mut self, s: &str) {
        s.bytes().for_each(|b| self.0.write_u8(b.to_ascii_uppercase()));
    }
    fn lower(&mut self, s: &str) {
        s.bytes().for_each(|b| self.0.write_u8(b.to_ascii_lowercase()));
    }
    fn keyword(&mut self, kw: Kw) {
        self.0.write(kw.name().as_bytes());
    }
}

/// Hit and miss counts of a [`Tier2Cache`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to parse.
    pub misses: u64,
    /// Verdicts held now.
    pub entries: usize,
    /// Most verdicts it will hold.
    pub capacity: usize,
}

/// A bounded, thread-safe cache of parser-tier verdicts keyed by statement digest.
///
/// Sharded std `Mutex`es: each lock is held for a hash lookup only, never across the
/// parse, so contention stays low without an async lock or an extra dependency.
pub struct Tier2Cache {
    keys: RandomState,
    shards: Box<[Mutex<Shard>]>,
    hits: AtomicU64,
    misses: AtomicU64,
}

const SHARDS: usize = 8;

impl Tier2Cache {
    /// A cache holding about `capacity` verdicts (at least one per shard).
    pub fn new(capacity: usize) -> Tier2Cache {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Tier2Cache {
            keys: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new(per_shard))).collect(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Shard> {
        let m = &self.shards[(key >> 61) as usize % SHARDS];
        m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cache key of one statement: the keyed hash of its normalized text, fed
    /// straight from the normalizer (no allocation).
    fn key(&self, stmt: &str, backslashes: Backslashes) -> u64 {
        let mut norm = Normalizer::new(Keyed(self.keys.build_hasher()));
        scan::normalize_only(stmt, backslashes, &mut norm);
        norm.out.0.finish()
    }

    /// The cached verdict for one statement, or parse its code and remember the verdict.
    pub(super) fn get_or_decide(&self, stmt: &str, backslashes: Backslashes) -> Verdict {
        let key = self.key(stmt, backslashes);
        if let Some(v) = self.shard(key).get(key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return v;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let v = decide(&scan::code_text(stmt, backslashes));
        self.shard(key).insert(key, v);
        v
    }

    /// Hits, misses and size so far.
    pub fn stats(&self) -> CacheStats {
        let (mut entries, mut capacity) = (0, 0);
        for m in self.shards.iter() {
            let s = m.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            entries += s.slots.len();
            capacity += s.capacity;
        }
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries,
            capacity,
        }
    }
}

impl std::fmt::Debug for Tier2Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tier2Cache").field("stats", &self.stats()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(kind: K) -> Verdict {
        Verdict { kind, flags: Flags::EMPTY }
    }

    #[test]
    fn cte_ending_in_update_is_update() {
        assert_eq!(decide("WITH x AS (SELECT 1) UPDATE t SET a = 1").kind, K::Update);
    }

    #[test]
    fn parenthesised_union_is_select() {
        assert_eq!(decide("WITH a AS (SELECT 1) (SELECT * FROM a)").kind, K::Select);
    }

    #[test]
    fn dml_nested_in_an_expression_is_found() {
        assert_eq!(decide("SELECT * FROM t WHERE a IN (DELETE FROM u)").kind, K::Delete);
    }

    #[test]
    fn parse_failure_is_unknown() {
        assert_eq!(decide("SELECT * FROM t LOCK IN SHARE MODE").kind, K::Unknown);
        assert_eq!(decide("FROB THE WIDGET").kind, K::Unknown);
    }

    #[test]
    fn two_statements_are_not_one_verdict() {
        assert_eq!(decide("SELECT 1; SELECT 2").kind, K::Unknown);
    }

    #[test]
    fn for_update_in_tree_sets_locking_read() {
        assert!(decide("SELECT * FROM t FOR UPDATE").flags.contains(Flags::LOCKING_READ));
    }

    #[test]
    fn cache_returns_stored_verdict_without_parsing() {
        let cache = Tier2Cache::new(16);
        assert_eq!(cache.get_or_decide("SELECT 1", Backslashes::Escape).kind, K::Select);
        assert_eq!(cache.get_or_decide("select 2", Backslashes::Escape).kind, K::Select);
        assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
    }

    #[test]
    fn different_statements_get_different_entries() {
        let cache = Tier2Cache::new(16);
        cache.get_or_decide("SELECT 1", Backslashes::Escape);
        assert_eq!(cache.get_or_decide("UPDATE t SET a = 1", Backslashes::Escape).kind, K::Update);
        assert_eq!(cache.stats().misses, 2);
    }

    #[test]
    fn cache_stays_within_capacity() {
        let cache = Tier2Cache::new(8);
        for key in 0..1000u64 {
            cache.shard(key.wrapping_mul(0x9e37_79b9_7f4a_7c15)).insert(key, v(K::Select));
        }
        let s = cache.stats();
        assert!(s.entries <= s.capacity, "{s:?}");
    }

    #[test]
    fn clock_keeps_referenced_entries() {
        let mut shard = Shard::new(2);
        shard.insert(1, v(K::Select));
        shard.insert(2, v(K::Update));
        shard.get(1);
        shard.insert(3, v(K::Delete));
        assert!(shard.get(1).is_some());
        assert!(shard.get(2).is_none());
        assert!(shard.get(3).is_some());
    }

    #[test]
    fn cache_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Tier2Cache>();
    }
}
