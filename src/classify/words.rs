//! Keyword and builtin-function lookup: compile-time hash tables, no allocation.
//!
//! The lexer hashes every bare word ([`word_hash`], case-insensitive, 8 bytes at a time);
//! that hash finds the word in [`keyword`] with one or two probes of a table
//! built by `const fn` at compile time, and a hit is confirmed by comparing the text, so
//! a hash collision can never turn an identifier into a keyword. Function names live in a
//! second table ([`function`]) because many words are both (`IF`, `LEFT`, `REPLACE`).

use super::builtins::{LAST_STATEMENT, NOT_CALLS, PURE, SIDE_EFFECT};

/// `| FOLD` maps ASCII letters to lowercase (and leaves digits, `_`-free words alone).
pub(super) const FOLD: u64 = 0x2020_2020_2020_2020;
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// One step of the word hash over an 8-byte group (see [`word_hash`]).
#[inline(always)]
pub(super) const fn mix(h: u64, chunk: u64) -> u64 {
    let h = (h ^ (chunk | FOLD)).wrapping_mul(MUL);
    h ^ (h >> 29)
}

/// Case-insensitive hash of a word, 8 bytes at a time (compile-time version). `| 0x20`
/// folds ASCII case; it also merges a few non-letters, which the text comparison after
/// every hash hit sorts out.
const fn word_hash_const(w: &[u8]) -> u64 {
    let mut h = 0;
    let mut i = 0;
    while i < w.len() {
        let mut chunk = 0u64;
        let mut j = 0;
        while j < 8 && i + j < w.len() {
            chunk |= (w[i + j] as u64) << (8 * j);
            j += 1;
        }
        h = mix(h, chunk);
        i += 8;
    }
    finish(h, w.len())
}

/// Folds the word's length into its hash (last, so the lexer can hash while it scans).
#[inline(always)]
pub(super) const fn finish(h: u64, len: usize) -> u64 {
    let h = (h ^ len as u64).wrapping_mul(MUL);
    h ^ (h >> 32)
}

/// What a table lookup needs of a word: its hash and its folded first 8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(super) struct WordKey {
    pub hash: u64,
    pub head: u64,
}

impl WordKey {
    /// The key of `w` (the lexer computes the same while it scans the word).
    pub fn of(w: &[u8]) -> WordKey {
        WordKey { hash: word_hash(w), head: head(w) }
    }
}

/// Case-insensitive hash of a word (the runtime version of `word_hash_const`).
#[inline]
pub(super) fn word_hash(w: &[u8]) -> u64 {
    let mut h = 0;
    let mut chunks = w.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut chunk = 0u64;
        for (j, b) in rest.iter().enumerate() {
            chunk |= u64::from(*b) << (8 * j);
        }
        h = mix(h, chunk);
    }
    finish(h, w.len())
}

const EMPTY: u16 = u16::MAX;

/// One table slot: the name's hash, its first 8 bytes case-folded, its length and id.
#[derive(Clone, Copy)]
struct Slot {
    hash: u64,
    head: u64,
    len: u8,
    id: u16,
}

/// An open-addressed table from word hash to an index into a name list.
struct Table<const N: usize> {
    slots: [Slot; N],
}

const EMPTY_SLOT: Slot = Slot { hash: 0, head: 0, len: 0, id: EMPTY };

/// The first (up to) 8 bytes of a word, zero-padded, case-folded like the hash.
#[inline(always)]
pub(super) const fn head(w: &[u8]) -> u64 {
    let mut chunk = 0u64;
    let mut j = 0;
    while j < 8 && j < w.len() {
        chunk |= (w[j] as u64) << (8 * j);
        j += 1;
    }
    chunk | FOLD
}

const fn insert<const N: usize>(t: &mut Table<N>, name: &str, id: u16) {
    let w = name.as_bytes();
    let h = word_hash_const(w);
    let mut slot = (h as usize) & (N - 1);
    while t.slots[slot].id != EMPTY {
        slot = (slot + 1) & (N - 1);
    }
    t.slots[slot] = Slot { hash: h, head: head(w), len: w.len() as u8, id };
}

