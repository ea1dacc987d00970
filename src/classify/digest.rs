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
//! The same [`Normalizer`] drives both outputs through [`Out`]: [`Hash`] hashes the bytes
//! (no allocation, used by `classify`), [`Text`] appends them to a `String` (used by
//! `normalize`). So the digest is exactly the [`Hash`] of the normalized text.

use super::lexer::{Tok, Token};
use super::words::{FuncClass, KW_NAMES, Kw};

/// Where normalized text goes.
pub(super) trait Out {
    /// One ASCII byte.
    fn byte(&mut self, b: u8);
    fn text(&mut self, s: &str);
    fn upper(&mut self, s: &str);
    fn lower(&mut self, s: &str);
    /// A keyword, uppercase.
    fn keyword(&mut self, kw: Kw);
}

/// Hashes normalized text as a polynomial over its bytes modulo the Mersenne prime
/// 2^61 - 1, finished with a 64-bit avalanche. The polynomial composes
/// (`H(a ++ b) = H(a) * P^|b| + H(b)`), so a keyword's part is precomputed at compile time
/// and costs one multiply; other bytes cost one each. Not collision resistant against a
/// crafted text: it keys statistics, and the parser tier's cache uses a keyed hash.
pub(super) struct Hash {
    h: u64,
    len: u64,
}

const M61: u64 = (1 << 61) - 1;
const BASE: u64 = 0x1f2e_3d4c_5b6a_7988 % M61;

#[inline(always)]
const fn mul_mod(a: u64, b: u64) -> u64 {
    let p = (a as u128) * (b as u128);
    let r = (p as u64 & M61) + (p >> 61) as u64;
    if r >= M61 { r - M61 } else { r }
}

#[inline(always)]
const fn add_mod(a: u64, b: u64) -> u64 {
    let r = a + b;
    if r >= M61 { r - M61 } else { r }
}

/// `(H(name), BASE^len)` for every keyword, in keyword order.
const KW_POLY: [(u64, u64); KW_NAMES.len()] = {
    let mut t = [(0u64, 1u64); KW_NAMES.len()];
    let mut i = 0;
    while i < KW_NAMES.len() {
        let name = KW_NAMES[i].as_bytes();
        let (mut h, mut pow) = (0u64, 1u64);
        let mut j = 0;
        while j < name.len() {
            h = add_mod(mul_mod(h, BASE), name[j] as u64);
            pow = mul_mod(pow, BASE);
            j += 1;
        }
        t[i] = (h, pow);
        i += 1;
    }
    t
};

impl Hash {
    pub fn new() -> Hash {
        Hash { h: 0, len: 0 }
    }

    /// The hash of `text`, as if it had been fed through a normalizer.
    #[cfg(test)]
    pub fn of(text: &str) -> u64 {
        let mut h = Hash::new();
        h.text(text);
        h.finish()
    }

    #[inline(always)]
    fn push(&mut self, b: u8) {
        self.h = add_mod(mul_mod(self.h, BASE), u64::from(b));
    }

