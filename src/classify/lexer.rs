//! The single-pass lexer: turns statement text into tokens without allocating.
//!
//! It knows MySQL's lexical rules that matter for classification: quoted strings with
//! doubled quotes and backslash escapes (unless the session's sql_mode has
//! NO_BACKSLASH_ESCAPES: [`Backslashes`]), backtick identifiers, the three comment forms
//! (`-- ` only when followed by whitespace or a control character), and executable
//! comments (`/*! ... */`, `/*!50700 ... */`, `/*M! ... */`, `/*M!100100 ... */`), whose
//! content is code the server runs, so it is lexed as code whatever the version says.
//! Routing hints are read out of ordinary comments as they are skipped ([`Hints`]).

use super::hints::Hints;
use super::words::{self, Kw, MAX_WORD};

/// What a backslash in a string literal is, in the session whose text is lexed.
/// The server reports it in the status flags of every OK and EOF packet
/// (`SERVER_STATUS_NO_BACKSLASH_ESCAPES`), so the session always knows.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Backslashes {
    /// The default: a backslash escapes the character after it (`'it\'s'`).
    #[default]
    Escape,
    /// sql_mode NO_BACKSLASH_ESCAPES: an ordinary character (`'C:\'` ends
    /// at its second quote).
    Literal,
}

/// A token's kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Tok {
    /// A bare word: keyword or identifier (`kw` tells which).
    Word,
    /// A backtick-quoted identifier.
    QuotedIdent,
    /// A string, hex, bit or national literal.
    Str,
    /// A number literal.
    Num,
    /// `@name`, `@'name'`.
    UserVar,
    /// `@@name`, `@@session.name`.
    SysVar,
    /// A `?` placeholder.
    Param,
    LParen,
    RParen,
    Comma,
    Dot,
    Semi,
    /// An operator or any other punctuation.
    Op,
    /// End of input.
    End,
}

/// One token: where it is in the text, and for words their keyword.
#[derive(Clone, Copy, Debug)]
pub(super) struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
    /// The keyword this word is (never set for a word right after a `.`).
    pub kw: Option<Kw>,
    /// The word follows a `.`: it is part of a qualified name.
    pub after_dot: bool,
}

impl Token {
    /// The token's text.
    pub fn text<'a>(&self, sql: &'a str) -> &'a str {
        sql.get(self.start..self.end).unwrap_or("")
    }

    /// For a `Tok::SysVar` token, its scope (`""` when none was written)
    /// and the variable's name: `@@global.read_only` is ("global", "read_only").
    pub fn sys_var<'a>(&self, sql: &'a str) -> (&'a str, &'a str) {
        let text = self.text(sql).get(2..).unwrap_or("");
        text.split_once('.').unwrap_or(("", text))
    }

    /// True for an operator token with exactly this text.
    pub fn is_op(&self, sql: &str, op: &str) -> bool {
        self.tok == Tok::Op && self.text(sql) == op
    }

    /// A double-quoted string: under sql_mode ANSI_QUOTES (which the proxy
    /// cannot see) an identifier. Where only a name is valid SQL (a table,
    /// a called function) it is taken for one: were it a string, the
    /// statement would be an error anyway.
    pub fn is_double_quoted(&self, sql: &str) -> bool {
        self.tok == Tok::Str && self.text(sql).len() >= 2 && self.text(sql).starts_with('"')
    }
}

const C_OTHER: u8 = 0;
const C_SPACE: u8 = 1;
const C_IDENT: u8 = 2;
const C_DIGIT: u8 = 3;
const C_QUOTE: u8 = 4;
const C_BACKTICK: u8 = 5;
const C_DASH: u8 = 6;
const C_HASH: u8 = 7;
const C_SLASH: u8 = 8;
const C_STAR: u8 = 9;
const C_AT: u8 = 10;
const C_LPAREN: u8 = 11;
const C_RPAREN: u8 = 12;
const C_COMMA: u8 = 13;
const C_DOT: u8 = 14;
const C_SEMI: u8 = 15;
const C_QUESTION: u8 = 16;