impl<const N: usize> Table<N> {
    /// The id of `word`, whose `word_hash` is `hash`. A hit is confirmed on the text: for
    /// word characters `| 0x20` folds exactly ASCII case, so comparing folded bytes is a
    /// case-insensitive comparison.
    #[inline]
    fn find(
        &self,
        key: WordKey,
        word: &[u8],
        name_of: impl Fn(u16) -> &'static str,
    ) -> Option<u16> {
        let WordKey { hash, head } = key;
        let mut slot = (hash as usize) & (N - 1);
        loop {
            let s = &self.slots[slot];
            if s.id == EMPTY {
                return None;
            }
            if s.hash == hash && s.len as usize == word.len() && s.head == head {
                let tail_matches = word.len() <= 8
                    || name_of(s.id).as_bytes()[8..].eq_ignore_ascii_case(&word[8..]);
                if tail_matches {
                    return Some(s.id);
                }
            }
            slot = (slot + 1) & (N - 1);
        }
    }
}

macro_rules! keywords {
    ($($name:ident),* $(,)?) => {
        /// A keyword the classifier, the digest or the table finder cares about.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        #[repr(u16)]
        pub(super) enum Kw { $($name),* }
        pub(super) const KW_NAMES: &[&str] = &[$(stringify!($name)),*];
        const KW_ALL: &[Kw] = &[$(Kw::$name),*];
    };
}

keywords! {
    ACCOUNT, ACTION, ADD, ADMIN, AFTER, AGAINST, ALGORITHM, ALL, ALTER, ALWAYS, ANALYZE, AND,
    ANY, AS, ASC, ATOMIC, AUTOCOMMIT, AUTO_INCREMENT, BACKUP, BEFORE, BEGIN, BETWEEN, BINARY,
    BINLOG, BOTH, BY, CACHE, CALL, CASCADE, CASE, CHAIN, CHANGE, CHARACTER, CHARSET, CHECK,
    CHECKSUM, CLONE, CLOSE, COLLATE, COLUMN, COLUMNS, COMMENT, COMMIT, COMMITTED, CONNECTION,
    CONSISTENT, CONSTRAINT, COUNT, CREATE, CROSS, CURRENT, DATA, DATABASE, DATABASES,
    DEALLOCATE, DECLARE, DEFAULT, DEFINER, DELAYED, DELETE, DESC, DESCRIBE, DIAGNOSTICS,
    DISTINCT, DISTINCTROW, DIV, DO, DROP, DUAL, DUMPFILE, DUPLICATE, ELSE, ELSEIF, ENCLOSED,
    END, ENGINE, ERRORS, ESCAPE, ESCAPED, EVENT, EXCEPT, EXECUTE, EXISTS, EXPLAIN, EXTENDED,
    FALSE, FETCH, FIELDS, FIRST, FLUSH, FOLLOWING, FOR, FORCE, FOREIGN, FORMAT, FROM, FULL,
    FULLTEXT, FUNCTION, GET, GLOBAL, GRANT, GROUP, HANDLER, HAVING, HELP, HIGH_PRIORITY, IF,
    IGNORE, IMPORT, IN, INDEX, INDEXES, INFILE, INNER, INSERT, INSTALL, INSTANCE, INTERSECT, INTERVAL,
    INTO, IS, ISOLATION, ITERATE, JOIN, KEY, KEYS, KILL, LAST, LATERAL, LEADING, LEAVE, LEFT, LEVEL,
    LIKE, LIMIT, LINES, LOAD, LOCAL, LOCK, LOCKED, LOOP, LOW_PRIORITY, MATCH, MODE, MODIFY,
    NAMES, NATURAL, NEXT, NO, NOT, NOWAIT, NO_WRITE_TO_BINLOG, NULL, OFF, OFFSET, ON, ONLY,
    OPEN, OPTIMIZE, OPTION, OPTIONALLY, OR, ORDER, OUTER, OUTFILE, OVER, PARTITION, PARTITIONS,
    PASSWORD, PERSIST, PERSIST_ONLY, PRECEDING, PREPARE, PREVIOUS, PRIMARY, PROCEDURE,
    PROCESSLIST, PROFILE, PROFILES, PURGE, QUICK, RANGE, READ, RECURSIVE, REFERENCES, REGEXP,
    RELEASE, RENAME, REPAIR, REPEAT, REPEATABLE, REPLACE, RESET, RESIGNAL, RESTART, RETURN,
    RETURNS, REVOKE, RIGHT, RLIKE, ROLE, ROLLBACK, ROLLUP, ROW, ROWS, SAVEPOINT, SCHEMA, SELECT,
    SERIALIZABLE, SESSION, SET, SHARE, SHOW, SHUTDOWN, SIGNAL, SKIP, SNAPSHOT, SOME,
    SQL_BIG_RESULT, SQL_BUFFER_RESULT, SQL_CACHE, SQL_CALC_FOUND_ROWS, SQL_NO_CACHE,
    SQL_SMALL_RESULT, START, STATEMENT, STATUS, STOP, STRAIGHT_JOIN, TABLE, TABLES, TEMPORARY,
    TERMINATED, THEN, TO, TRAILING, TRANSACTION, TRIGGER, TRUE, TRUNCATE, UNCOMMITTED,
    UNINSTALL, UNION, UNIQUE, UNLOCK, UNSIGNED, UNTIL, UPDATE, USE, USER, USING, VALUE, VALUES,
    VARIABLES, VIEW, WARNINGS, WHEN, WHERE, WHILE, WINDOW, WITH, WORK, WRITE, XA, XOR,
}

