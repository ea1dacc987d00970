//! Server variables the proxy answers itself, written into the statement
//! text before it goes to a server.
//!
//! `@@socket` is the server's unix socket. Drivers connected over TCP to a
//! loopback address read it right after logging in and, when it names a
//! socket, connect again through it (Rust's `mysql` and `mysql_async`, whose
//! `prefer_socket` is on by default): a client of the proxy on the servers'
//! host would then talk to whichever server answered, directly. The proxy
//! answers an empty string, which those drivers take as "no socket", under
//! the column name the client wrote.

use super::lexer::{Backslashes, Lexer, Tok, Token};
use super::words::Kw;

/// What the proxy answers for `@@socket` (quoted as SQL).
const SOCKET: &str = "''";

/// Words that end a select-list item.
const ITEM_END: [Kw; 13] = [
    Kw::FROM,
    Kw::INTO,
    Kw::UNION,
    Kw::EXCEPT,
    Kw::INTERSECT,
    Kw::LIMIT,
    Kw::WHERE,
    Kw::ORDER,
    Kw::GROUP,
    Kw::HAVING,
    Kw::WINDOW,
    Kw::FOR,
    Kw::LOCK,
];

/// True when the token is the socket variable: `@@socket`, `@@global.socket`.
fn is_socket(tok: &Token, sql: &str) -> bool {
    if tok.tok != Tok::SysVar {
        return false;
    }
    let (scope, name) = tok.sys_var(sql);
    is_proxy_variable(scope, name)
}

/// Whether the proxy answers a read of `@@scope.name`: the socket, read
/// as it can be (`@@session.socket` is left to the server, whose answer is
/// ERROR 1238, a global variable).
pub(super) fn is_proxy_variable(scope: &str, name: &str) -> bool {
    name.eq_ignore_ascii_case("socket")
        && (scope.is_empty() || scope.eq_ignore_ascii_case("global"))
}

/// `sql` with every read of `@@socket` replaced by the proxy's answer, or
/// `None` when it reads none. A variable that is a whole item of a select
/// list keeps its column name (`'' AS `@@socket``).
pub fn answer_proxy_variables(sql: &str, backslashes: Backslashes) -> Option<String> {
    answer_reads(sql, backslashes, SOCKET, |tokens| usize::from(is_socket(&tokens[0], sql)))
}

/// `sql` with every call of `ROW_COUNT()` replaced by `value` (what the
/// session's previous statement left, when the statement runs on another
/// connection than that one), or `None` when it calls none. A call that is
/// a whole item of a select list keeps its column name.
pub fn answer_row_count(sql: &str, value: i64, backslashes: Backslashes) -> Option<String> {
    // In a multi-statement, a call may read a statement of the same
    // command: it is left to the server.
    let mut lx = Lexer::new(sql, backslashes);
    let mut after_semi = false;
    loop {
        match lx.next().tok {
            Tok::End => break,
            Tok::Semi => after_semi = true,
            _ if after_semi => return None,
            _ => {}
        }
    }
    // As the call's own column: BIGINT of 21 digits, NOT NULL (the
    // function is not evaluated: the value is not NULL). Negative values
    // need no parentheses inside it.
    let value = format!("IFNULL({value}, ROW_COUNT())");
    answer_reads(sql, backslashes, &value, |tokens| match tokens {
        [name, open, close, ..]
            if name.tok == Tok::Word
                && !name.after_dot
                && name.text(sql).eq_ignore_ascii_case("ROW_COUNT")
                && open.tok == Tok::LParen
                && close.tok == Tok::RParen =>
        {
            3
        }
        _ => 0,
    })
}

