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

use super::lexer::{Lexer, Tok, Token};
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
    tok.sys_var(sql).1.eq_ignore_ascii_case("socket")
}

/// `sql` with every read of `@@socket` replaced by the proxy's answer, or
/// `None` when it reads none. A variable that is a whole item of a select
/// list keeps its column name (`'' AS `@@socket``).
pub fn answer_proxy_variables(sql: &str) -> Option<String> {
    let mut lx = Lexer::new(sql);
    let mut out = String::new();
    let mut copied = 0;
    let mut depth = 0usize;
    let mut select_depth = None;
    let mut prev: Option<Token> = None;
    let mut tok = lx.next();
    while tok.tok != Tok::End {
        let next = lx.next();
        match tok.tok {
            Tok::LParen => depth += 1,
            Tok::RParen => depth = depth.saturating_sub(1),
            Tok::Word if tok.kw == Some(Kw::SELECT) => select_depth = Some(depth),
            _ => {}
        }
        if is_socket(&tok, sql) {
            let starts_item = prev.is_none_or(|p| {
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
            out.push_str(SOCKET);
            if starts_item && ends_item {
                out.push_str(" AS `");
                out.push_str(&tok.text(sql).replace('`', "``"));
                out.push('`');
            }
            copied = tok.end;
        }
        prev = Some(tok);
        tok = next;
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::answer_proxy_variables as answer;

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
    fn inside_an_expression_or_with_an_alias_only_the_value_changes() {
        assert_eq!(
            answer("SELECT CONCAT('x', @@socket)").as_deref(),
            Some("SELECT CONCAT('x', '')")
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
        assert_eq!(
            answer("SELECT @@socket; SELECT '@@socket'").as_deref(),
            Some("SELECT '' AS `@@socket`; SELECT '@@socket'")
        );
    }
}