static CLASS: [u8; 256] = {
    let mut c = [C_OTHER; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        c[i] = match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => C_SPACE,
            b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'$' | 0x80..=0xff => C_IDENT,
            b'0'..=b'9' => C_DIGIT,
            b'\'' | b'"' => C_QUOTE,
            b'`' => C_BACKTICK,
            b'-' => C_DASH,
            b'#' => C_HASH,
            b'/' => C_SLASH,
            b'*' => C_STAR,
            b'@' => C_AT,
            b'(' => C_LPAREN,
            b')' => C_RPAREN,
            b',' => C_COMMA,
            b'.' => C_DOT,
            b';' => C_SEMI,
            b'?' => C_QUESTION,
            _ => C_OTHER,
        };
        i += 1;
    }
    c
};

#[inline(always)]
fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

#[inline(always)]
fn is_word_byte(b: u8) -> bool {
    matches!(class(b), C_IDENT | C_DIGIT)
}

/// The lexer over one statement text.
pub(super) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    in_exec: bool,
    prev: Tok,
    prev_kw: Option<Kw>,
    prev_end: usize,
    backslash_escapes: bool,
    /// Hints seen so far.
    pub hints: Hints,
    /// An unterminated string, identifier or comment was found.
    pub broken: bool,
}

impl<'a> Lexer<'a> {
    pub fn new(sql: &'a str, backslashes: Backslashes) -> Lexer<'a> {
        Lexer {
            src: sql.as_bytes(),
            pos: 0,
            in_exec: false,
            prev: Tok::End,
            prev_kw: None,
            prev_end: usize::MAX,
            backslash_escapes: backslashes == Backslashes::Escape,
            hints: Hints::default(),
            broken: false,
        }
    }

    #[inline(always)]
    fn at(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(0)
    }

    /// The next token; `Tok::End` forever once the text is consumed.
    pub fn next(&mut self) -> Token {
        loop {
            while self.pos < self.src.len() && class(self.src[self.pos]) == C_SPACE {
                self.pos += 1;
            }
            let start = self.pos;
            let Some(&b) = self.src.get(start) else {
                if self.in_exec {
                    self.broken = true;
                    self.in_exec = false;
                }
                return self.make(Tok::End, start);
            };
            let tok = match class(b) {
                C_IDENT => return self.word(start),
                C_DIGIT if self.prev == Tok::Dot => return self.word(start),
                C_DIGIT => return self.number(start),
                C_QUOTE => self.quoted(start, b, self.backslash_escapes, Tok::Str),
                C_BACKTICK => self.quoted(start, b'`', false, Tok::QuotedIdent),
                C_DASH if self.at(start + 1) == b'-' && self.at(start + 2) <= b' ' => {
                    self.line_comment(start + 2);
                    continue;
                }
                C_HASH => {
                    self.line_comment(start + 1);
                    continue;
                }
                C_SLASH if self.at(start + 1) == b'*' => {
                    self.block_comment(start);
                    continue;
                }
                C_STAR if self.in_exec && self.at(start + 1) == b'/' => {
                    self.pos += 2;
                    self.in_exec = false;
                    continue;
                }
                C_AT => self.variable(start),
                C_DOT if self.at(start + 1).is_ascii_digit() && !self.ends_name() => {
                    return self.number(start);
                }
                C_LPAREN => self.single(Tok::LParen),
                C_RPAREN => self.single(Tok::RParen),
                C_COMMA => self.single(Tok::Comma),
                C_DOT => self.single(Tok::Dot),
                C_SEMI => self.single(Tok::Semi),
                C_QUESTION => self.single(Tok::Param),
                _ => self.operator(start),
            };
            return self.make(tok, start);
        }
    }

    fn ends_name(&self) -> bool {
        matches!(self.prev, Tok::Word | Tok::QuotedIdent | Tok::RParen)
    }

    fn single(&mut self, tok: Tok) -> Tok {
        self.pos += 1;
        tok
    }

    fn make(&mut self, tok: Tok, start: usize) -> Token {
        let t = Token { tok, start, end: self.pos, kw: None, after_dot: false };
        self.remember(&t);
        t
    }

    fn remember(&mut self, t: &Token) {
        if t.tok != Tok::End {
            self.prev = t.tok;
            self.prev_kw = t.kw;
            self.prev_end = t.end;
        }
    }

    fn word(&mut self, start: usize) -> Token {
        let first = self.src[start];
        if matches!(first, b'x' | b'X' | b'b' | b'B' | b'n' | b'N') && self.at(start + 1) == b'\'' {
            self.pos = start + 1;
            self.quoted(start + 1, b'\'', self.backslash_escapes, Tok::Str);
            return self.make(Tok::Str, start);
        }
        let (i, key) = self.scan_word(start);
        self.pos = i;
        let word = &self.src[start..i];
        let after_dot = self.prev == Tok::Dot;
        let kw = if after_dot { None } else { words::keyword(key, word) };
        let t = Token { tok: Tok::Word, start, end: i, kw, after_dot };
        self.remember(&t);
        t
    }

    /// Finds the end of the word at `start` and computes its lookup key in the same pass
    /// (`words::WordKey::of`, 8 bytes at a time).
    #[inline(always)]
    fn scan_word(&self, start: usize) -> (usize, words::WordKey) {
        let (mut h, mut head, mut chunk, mut shift) = (0u64, 0u64, 0u64, 0u32);
        let mut i = start;
        while i < self.src.len() && is_word_byte(self.src[i]) {
            chunk |= u64::from(self.src[i]) << shift;
            shift += 8;
            if shift == 64 {
                if i - start < 8 {
                    head = chunk;
                }
                h = words::mix(h, chunk);
                chunk = 0;
                shift = 0;
            }
            i += 1;
        }
        let len = i - start;
        if len > MAX_WORD {
            return (i, words::WordKey::default());
        }
        if shift > 0 {
            if len <= 8 {
                head = chunk;
            }
            h = words::mix(h, chunk);
        }
        (i, words::WordKey { hash: words::finish(h, len), head: head | words::FOLD })
    }

    fn digits(&self, mut i: usize) -> usize {
        while self.at(i).is_ascii_digit() {
            i += 1;
        }
        i
    }

    fn number(&mut self, start: usize) -> Token {
        let mut i = start;
        if self.at(i) == b'0' && matches!(self.at(i + 1), b'x' | b'X' | b'b' | b'B') {
            i += 2;
            while self.at(i).is_ascii_hexdigit() {
                i += 1;
            }
        } else {
            i = self.digits(i);
            if self.at(i) == b'.' {
                i = self.digits(i + 1);
            }
            if matches!(self.at(i), b'e' | b'E') {
                let sign = usize::from(matches!(self.at(i + 1), b'+' | b'-'));
                if self.at(i + 1 + sign).is_ascii_digit() {
                    i = self.digits(i + 1 + sign);
                }
            }
        }
        if i < self.src.len() && class(self.src[i]) == C_IDENT && self.src[start] != b'.' {
            // `1abc` is an identifier in MySQL.
            return self.word(start);
        }
        self.pos = i;
        self.make(Tok::Num, start)
    }

    /// Skips a quoted run starting at `open`; returns `tok`.
    fn quoted(&mut self, open: usize, q: u8, backslash: bool, tok: Tok) -> Tok {
        let mut i = open + 1;
        let n = self.src.len();
        while i < n {
            let b = self.src[i];
            if b == b'\\' && backslash {
                i += 2;
            } else if b == q {
                if self.at(i + 1) == q {
                    i += 2;
                } else {
                    self.pos = i + 1;
                    return tok;
                }
            } else {
                i += 1;
            }
        }
        self.broken = true;
        self.pos = n;
        tok
    }

    fn line_comment(&mut self, body: usize) {
        let n = self.src.len();
        let mut i = body.min(n);
        while i < n && self.src[i] != b'\n' {
            i += 1;
        }
        self.hints_in(body.min(n), i);
        self.pos = (i + 1).min(n);
    }

    fn block_comment(&mut self, start: usize) {
        let bang = match (self.at(start + 2), self.at(start + 3)) {
            (b'!', _) => Some(start + 3),
            (b'M', b'!') => Some(start + 4),
            _ => None,
        };
        if let Some(code) = bang {
            self.pos = self.skip_version(code);
            self.in_exec = true;
            return;
        }
        let body = start + 2;
        let mut i = body;
        let n = self.src.len();
        while i + 1 < n && !(self.src[i] == b'*' && self.src[i + 1] == b'/') {
            i += 1;
        }
        if i + 1 >= n {
            self.broken = true;
            self.hints_in(body.min(n), n);
            self.pos = n;
        } else {
            self.hints_in(body, i);
            self.pos = i + 2;
        }
    }

    /// Skips a 5-digit (MySQL) or 6-digit (MariaDB) version after `/*!` or `/*M!`.
    fn skip_version(&self, i: usize) -> usize {
        if (i..i + 5).all(|k| self.at(k).is_ascii_digit()) {
            if self.at(i + 5).is_ascii_digit() { i + 6 } else { i + 5 }
        } else {
            i
        }
    }

    fn variable(&mut self, start: usize) -> Tok {
        let adjacent = self.prev_end == start;
        let account = matches!(self.prev, Tok::Str | Tok::QuotedIdent)
            || (self.prev == Tok::Word && self.prev_kw.is_none());
        if adjacent && account {
            // 'user'@'host': the @ of an account name, not a variable.
            self.pos = start + 1;
            return Tok::Op;
        }
        let (tok, mut i) = if self.at(start + 1) == b'@' {
            (Tok::SysVar, start + 2)
        } else {
            (Tok::UserVar, start + 1)
        };
        let b = self.at(i);
        if tok == Tok::UserVar && matches!(b, b'\'' | b'"' | b'`') {
            self.quoted(i, b, b != b'`' && self.backslash_escapes, tok);
            return tok;
        }
        while i < self.src.len() && (is_word_byte(self.src[i]) || self.src[i] == b'.') {
            i += 1;
        }
        if i == start + 1 {
            self.pos = start + 1;
            return Tok::Op;
        }
        self.pos = i;
        tok
    }

    fn operator(&mut self, start: usize) -> Tok {
        let len = match (self.at(start), self.at(start + 1), self.at(start + 2)) {
            (b'<', b'=', b'>') | (b'-', b'>', b'>') => 3,
            (b'<', b'=' | b'>' | b'<', _) | (b'>', b'=' | b'>', _) => 2,
            (b'!', b'=', _) | (b':', b'=', _) | (b'|', b'|', _) | (b'&', b'&', _) => 2,
            (b'-', b'>', _) => 2,
            _ => 1,
        };
        self.pos = start + len;
        Tok::Op
    }

    fn hints_in(&mut self, from: usize, to: usize) {
        self.hints.scan(&self.src[from..to]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(sql: &str) -> Vec<(Tok, String)> {
        let mut lx = Lexer::new(sql, Backslashes::Escape);
        let mut v = Vec::new();
        loop {
            let t = lx.next();
            if t.tok == Tok::End {
                return v;
            }
            v.push((t.tok, t.text(sql).to_string()));
        }
    }

    fn kinds(sql: &str) -> Vec<Tok> {
        toks(sql).into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn doubled_quote_stays_inside_string() {
        assert_eq!(kinds("'it''s' x"), [Tok::Str, Tok::Word]);
    }

    #[test]
    fn backslash_escaped_quote_stays_inside_string() {
        assert_eq!(kinds(r"'a\'b' x"), [Tok::Str, Tok::Word]);
        assert_eq!(kinds(r#""a\"b" x"#), [Tok::Str, Tok::Word]);
    }

    #[test]
    fn backtick_identifier_is_one_token() {
        assert_eq!(toks("`my table`.`a``b`").len(), 3);
        assert_eq!(kinds("`select`"), [Tok::QuotedIdent]);
    }

    #[test]
    fn dash_dash_needs_whitespace_to_be_a_comment() {
        assert_eq!(kinds("1--1"), [Tok::Num, Tok::Op, Tok::Op, Tok::Num]);
        assert_eq!(kinds("1 -- x\n2"), [Tok::Num, Tok::Num]);
        assert_eq!(kinds("1 --"), [Tok::Num]);
    }

    #[test]
    fn hash_comment_runs_to_end_of_line() {
        assert_eq!(kinds("1 # x y\n2"), [Tok::Num, Tok::Num]);
    }

    #[test]
    fn block_comment_is_skipped() {
        assert_eq!(kinds("1 /* 2 */ 3"), [Tok::Num, Tok::Num]);
    }

    #[test]
    fn executable_comment_content_is_lexed() {
        assert_eq!(kinds("/*!40101 SET x */"), [Tok::Word, Tok::Word]);
        assert_eq!(kinds("/*M!100100 a */ b"), [Tok::Word, Tok::Word]);
        assert_eq!(kinds("/*!a*/"), [Tok::Word]);
    }

    #[test]
    fn version_digits_are_not_code() {
        assert_eq!(toks("/*!50700 x */")[0].1, "x");
        assert_eq!(toks("/*M!100100 x */")[0].1, "x");
    }

    #[test]
    fn number_forms_are_single_tokens() {
        for n in ["1", "1.5", ".5", "1e10", "1.5E-3", "0x1F", "0b101"] {
            assert_eq!(kinds(n), [Tok::Num], "{n}");
        }
    }

    #[test]
    fn digit_led_identifier_is_a_word() {
        assert_eq!(kinds("1abc"), [Tok::Word]);
        assert_eq!(kinds("t.1a"), [Tok::Word, Tok::Dot, Tok::Word]);
    }

    #[test]
    fn hex_bit_and_national_literals_are_strings() {
        assert_eq!(kinds("X'0F' b'1' N'x'"), [Tok::Str, Tok::Str, Tok::Str]);
    }

    #[test]
    fn variables_are_recognised() {
        assert_eq!(kinds("@a @@session.x @'q r'"), [Tok::UserVar, Tok::SysVar, Tok::UserVar]);
    }

    #[test]
    fn account_at_sign_is_not_a_variable() {
        assert_eq!(kinds("'u'@'h'"), [Tok::Str, Tok::Op, Tok::Str]);
        assert_eq!(kinds("bob@localhost"), [Tok::Word, Tok::Op, Tok::Word]);
    }

    #[test]
    fn multi_char_operators_are_one_token() {
        for op in ["<=>", "<=", ">=", "<>", "!=", ":=", "||", "&&", "->", "->>"] {
            assert_eq!(toks(op), [(Tok::Op, op.to_string())]);
        }
    }

    #[test]
    fn word_key_from_scan_matches_word_key_of() {
        for w in ["a", "SELECT", "sbtest1", "12345678", "123456789", "sql_calc_found_rows", "é_x"]
        {
            let sql = format!("{w} ");
            let lx = Lexer::new(&sql, Backslashes::Escape);
            assert_eq!(lx.scan_word(0).1, words::WordKey::of(w.as_bytes()), "{w}");
        }
    }

    #[test]
    fn keyword_after_dot_is_an_identifier() {
        let mut lx = Lexer::new("t.select", Backslashes::Escape);
        lx.next();
        lx.next();
        let t = lx.next();
        assert!(t.kw.is_none() && t.after_dot);
    }

    #[test]
    fn unterminated_string_marks_broken() {
        let mut lx = Lexer::new("SELECT 'abc", Backslashes::Escape);
        while lx.next().tok != Tok::End {}
        assert!(lx.broken);
    }

    #[test]
    fn hints_are_read_from_every_comment_form() {
        for sql in ["/* rwsplit:primary */ 1", "1 -- rwsplit:primary", "1 # RWSPLIT:PRIMARY"] {
            let mut lx = Lexer::new(sql, Backslashes::Escape);
            while lx.next().tok != Tok::End {}
            assert!(lx.hints.primary, "{sql}");
        }
    }
}
