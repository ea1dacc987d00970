use super::super::StatementKind as K;
use super::super::{Backslashes, Tier, Tier2Cache, classify, classify_with_cache};

#[test]
fn plain_statement_is_decided_by_the_lexer() {
    assert_eq!(classify("SELECT 1").tier, Tier::Lexer);
}

#[test]
fn cte_followed_by_parenthesised_query_goes_to_the_parser() {
    let info = classify("WITH a AS (SELECT 1 AS x) (SELECT x FROM a)");
    assert_eq!(info.tier, Tier::Parser);
    assert_eq!(info.kind, K::Select);
}

#[test]
fn write_keyword_in_a_read_goes_to_the_parser() {
    let info = classify("SELECT * FROM t WHERE a IN (DELETE FROM u)");
    assert_eq!(info.tier, Tier::Parser);
    assert!(!info.is_plain_read());
}

#[test]
fn unparseable_unsure_statement_is_unknown() {
    let info = classify("WITH a AS (SELECT 1) (SELECT * FROM a LOCK IN SHARE MODE)");
    assert_eq!(info.kind, K::Unknown);
    assert!(!info.is_plain_read());
}

#[test]
fn lexer_certain_statements_sqlparser_rejects_are_classified() {
    assert_eq!(classify("SELECT * FROM t LOCK IN SHARE MODE").tier, Tier::Lexer);
    assert_eq!(classify("XA START 'x'").kind, K::Xa);
    assert_eq!(classify("DO RELEASE_LOCK('x')").kind, K::Do);
    assert_eq!(classify("HANDLER t OPEN").kind, K::Handler);
    assert_eq!(classify("PREPARE s FROM 'SELECT 1'").kind, K::Prepare);
}

#[test]
fn parser_verdict_is_cached_by_digest() {
    let cache = Tier2Cache::new(64);
    let a = classify_with_cache(
        "WITH a AS (SELECT 1 AS x) (SELECT x FROM a)",
        Backslashes::Escape,
        &cache,
    );
    let b = classify_with_cache(
        "with a as (select 2 as x) (select x from a)",
        Backslashes::Escape,
        &cache,
    );
    assert_eq!(a.kind, b.kind);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.hits, stats.entries), (1, 1, 1));
}

#[test]
fn cached_verdict_keeps_lexer_flags_of_the_statement() {
    let cache = Tier2Cache::new(64);
    let sql = "WITH a AS (SELECT 1 AS x) (SELECT x, my_udf(x) FROM a)";
    classify_with_cache(sql, Backslashes::Escape, &cache);
    let again = classify_with_cache(sql, Backslashes::Escape, &cache);
    assert!(again.flags.contains(super::super::Flags::UNKNOWN_FUNC));
    assert!(!again.is_plain_read());
}

#[test]
fn lexer_statements_do_not_touch_the_cache() {
    let cache = Tier2Cache::new(64);
    classify_with_cache("SELECT 1", Backslashes::Escape, &cache);
    assert_eq!(cache.stats().misses + cache.stats().hits, 0);
}

#[test]
fn unsure_statement_in_multi_statement_is_resolved_alone() {
    let info = classify("SET autocommit=0; WITH a AS (SELECT 1 AS x) (SELECT x FROM a)");
    assert_eq!(info.kind, K::SetAutocommit(false));
    assert_eq!(info.tier, Tier::Parser);
}

#[test]
fn literal_values_outside_the_unsure_statement_are_not_cached() {
    let cache = Tier2Cache::new(64);
    let a = classify_with_cache(
        "SET autocommit=0; WITH a AS (SELECT 1) (SELECT * FROM a)",
        Backslashes::Escape,
        &cache,
    );
    let b = classify_with_cache(
        "SET autocommit=1; WITH a AS (SELECT 1) (SELECT * FROM a)",
        Backslashes::Escape,
        &cache,
    );
    assert_eq!(a.kind, K::SetAutocommit(false));
    assert_eq!(b.kind, K::SetAutocommit(true));
}

#[test]
fn cache_is_shared_between_threads() {
    let cache = std::sync::Arc::new(Tier2Cache::new(64));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for j in 0..50 {
                    let sql = format!("WITH a AS (SELECT {i} AS x) (SELECT x + {j} FROM a)");
                    assert_eq!(
                        classify_with_cache(&sql, Backslashes::Escape, &cache).kind,
                        K::Select
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker panicked");
    }
    let stats = cache.stats();
    assert_eq!(stats.entries, 1);
    assert_eq!(stats.hits + stats.misses, 200);
}

#[test]
fn tiny_cache_still_answers() {
    let cache = Tier2Cache::new(0);
    let info = classify_with_cache(
        "WITH a AS (SELECT 1 AS x) (SELECT x FROM a)",
        Backslashes::Escape,
        &cache,
    );
    assert_eq!(info.kind, K::Select);
}