    /// The digest of everything fed so far.
    pub fn finish(&self) -> u64 {
        let mut h = self.h ^ self.len.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

impl Out for Hash {
    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.push(b);
        self.len += 1;
    }
    #[inline]
    fn text(&mut self, s: &str) {
        s.bytes().for_each(|b| self.push(b));
        self.len += s.len() as u64;
    }
    #[inline]
    fn upper(&mut self, s: &str) {
        s.bytes().for_each(|b| self.push(b.to_ascii_uppercase()));
        self.len += s.len() as u64;
    }
    #[inline]
    fn lower(&mut self, s: &str) {
        s.bytes().for_each(|b| self.push(b.to_ascii_lowercase()));
        self.len += s.len() as u64;
    }
    #[inline(always)]
    fn keyword(&mut self, kw: Kw) {
        let (h, pow) = KW_POLY[kw as usize];
        self.h = add_mod(mul_mod(self.h, pow), h);
        self.len += kw.name().len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_part_equals_its_bytes() {
        for kw in [Kw::SELECT, Kw::SQL_CALC_FOUND_ROWS, Kw::IN] {
            let mut a = Hash::new();
            a.text("x ");
            a.keyword(kw);
            let mut b = Hash::new();
            b.text("x ");
            b.text(kw.name());
            assert_eq!(a.finish(), b.finish(), "{kw:?}");
        }
    }

    #[test]
    fn hash_does_not_depend_on_how_text_is_split() {
        let text = "SELECT c FROM sbtest1 WHERE id = ?";
        for cut in 0..text.len() {
            let mut h = Hash::new();
            h.text(&text[..cut]);
            h.text(&text[cut..]);
            assert_eq!(h.finish(), Hash::of(text), "{cut}");
        }
    }

    #[test]
    fn hash_separates_lengths() {
        assert_ne!(Hash::of(""), Hash::of("\0"));
        assert_ne!(Hash::of("a"), Hash::of("a\0"));
    }
}

/// Appends normalized text to a string.
pub(super) struct Text<'a>(pub &'a mut String);

impl Out for Text<'_> {
    fn byte(&mut self, b: u8) {
        self.0.push(char::from(b));
    }
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
    fn keyword(&mut self, kw: Kw) {
        self.0.push_str(kw.name());
    }
}

/// The class of the last emitted piece, which decides the spacing before the next one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Last {
    Start,
    Open,
    Close,
    Comma,
    Dot,
    Keyword,
    Name,
    Value,
    Op,
}

const CLASSES: usize = 9;

/// `SPACE[last][next]`: a space goes between the two pieces. None after `(` or `.` or at
/// the start; none before `)`, `,` or `.`; none between a called name and its `(`.
const SPACE: [[bool; CLASSES]; CLASSES] = {
    let mut t = [[true; CLASSES]; CLASSES];
    let mut i = 0;
    while i < CLASSES {
        t[Last::Start as usize][i] = false;
        t[Last::Open as usize][i] = false;
        t[Last::Dot as usize][i] = false;
        t[i][Last::Close as usize] = false;
        t[i][Last::Comma as usize] = false;
        t[i][Last::Dot as usize] = false;
        i += 1;
    }
    t[Last::Name as usize][Last::Open as usize] = false;
    t
};

/// How a piece is written.
#[derive(Clone, Copy)]
enum Case {
    AsIs,
    Upper,
    Lower,
    Keyword(Kw),
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
    /// The keyword last emitted, when `last` is `Keyword`.
    last_kw: Option<Kw>,
    pending_semi: bool,
    pending_sign: Option<u8>,
    list: Option<InList>,
}

impl<O: Out> Normalizer<O> {
    pub fn new(out: O) -> Normalizer<O> {
        Normalizer {
            out,
            last: Last::Start,
            last_kw: None,
            pending_semi: false,
            pending_sign: None,
            list: None,
        }
    }

    /// Feeds one token. `func` is the builtin class of a word followed by `(`.
    #[inline]
    pub fn token(&mut self, sql: &str, t: &Token, func: Option<FuncClass>) {
        if self.pending_sign.is_none() && self.list.is_none() && t.tok != Tok::Op {
            self.piece(sql, t, func);
        } else {
            self.token_held(sql, t, func);
        }
    }

    /// The rare path: a sign or an `IN (` list is held back, or `t` may be a sign.
    fn token_held(&mut self, sql: &str, t: &Token, func: Option<FuncClass>) {
        if let Some(sign) = self.pending_sign.take()
            && t.tok != Tok::Num
        {
            self.emit_sign(sign);
        }
        if let Some(sign) = self.unary_sign(sql, t) {
            self.pending_sign = Some(sign);
            return;
        }
        if self.list.is_some() && self.list_absorbs(t) {
            return;
        }
        self.piece(sql, t, func);
    }

