//! Checks every statement of `tests/data/statements.tsv` (expected kind, expected
//! is_plain_read, statement with `\n` for newlines) and reports every line that fails.

use rwsplit::classify::{Tier, classify};

struct Case {
    line: usize,
    kind: String,
    plain: bool,
    sql: String,
}

fn corpus() -> Vec<Case> {
    let text = include_str!("data/statements.tsv");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let mut cols = l.splitn(3, '\t');
            let (kind, plain, sql) = (cols.next(), cols.next(), cols.next());
            let (Some(kind), Some(plain), Some(sql)) = (kind, plain, sql) else {
                panic!("line {}: expected 3 tab-separated columns", i + 1);
            };
            Case {
                line: i + 1,
                kind: kind.to_string(),
                plain: plain.parse().unwrap_or_else(|_| panic!("line {}: bad bool {plain}", i + 1)),
                sql: sql.replace("\\n", "\n"),
            }
        })
        .collect()
}

#[test]
fn corpus_has_at_least_300_statements() {
    assert!(corpus().len() >= 300, "only {} statements", corpus().len());
}

#[test]
fn every_corpus_statement_is_classified_as_expected() {
    let cases = corpus();
    let mut failures = Vec::new();
    let mut parser = 0;
    for c in &cases {
        let info = classify(&c.sql);
        if info.tier == Tier::Parser {
            parser += 1;
        }
        let kind = format!("{:?}", info.kind);
        if kind != c.kind || info.is_plain_read() != c.plain {
            failures.push(format!(
                "line {}: expected {} plain={}, got {} plain={} flags={:?}\n    {}",
                c.line,
                c.kind,
                c.plain,
                kind,
                info.is_plain_read(),
                info.flags,
                c.sql
            ));
        }
    }
    println!("{} statements, {} decided by the parser tier", cases.len(), parser);
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