/// `sql` with every read `span` finds replaced by `value`: given the
/// tokens from one on (the last is the end), `span` says how many the
/// read covers (0: none starts there). A read that is a whole item of a
/// select list keeps its text as its column name; so does an item of the
/// outermost select list that holds one (`HEX(ROW_COUNT())`), when it
/// ends in `)` or a number and so has no alias of its own.
fn answer_reads(
    sql: &str,
    backslashes: Backslashes,
    value: &str,
    span: impl Fn(&[Token]) -> usize,
) -> Option<String> {
    let mut lx = Lexer::new(sql, backslashes);
    let mut tokens = Vec::new();
    loop {
        let tok = lx.next();
        tokens.push(tok);
        if tok.tok == Tok::End {
            break;
        }
    }
    let mut out = String::new();
    let mut copied = 0;
    let mut depth = 0usize;
    let mut select_depth = None;
    // The outermost select list's current item: its first token, and
    // whether a read inside it changed its text.
    let mut item: Option<(usize, bool)> = None;
    let mut i = 0;
    loop {
        let tok = tokens[i];
        if depth == 0 && item_ends(&tok) {
            if let Some((first, true)) = item.take() {
                let last = tokens[i - 1];
                if matches!(last.tok, Tok::RParen | Tok::Num) {
                    out.push_str(&sql[copied..last.end]);
                    push_alias(&mut out, &sql[tokens[first].start..last.end]);
                    copied = last.end;
                }
            }
            if tok.tok == Tok::Comma && select_depth == Some(0) {
                item = Some((i + 1, false));
            }
        }
        match tok.tok {
            Tok::End => break,
            Tok::LParen => depth += 1,
            Tok::RParen => depth = depth.saturating_sub(1),
            Tok::Word if tok.kw == Some(Kw::SELECT) => {
                select_depth = Some(depth);
                item = (depth == 0).then_some((i + 1, false));
            }
            Tok::Word if depth == 0 && matches!(tok.kw, Some(Kw::DISTINCT | Kw::ALL)) => {
                item = item.map(|(first, changed)| (first.max(i + 1), changed));
            }
            _ => {}
        }
        let n = span(&tokens[i..]);
        if n == 0 {
            i += 1;
            continue;
        }
        let (last, next) = (tokens[i + n - 1], tokens[i + n]);
        let starts_item = i.checked_sub(1).map(|p| tokens[p]).is_none_or(|p| {
            matches!(p.kw, Some(Kw::SELECT | Kw::DISTINCT | Kw::ALL))
                || (p.tok == Tok::Comma && select_depth == Some(depth))
        });
        let ends_item = match next.tok {
            Tok::Comma | Tok::Semi | Tok::End => true,
            Tok::RParen => select_depth == Some(depth),
            Tok::Word => next.kw.is_some_and(|k| ITEM_END.contains(&k)),
            _ => false,
        };
        out.push_str(&sql[copied..tok.start]);
        out.push_str(value);
        if starts_item && ends_item {
            push_alias(&mut out, &sql[tok.start..last.end]);
        } else if let Some((_, changed)) = item.as_mut() {
            *changed = true;
        }
        copied = last.end;
        i += n;
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

/// Whether `tok`, at the outermost level, ends an item of a select list.
fn item_ends(tok: &Token) -> bool {
    match tok.tok {
        Tok::Comma | Tok::Semi | Tok::End => true,
        Tok::Word => tok.kw.is_some_and(|k| ITEM_END.contains(&k)),
        _ => false,
    }
}

/// ` AS `name`` after a select-list item, so that its column keeps the
/// name the client's text gave it.
fn push_alias(out: &mut String, name: &str) {
    out.push_str(" AS `");
    out.push_str(&name.replace('`', "``"));
    out.push('`');
}

#[cfg(test)]
mod tests {
    use super::Backslashes;

    fn answer(sql: &str) -> Option<String> {
        super::answer_proxy_variables(sql, Backslashes::Escape)
    }

    fn answer_row_count(sql: &str, value: i64) -> Option<String> {
        super::answer_row_count(sql, value, Backslashes::Escape)
    }

    #[test]
    fn row_count_calls_get_the_value_and_keep_their_column_name() {
        let a = |sql| answer_row_count(sql, 3);
        let three = "IFNULL(3, ROW_COUNT())";
        let want = |s: &str| Some(s.replace("V", three));
        assert_eq!(a("SELECT ROW_COUNT()"), want("SELECT V AS `ROW_COUNT()`"));
        assert_eq!(a("select row_count( ) ;"), want("select V AS `row_count( )` ;"));
        assert_eq!(a("SELECT ROW_COUNT() AS n"), want("SELECT V AS n"));
        assert_eq!(
            a("SELECT ROW_COUNT(), LAST_INSERT_ID()"),
            want("SELECT V AS `ROW_COUNT()`, LAST_INSERT_ID()")
        );
        assert_eq!(a("SELECT ROW_COUNT() > 0"), want("SELECT V > 0 AS `ROW_COUNT() > 0`"));
        // An item that holds a call keeps its name too, when it has no
        // alias (it ends in a parenthesis or a number).
        assert_eq!(
            a("SELECT hex(concat(row_count())), 1 FROM t"),
            want("SELECT hex(concat(V)) AS `hex(concat(row_count()))`, 1 FROM t")
        );
        assert_eq!(
            a("SELECT DISTINCT IF(ROW_COUNT() > 0, 'y', 'n') FROM t UNION SELECT 1+ROW_COUNT()"),
            want(
                "SELECT DISTINCT IF(V > 0, 'y', 'n') AS `IF(ROW_COUNT() > 0, 'y', 'n')` \
                 FROM t UNION SELECT 1+V AS `1+ROW_COUNT()`"
            )
        );
        assert_eq!(a("SELECT ROW_COUNT() + 1 n"), want("SELECT V + 1 n"));
        assert_eq!(a("SELECT ROW_COUNT() + 1 AS `n`"), want("SELECT V + 1 AS `n`"));
        assert_eq!(a("SELECT ROW_COUNT() = @x"), want("SELECT V = @x"));
        assert_eq!(a("SELECT (SELECT ROW_COUNT() + 1)"), want("SELECT (SELECT V + 1)"));
        assert_eq!(a("SET @n = ROW_COUNT() + 1"), want("SET @n = V + 1"));
        assert_eq!(
            answer_row_count("SELECT ROW_COUNT()", -1).as_deref(),
            Some("SELECT IFNULL(-1, ROW_COUNT()) AS `ROW_COUNT()`")
        );
        assert_eq!(
            answer_row_count("SELECT 5-ROW_COUNT()", -1).as_deref(),
            Some("SELECT 5-IFNULL(-1, ROW_COUNT()) AS `5-ROW_COUNT()`")
        );
        assert_eq!(a("UPDATE t SET a = 1; SELECT ROW_COUNT()"), None);
        // Not a call of the function: left alone.
        assert_eq!(
            a("SELECT 'ROW_COUNT()', t.ROW_COUNT, row_count FROM t /* ROW_COUNT() */"),
            None
        );
    }

    #[test]
    fn a_whole_select_item_keeps_its_column_name() {
        assert_eq!(answer("SELECT @@socket").as_deref(), Some("SELECT '' AS `@@socket`"));
        assert_eq!(
            answer("SELECT @@max_allowed_packet,@@wait_timeout,@@socket").as_deref(),
            Some("SELECT @@max_allowed_packet,@@wait_timeout,'' AS `@@socket`")
        );
        assert_eq!(
            answer("select @@GLOBAL.socket, 1 from dual").as_deref(),
            Some("select '' AS `@@GLOBAL.socket`, 1 from dual")
        );
        assert_eq!(
            answer("SELECT 1 FROM t WHERE x IN (SELECT @@socket)").as_deref(),
            Some("SELECT 1 FROM t WHERE x IN (SELECT '' AS `@@socket`)")
        );
    }

    #[test]
    fn inside_an_expression_the_item_keeps_its_name_and_with_an_alias_only_the_value_changes() {
        assert_eq!(
            answer("SELECT CONCAT('x', @@socket)").as_deref(),
            Some("SELECT CONCAT('x', '') AS `CONCAT('x', @@socket)`")
        );
        assert_eq!(answer("SELECT @@socket AS s").as_deref(), Some("SELECT '' AS s"));
        assert_eq!(answer("SELECT @@socket s").as_deref(), Some("SELECT '' s"));
        assert_eq!(
            answer("SELECT @@socket = '', @@socket").as_deref(),
            Some("SELECT '' = '', '' AS `@@socket`")
        );
    }

    #[test]
    fn other_text_is_left_alone() {
        assert_eq!(answer("SELECT @@port, @socket, '@@socket' /* @@socket */"), None);
        assert_eq!(answer("SELECT @@socket_x, t.socket FROM t"), None);
        // No session socket: the server's error stands.
        assert_eq!(answer("SELECT @@session.socket, @@LOCAL.socket"), None);
        assert_eq!(
            answer("SELECT @@socket; SELECT '@@socket'").as_deref(),
            Some("SELECT '' AS `@@socket`; SELECT '@@socket'")
        );
    }
}
