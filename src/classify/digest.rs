//! The normalized text and its digest, produced token by token in the lexer's pass.
//!
//! Rules: comments are dropped (executable comments keep their code), literals become `?`
//! (a sign in front of a number is absorbed), keywords and builtin function names are
//! uppercased, variables lowercased, other identifiers kept as written (table names are
//! case sensitive on Linux), tokens are separated by exactly one space except around `.`,
//! inside parentheses, before `,` and between a called name and its `(`, and a list of
//! literals after `IN` collapses to `IN (...)`. Statements are joined with `"; "` and a
//! trailing `;` is dropped.
//!
//! The same [`Normalizer`] drives both outputs through [`Out`]: [`Fnv`] hashes the bytes
//! (no allocation, used by `classify`), [`Text`] appends them to a `String` (used by
//! `normalize`). So the digest is exactly FNV-1a-64 of the normalized text.

use super::lexer::{Tok, Token};
use super::words::{FNV_OFFSET, FNV_PRIME, FuncClass, Kw};

/// Where normalized text goes.
pub(super) trait Out {
    fn text(&mut self, s: &str);
    fn upper(&mut self, s: &str);
    fn lower(&mut self, s: &str);
}

/// Hashes normalized text with FNV-1a (64 bit).
pub(super) struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(FNV_OFFSET)
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.0 = (self.0 ^ b as u64).wrapping_mul(FNV_PRIME);
    }
}

impl Out for Fnv {
    #[inline]
    fn text(&mut self, s: &str) {
        s.bytes().for_each(|b| self.byte(b));
    }
    #[inline]
    fn upper(&mut self, s: &str) {
        s.bytes().for_each(|b| self.byte(b.to_ascii_uppercase()));
    }
    #[inline]
    fn lower(&mut self, s: &str) {
        s.bytes().for_each(|b| self.byte(b.to_ascii_lowercase()));
    }
}

/// Appends normalized text to a string.
pub(super) struct Text<'a>(pub &'a mut String);

impl Out for Text<'_> {
    fn text(&mut self, s: &str) {
        self.0.push_str(s);
    }
    fn upper(&mut self, s: &str) {
        let from = self.0.len();
        self.0.push_str(s);
        self.0[from..].make_ascii_uppercase();
    }
    fn lower(&mut self, s: &str) {
        let from = self.0.len();
        self.0.push_str(s);
        self.0[from..].make_ascii_lowercase();
    }
}

/// The class of the last emitted piece, which decides the spacing before the next one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    Start,
    Open,
    Close,
    Comma,
    Dot,
    Keyword(Kw),
    Name,
    Value,
    Op,
}

/// How a piece is written.
#[derive(Clone, Copy)]
enum Case {
    AsIs,
    Upper,
    Lower,
}

/// A literal list after `IN (` being held back: `items` literals seen so far.
#[derive(Clone, Copy)]
struct InList {
    items: u32,
    expect_value: bool,
}

/// Turns tokens into normalized text.
pub(super) struct Normalizer<O: Out> {
    pub out: O,
    last: Last,
    pending_semi: bool,
    pending_sign: Option<&'static str>,
    list: Option<InList>,
}

impl<O: Out> Normalizer<O> {
    pub fn new(out: O) -> Normalizer<O> {
        Normalizer {
            out,
            last: Last::Start,
            pending_semi: false,
            pending_sign: None,
            list: None,
        }
    }

    /// Feeds one token. `func` is the builtin class of a word followed by `(`.
    pub fn token(&mut self, sql: &str, t: &Token, func: Option<FuncClass>) {
        if let Some(sign) = self.pending_sign.take() {
            if t.tok != Tok::Num {
                self.emit_sign(sign);
            }
        }
        if self.is_unary_sign(sql, t) {
            self.pending_sign = Some(if t.is_op(sql, "-") { "-" } else { "+" });
            return;
        }
        if self.list.is_some() && self.list_absorbs(t) {
            return;
        }
        self.piece(sql, t, func);
    }

    fn is_unary_sign(&self, sql: &str, t: &Token) -> bool {
        if !(t.is_op(sql, "-") || t.is_op(sql, "+")) {
            return false;
        }
        match self.last {
            Last::Start | Last::Open | Last::Comma | Last::Op => true,
            Last::Keyword(kw) => !matches!(kw, Kw::NULL | Kw::TRUE | Kw::FALSE | Kw::END),
            _ => false,
        }
    }