    /// `-` or `+` where an operand is expected: a sign, absorbed into a following number.
    fn unary_sign(&self, sql: &str, t: &Token) -> Option<u8> {
        let sign = match t.text(sql).as_bytes() {
            [b @ (b'-' | b'+')] if t.tok == Tok::Op => *b,
            _ => return None,
        };
        let operand_expected = match self.last {
            Last::Start | Last::Open | Last::Comma | Last::Op => true,
            Last::Keyword => {
                !matches!(self.last_kw, Some(Kw::NULL | Kw::TRUE | Kw::FALSE | Kw::END))
            }
            _ => false,
        };
        operand_expected.then_some(sign)
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
            self.emit_byte(Last::Close, b')');
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
            self.emit_byte(Last::Value, b'?');
            if i + 1 < list.items || list.expect_value {
                self.emit_byte(Last::Comma, b',');
            }
        }
    }

    #[inline]
    fn piece(&mut self, sql: &str, t: &Token, func: Option<FuncClass>) {
        match t.tok {
            Tok::Word => self.word(t.text(sql), t, func),
            Tok::QuotedIdent => self.emit(Last::Name, t.text(sql), Case::AsIs),
            Tok::Str | Tok::Num | Tok::Param => self.emit_byte(Last::Value, b'?'),
            Tok::UserVar | Tok::SysVar => self.emit(Last::Value, t.text(sql), Case::Lower),
            Tok::LParen => self.open(),
            Tok::RParen => self.emit_byte(Last::Close, b')'),
            Tok::Comma => self.emit_byte(Last::Comma, b','),
            Tok::Dot => self.emit_byte(Last::Dot, b'.'),
            Tok::Op => self.emit(Last::Op, t.text(sql), Case::AsIs),
            Tok::Semi => self.end_statement(),
            Tok::End => self.finish(),
        }
    }

    #[inline]
    fn word(&mut self, text: &str, t: &Token, func: Option<FuncClass>) {
        let called = matches!(
            func,
            Some(FuncClass::Pure | FuncClass::SideEffect | FuncClass::LastStatement)
        );
        match (t.kw, func) {
            (Some(kw), _) => {
                self.emit(if called { Last::Name } else { Last::Keyword }, text, Case::Keyword(kw));
                self.last_kw = Some(kw);
            }
            (None, Some(_)) => self.emit(Last::Name, text, Case::Upper),
            (None, None) => self.emit(Last::Name, text, Case::AsIs),
        }
    }

    fn open(&mut self) {
        let after_in = self.last == Last::Keyword && self.last_kw == Some(Kw::IN);
        self.emit_byte(Last::Open, b'(');
        if after_in {
            self.list = Some(InList { items: 0, expect_value: true });
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

    fn emit_sign(&mut self, sign: u8) {
        if let Some(list) = self.list.take() {
            self.replay(list);
        }
        self.emit_byte(Last::Op, sign);
    }

    #[inline]
    fn space_before(&mut self, class: Last) {
        if self.pending_semi {
            self.out.text("; ");
            self.pending_semi = false;
            self.last = Last::Start;
        }
        if SPACE[self.last as usize][class as usize] {
            self.out.byte(b' ');
        }
        self.last = class;
    }

    #[inline]
    fn emit_byte(&mut self, class: Last, b: u8) {
        self.space_before(class);
        self.out.byte(b);
    }

    #[inline]
    fn emit(&mut self, class: Last, text: &str, case: Case) {
        self.space_before(class);
        match case {
            Case::AsIs => self.out.text(text),
            Case::Upper => self.out.upper(text),
            Case::Lower => self.out.lower(text),
            Case::Keyword(kw) => self.out.keyword(kw),
        }
    }
}

#[cfg(test)]
mod spacing_tests {
    use super::*;

    #[test]
    fn no_space_after_open_or_dot_or_at_start() {
        for last in [Last::Start, Last::Open, Last::Dot] {
            assert!(SPACE[last as usize].iter().all(|space| !space), "{last:?}");
        }
    }

    #[test]
    fn called_name_touches_its_paren_and_keyword_does_not() {
        assert!(!SPACE[Last::Name as usize][Last::Open as usize]);
        assert!(SPACE[Last::Keyword as usize][Last::Open as usize]);
    }
}
