//! No input may panic the classifier: random bytes, random SQL-ish token soup, every
//! prefix of every corpus statement, and pathological shapes. Each input also checks the
//! invariants that hold for any text (the digest property is checked inside the crate,
//! where the hash is visible).

use rwsplit::classify::{
    Backslashes, Tier, Tier2Cache, classify, classify_with_cache, normalize, statements, tables,
    temp_table_change, temp_table_name, user_variable_value,
};

/// xorshift64*: a small deterministic PRNG, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Checks `sql` read both ways a session may read backslashes.
fn check(sql: &str, cache: &Tier2Cache) {
    let info = classify_with_cache(sql, Backslashes::Escape, cache);
    assert_eq!(info.digest, classify(sql).digest, "digest depends on the cache: {sql:?}");
    for backslashes in [Backslashes::Escape, Backslashes::Literal] {
        let info = classify_with_cache(sql, backslashes, cache);
        let mut norm = String::new();
        normalize(sql, backslashes, &mut norm);
        if info.is_plain_read() {
            assert!(info.kind.is_read(), "plain read of kind {:?}: {sql:?}", info.kind);
        }
        let _ = tables(sql, backslashes);
        let _ = temp_table_name(sql, backslashes);
        let _ = temp_table_change(sql, backslashes);
        let _ = user_variable_value(sql, backslashes, "rwsplit_consistency");
        if info.statements == 1 && info.tier == Tier::Lexer {
            let kind = statements(sql, backslashes).first().and_then(|s| s.kind);
            assert_eq!(kind, Some(info.kind), "the lexer's verdict differs ({} bytes)", sql.len());
        }
        let mut parts = 0;
        for part in statements(sql, backslashes).into_iter().map(|s| s.range) {
            assert!(
                sql.get(part).is_some(),
                "a statement cut inside a character ({} bytes)",
                sql.len()
            );
            parts += 1;
        }
        // The count saturates at u16::MAX.
        let counted = usize::from(info.statements);
        assert_eq!(parts.min(65_535), counted, "split and counted apart ({} bytes)", sql.len());
    }
}

const SOUP: &[&str] = &[
    "SELECT",
    "select",
    "FROM",
    "t",
    "`q``x`",
    "WHERE",
    "FOR",
    "UPDATE",
    "SHARE",
    "LOCK",
    "IN",
    "MODE",
    "WITH",
    "RECURSIVE",
    "AS",
    "(",
    ")",
    "((",
    ",",
    ";",
    "'",
    "'s'",
    "\"",
    "\\",
    "`",
    "/*",
    "*/",
    "/*!",
    "/*!50700",
    "/*M!",
    "--",
    "-- ",
    "#",
    "\n",
    " ",
    "@",
    "@@",
    "@x",
    ":=",
    "=",
    "-",
    "+",
    "1",
    "0x",
    "1e",
    ".",
    "..",
    "?",
    "INSERT",
    "INTO",
    "VALUES",
    "DELETE",
    "REPLACE",
    "SET",
    "GLOBAL",
    "SESSION",
    "autocommit",
    "NAMES",
    "TRANSACTION",
    "STATEMENT",
    "EXPLAIN",
    "ANALYZE",
    "FORMAT",
    "SHOW",
    "CREATE",
    "TEMPORARY",
    "TABLE",
    "DROP",
    "IF",
    "EXISTS",
    "BEGIN",
    "NOT",
    "ATOMIC",
    "END",
    "GET_LOCK",
    "my_udf",
    "NEXT",
    "VALUE",
    "INTO",
    "OUTFILE",
    "rwsplit:",
    "/* rwsplit:primary */",
    "consistency=",
    "é",
    "\u{0}",
    "JOIN",
    "ON",
    "USING",
    "UNION",
    "ROLLUP",
    "DEFINER",
    "PROCEDURE",
    "XA",
    "HANDLER",
    "CALL",
];

#[test]
fn random_bytes_do_not_panic() {
    let cache = Tier2Cache::new(256);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for _ in 0..4000 {
        let len = rng.below(120);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check(&String::from_utf8_lossy(&bytes), &cache);
    }
}

#[test]
fn random_printable_text_does_not_panic() {
    let cache = Tier2Cache::new(256);
    let mut rng = Rng(0x0bad_5eed_0bad_5eed);
    let alphabet = b"abcSELECTFROMWHEREupdate ()'\"`;,.-#/*!@:=?0123456789\\\n\t";
    for _ in 0..4000 {
        let len = rng.below(80);
        let s: String = (0..len).map(|_| alphabet[rng.below(alphabet.len())] as char).collect();
        check(&s, &cache);
    }
}

#[test]
fn random_token_soup_does_not_panic() {
    let cache = Tier2Cache::new(256);
    let mut rng = Rng(0xfeed_face_cafe_beef);
    for _ in 0..6000 {
        let n = 1 + rng.below(24);
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(SOUP[rng.below(SOUP.len())]);
            if rng.below(3) > 0 {
                s.push(' ');
            }
        }
        check(&s, &cache);
    }
}

#[test]
fn every_prefix_of_every_corpus_statement_does_not_panic() {
    let cache = Tier2Cache::new(4096);
    let text = include_str!("data/statements.tsv");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let sql = line.splitn(3, '\t').nth(2).unwrap_or("").replace("\\n", "\n");
        for (i, _) in sql.char_indices() {
            check(&sql[..i], &cache);
        }
        check(&sql, &cache);
    }
}

#[test]
fn pathological_shapes_do_not_panic() {
    let cache = Tier2Cache::new(16);
    let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    let open = "(".repeat(20000);
    let with = format!("{}SELECT 1", "WITH a AS (".repeat(200));
    let semis = ";".repeat(70000);
    let many = "SELECT 1;".repeat(70000);
    let long_word = "x".repeat(100_000);
    let long_string = format!("SELECT '{}'", "a".repeat(100_000));
    for sql in [&deep, &open, &with, &semis, &many, &long_word, &long_string] {
        check(sql, &cache);
        let _ = classify(sql);
    }
}

#[test]
fn statement_count_saturates() {
    let many = "SELECT 1;".repeat(70000);
    assert_eq!(classify(&many).statements, u16::MAX);
}
