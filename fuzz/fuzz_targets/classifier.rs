//! The statement classifier on any COM_QUERY text, read lossily when it is
//! not UTF-8 as the session reads it. No text may panic it, and what holds
//! for any text holds: the digest does not depend on the parser-tier cache,
//! and a plain read is a read, and the text splits into as many
//! statements as the classifier counts. Each text is read both ways a
//! session may read backslashes (sql_mode NO_BACKSLASH_ESCAPES off and on).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rwsplit::classify::{
    Backslashes, Tier, Tier2Cache, classify, classify_with_cache, normalize,
    statements, tables, temp_table_change, temp_table_name,
};
use std::sync::OnceLock;

/// One cache for the whole run, as the proxy has: later inputs meet the
/// verdicts of earlier ones, and evictions happen.
fn cache() -> &'static Tier2Cache {
    static CACHE: OnceLock<Tier2Cache> = OnceLock::new();
    CACHE.get_or_init(|| Tier2Cache::new(256))
}

fuzz_target!(|data: &[u8]| {
    let sql = String::from_utf8_lossy(data);
    let info = classify_with_cache(&sql, Backslashes::Escape, cache());
    assert_eq!(info.digest, classify(&sql).digest, "the digest depends on the cache");
    for backslashes in [Backslashes::Escape, Backslashes::Literal] {
        let info = classify_with_cache(&sql, backslashes, cache());
        if info.is_plain_read() {
            assert!(info.kind.is_read(), "a plain read of kind {:?}", info.kind);
        }
        let mut normalized = String::new();
        normalize(&sql, backslashes, &mut normalized);
        let _ = tables(&sql, backslashes);
        let _ = temp_table_name(&sql, backslashes);
        let _ = temp_table_change(&sql, backslashes);
        if info.statements == 1 && info.tier == Tier::Lexer {
            let kind = statements(&sql, backslashes).first().and_then(|s| s.kind);
            assert_eq!(kind, Some(info.kind), "the lexer's verdict differs");
        }
        let mut parts = 0;
        for range in statements(&sql, backslashes).into_iter().map(|s| s.range) {
            assert!(sql.get(range).is_some(), "a statement cut inside a character");
            parts += 1;
        }
        assert_eq!(parts, usize::from(info.statements), "statements split and counted apart");
    }
});