/// Keywords MySQL reserves: they cannot be a bare table name, so the table finder skips them.
#[rustfmt::skip]
const RESERVED: &[Kw] = &[
    Kw::ALL, Kw::ALTER, Kw::ANALYZE, Kw::AND, Kw::AS, Kw::ASC, Kw::BETWEEN, Kw::BY, Kw::CALL,
    Kw::CASE, Kw::CHECK, Kw::COLUMN, Kw::CONSTRAINT, Kw::CREATE, Kw::CROSS, Kw::DATABASE,
    Kw::DEFAULT, Kw::DELAYED, Kw::DELETE, Kw::DESC, Kw::DESCRIBE, Kw::DISTINCT, Kw::DROP,
    Kw::DUAL, Kw::ELSE, Kw::EXISTS, Kw::EXPLAIN, Kw::FALSE, Kw::FOR, Kw::FORCE, Kw::FROM,
    Kw::GROUP, Kw::HAVING, Kw::HIGH_PRIORITY, Kw::IF, Kw::IGNORE, Kw::IN, Kw::INDEX, Kw::INNER,
    Kw::INSERT, Kw::INTO, Kw::IS, Kw::JOIN, Kw::KEY, Kw::LATERAL, Kw::LEFT, Kw::LIKE,
    Kw::LIMIT, Kw::LOCK, Kw::LOW_PRIORITY, Kw::NATURAL, Kw::NOT, Kw::NULL, Kw::ON, Kw::OR,
    Kw::ORDER, Kw::OUTER, Kw::PARTITION, Kw::RENAME, Kw::REPLACE, Kw::RIGHT, Kw::SELECT,
    Kw::SET, Kw::STRAIGHT_JOIN, Kw::TABLE, Kw::THEN, Kw::TO, Kw::TRUE, Kw::UNION, Kw::UPDATE,
    Kw::USE, Kw::USING, Kw::VALUES, Kw::WHEN, Kw::WHERE, Kw::WINDOW, Kw::WITH, Kw::WRITE,
    Kw::READ,
];

/// Longest keyword or function name; longer words are never looked up.
pub(super) const MAX_WORD: usize = 40;

const KW_SLOTS: usize = 1024;

static KW_TABLE: Table<KW_SLOTS> = {
    let mut t = Table { slots: [EMPTY_SLOT; KW_SLOTS] };
    let mut i = 0;
    while i < KW_NAMES.len() {
        insert(&mut t, KW_NAMES[i], i as u16);
        i += 1;
    }
    t
};

const RESERVED_MAP: [bool; KW_NAMES.len()] = {
    let mut m = [false; KW_NAMES.len()];
    let mut i = 0;
    while i < RESERVED.len() {
        m[RESERVED[i] as usize] = true;
        i += 1;
    }
    m
};

/// The keyword a bare word is, given its key.
#[inline(always)]
pub(super) fn keyword(key: WordKey, word: &[u8]) -> Option<Kw> {
    if word.len() > MAX_WORD {
        return None;
    }
    KW_TABLE.find(key, word, |id| KW_NAMES[id as usize]).map(|id| KW_ALL[id as usize])
}

impl Kw {
    /// The keyword's text, uppercase.
    pub(super) fn name(self) -> &'static str {
        KW_NAMES[self as usize]
    }

    /// True for words MySQL reserves (never a bare table name).
    pub(super) fn is_reserved(self) -> bool {
        RESERVED_MAP[self as usize]
    }
}