    /// Holds back literals and commas of an `IN (` list; false when `t` ends the list
    /// without collapsing it (the held-back part is replayed first).
    fn list_absorbs(&mut self, t: &Token) -> bool {
        let Some(mut list) = self.list.take() else {
            return false;
        };
        let literal = matches!(t.tok, Tok::Str | Tok::Num | Tok::Param);
        if literal && list.expect_value {
            list.items += 1;
            list.expect_value = false;
        } else if t.tok == Tok::Comma && !list.expect_value {
            list.expect_value = true;
        } else if t.tok == Tok::RParen && list.items > 0 && !list.expect_value {
            self.emit(Last::Value, "...", Case::AsIs);
            self.emit(Last::Close, ")", Case::AsIs);
            return true;
        } else {
            self.replay(list);
            return false;
        }
        self.list = Some(list);
        true
    }

    fn replay(&mut self, list: InList) {
        for i in 0..list.items {
            self.emit(Last::Value, "?", Case::AsIs);
            if i + 1 < list.items || list.expect_value {
                self.emit(Last::Comma, ",", Case::AsIs);
            }
        }
    }

    fn piece(&mut self, sql: &str, t: &Token, func: Option<FuncClass>) {
        let text = t.text(sql);
        match t.tok {
            Tok::Word => self.word(text, t, func),
            Tok::QuotedIdent => self.emit(Last::Name, text, Case::AsIs),
            Tok::Str | Tok::Num | Tok::Param => self.emit(Last::Value, "?", Case::AsIs),
            Tok::UserVar | Tok::SysVar => self.emit(Last::Value, text, Case::Lower),
            Tok::LParen => self.open(),
            Tok::RParen => self.emit(Last::Close, ")", Case::AsIs),
            Tok::Comma => self.emit(Last::Comma, ",", Case::AsIs),
            Tok::Dot => self.emit(Last::Dot, ".", Case::AsIs),
            Tok::Op => self.emit(Last::Op, text, Case::AsIs),
            Tok::Semi => self.end_statement(),
            Tok::End => self.finish(),
        }
    }

    fn word(&mut self, text: &str, t: &Token, func: Option<FuncClass>) {
        let called = matches!(
            func,
            Some(FuncClass::Pure | FuncClass::SideEffect | FuncClass::LastStatement)
        );
        let class = match t.kw {
            Some(kw) if !called => Last::Keyword(kw),
            _ => Last::Name,
        };
        let case = if t.kw.is_some() || func.is_some() {
            Case::Upper
        } else {
            Case::AsIs
        };
        self.emit(class, text, case);
    }

    fn open(&mut self) {
        let after_in = self.last == Last::Keyword(Kw::IN);
        self.emit(Last::Open, "(", Case::AsIs);
        if after_in {
            self.list = Some(InList {
                items: 0,
                expect_value: true,
            });
        }
    }

    fn end_statement(&mut self) {
        self.flush();
        if self.last != Last::Start {
            self.pending_semi = true;
        }
    }

    fn finish(&mut self) {
        self.flush();
        self.pending_semi = false;
    }

    fn flush(&mut self) {
        if let Some(list) = self.list.take() {
            self.replay(list);
        }
        if let Some(sign) = self.pending_sign.take() {
            self.emit_sign(sign);
        }
    }

    fn emit_sign(&mut self, sign: &'static str) {
        if let Some(list) = self.list.take() {
            self.replay(list);
        }
        self.emit(Last::Op, sign, Case::AsIs);
    }

    fn emit(&mut self, class: Last, text: &str, case: Case) {
        if self.pending_semi {
            self.out.text("; ");
            self.pending_semi = false;
            self.last = Last::Start;
        }
        if space_between(self.last, class) {
            self.out.text(" ");
        }
        match case {
            Case::AsIs => self.out.text(text),
            Case::Upper => self.out.upper(text),
            Case::Lower => self.out.lower(text),
        }
        self.last = class;
    }
}

fn space_between(last: Last, next: Last) -> bool {
    match last {
        Last::Start | Last::Open | Last::Dot => false,
        _ => match next {
            Last::Close | Last::Comma | Last::Dot => false,
            Last::Open => last != Last::Name,
            _ => true,
        },
    }
}