/// What calling a named function means for routing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum FuncClass {
    /// A builtin without effects beyond its result: fine on a replica.
    Pure,
    /// Changes or depends on state that only the primary holds (locks, sequences, waits).
    SideEffect,
    /// Reads what the previous statement left in the session (LAST_INSERT_ID, ROW_COUNT).
    LastStatement,
    /// A keyword that precedes a parenthesis without being a call (`IN (`, `AS (`).
    NotCall,
}

const FN_SLOTS: usize = 2048;
const FN_LISTS: [&[&str]; 4] = [PURE, SIDE_EFFECT, LAST_STATEMENT, NOT_CALLS];
const FN_CLASSES: [FuncClass; 4] =
    [FuncClass::Pure, FuncClass::SideEffect, FuncClass::LastStatement, FuncClass::NotCall];
/// A function id packs the list number in the top 2 bits and the index below.
const FN_LIST_SHIFT: u16 = 14;

static FN_TABLE: Table<FN_SLOTS> = {
    let mut t = Table { slots: [EMPTY_SLOT; FN_SLOTS] };
    let mut l = 0;
    while l < FN_LISTS.len() {
        let list = FN_LISTS[l];
        let mut i = 0;
        while i < list.len() {
            insert(&mut t, list[i], ((l as u16) << FN_LIST_SHIFT) | i as u16);
            i += 1;
        }
        l += 1;
    }
    t
};

fn fn_name(id: u16) -> &'static str {
    FN_LISTS[(id >> FN_LIST_SHIFT) as usize][(id & ((1 << FN_LIST_SHIFT) - 1)) as usize]
}

/// The class of a called name; `None` means an unknown (user-defined or stored) function.
#[inline]
pub(super) fn function(word: &[u8]) -> Option<FuncClass> {
    if word.len() > MAX_WORD {
        return None;
    }
    FN_TABLE
        .find(WordKey::of(word), word, fn_name)
        .map(|id| FN_CLASSES[(id >> FN_LIST_SHIFT) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(s: &str) -> Option<Kw> {
        keyword(WordKey::of(s.as_bytes()), s.as_bytes())
    }

    fn func(s: &str) -> Option<FuncClass> {
        function(s.as_bytes())
    }

    #[test]
    fn keyword_lookup_ignores_case() {
        assert_eq!(kw("select"), Some(Kw::SELECT));
        assert_eq!(kw("SeLeCt"), Some(Kw::SELECT));
        assert_eq!(kw("sql_calc_found_rows"), Some(Kw::SQL_CALC_FOUND_ROWS));
    }

    #[test]
    fn runtime_and_compile_time_hashes_agree() {
        let words =
            ["", "a", "SELECT", "select", "sql_calc_found_rows", "12345678", "123456789", "é_x"];
        for w in words.iter().chain(KW_NAMES.iter()).chain(PURE.iter()) {
            assert_eq!(word_hash(w.as_bytes()), word_hash_const(w.as_bytes()), "{w}");
        }
    }

    #[test]
    fn same_length_same_head_different_tail_is_not_a_keyword() {
        assert_eq!(kw("SQL_CALC_FOUND_ROWX"), None);
        assert_eq!(kw("sql_calc_found_rows"), Some(Kw::SQL_CALC_FOUND_ROWS));
    }

    #[test]
    fn identifier_is_not_a_keyword() {
        assert_eq!(kw("sbtest1"), None);
        assert_eq!(kw("selectx"), None);
        assert_eq!(kw(""), None);
    }

    #[test]
    fn every_keyword_finds_itself() {
        for (i, name) in KW_NAMES.iter().enumerate() {
            assert_eq!(kw(name), Some(KW_ALL[i]), "{name}");
        }
    }

    #[test]
    fn every_function_name_is_found_in_its_class() {
        for (l, list) in FN_LISTS.iter().enumerate() {
            for name in list.iter() {
                assert_eq!(func(name), Some(FN_CLASSES[l]), "{name}");
            }
        }
    }

    #[test]
    fn function_lists_have_no_duplicates() {
        let mut all: Vec<String> =
            FN_LISTS.iter().flat_map(|l| l.iter()).map(|s| s.to_ascii_uppercase()).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn side_effect_functions_are_classified() {
        assert_eq!(func("get_lock"), Some(FuncClass::SideEffect));
        assert_eq!(func("NEXTVAL"), Some(FuncClass::SideEffect));
        assert_eq!(func("last_insert_id"), Some(FuncClass::LastStatement));
        assert_eq!(func("concat"), Some(FuncClass::Pure));
        assert_eq!(func("my_udf"), None);
    }
}
