//! The text the classifier reads from a statement's bytes, in the client's
//! character set.
//!
//! In big5, cp932, sjis, gbk and gb18030 the second byte of a multibyte
//! character may be an ASCII byte: a backslash, a backtick, `|`... The
//! server reads such a character as one, so its second byte never escapes a
//! quote nor ends a name; read byte by byte (or as UTF-8, which it may well
//! be: `E4 B8 AD 5C` is a UTF-8 character and a backslash, or two gbk
//! characters) the same text would lex differently. For those character
//! sets every multibyte character becomes U+FFFD in the text, which the
//! lexer reads as part of a string or a name, as the server does.

/// A client character set whose multibyte characters may contain ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Multibyte {
    Big5,
    /// sjis and cp932.
    Sjis,
    Gbk,
    Gb18030,
}

impl Multibyte {
    /// The character set named `name` (as `character_set_client` reports it).
    pub fn of_charset(name: &[u8]) -> Option<Multibyte> {
        const NAMED: [(&[u8], Multibyte); 5] = [
            (b"big5", Multibyte::Big5),
            (b"sjis", Multibyte::Sjis),
            (b"cp932", Multibyte::Sjis),
            (b"gbk", Multibyte::Gbk),
            (b"gb18030", Multibyte::Gb18030),
        ];
        NAMED.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, m)| *m)
    }

    /// The character set of a collation id a client gives at login (one
    /// byte there; the ids MySQL and MariaDB share below 256).
    pub fn of_collation(id: u16) -> Option<Multibyte> {
        match id {
            1 | 84 => Some(Multibyte::Big5),
            13 | 88 | 95 | 96 => Some(Multibyte::Sjis),
            28 | 87 => Some(Multibyte::Gbk),
            248..=250 => Some(Multibyte::Gb18030),
            _ => None,
        }
    }

    /// The length of the multibyte character at the start of `b`, or 1.
    fn char_len(self, b: &[u8]) -> usize {
        let (Some(&lead), Some(&next)) = (b.first(), b.get(1)) else {
            return 1;
        };
        let two = match self {
            Multibyte::Big5 => {
                matches!(lead, 0xA1..=0xF9) && matches!(next, 0x40..=0x7E | 0xA1..=0xFE)
            }
            Multibyte::Sjis => {
                matches!(lead, 0x81..=0x9F | 0xE0..=0xFC)
                    && matches!(next, 0x40..=0x7E | 0x80..=0xFC)
            }
            Multibyte::Gbk | Multibyte::Gb18030 => {
                matches!(lead, 0x81..=0xFE) && matches!(next, 0x40..=0x7E | 0x80..=0xFE)
            }
        };
        if two {
            return 2;
        }
        let four = self == Multibyte::Gb18030
            && matches!(lead, 0x81..=0xFE)
            && matches!(next, 0x30..=0x39)
            && matches!(b.get(2), Some(0x81..=0xFE))
            && matches!(b.get(3), Some(0x30..=0x39));
        if four { 4 } else { 1 }
    }
}

/// The character set of collation `id` (below 256, the ids MySQL and
/// MariaDB share) when no client may talk in it: ucs2, utf16, utf16le and
/// utf32, in which a statement's ASCII is not ASCII bytes. The server
/// refuses such a login or COM_CHANGE_USER before it checks the password
/// (ERROR 1231), as it refuses `SET NAMES` to them.
pub fn not_a_client_charset(id: u16) -> Option<&'static str> {
    match id {
        35 | 90 | 128..=151 | 159 => Some("ucs2"),
        54 | 55 | 101..=124 => Some("utf16"),
        56 | 62 => Some("utf16le"),
        60 | 61 | 160..=183 => Some("utf32"),
        _ => None,
    }
}

/// Appends the text the classifier reads for `bytes`, a statement in the
/// client's character set, to `out`: in a [`Multibyte`] set every
/// character outside ASCII becomes U+FFFD; otherwise valid UTF-8 is kept as
/// it is and any other byte becomes U+FFFD.
pub fn push_text(bytes: &[u8], charset: Option<Multibyte>, out: &mut String) {
    let Some(charset) = charset else {
        match std::str::from_utf8(bytes) {
            Ok(text) => out.push_str(text),
            Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
        }
        return;
    };
    out.reserve(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b.is_ascii() {
            out.push(char::from(b));
            i += 1;
        } else {
            out.push(char::REPLACEMENT_CHARACTER);
            i += charset.char_len(&bytes[i..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8], charset: Option<Multibyte>) -> String {
        let mut out = String::new();
        push_text(bytes, charset, &mut out);
        out
    }

    #[test]
    fn a_multibyte_character_ending_in_a_backslash_stays_one_character() {
        // sjis 表 is 95 5C; gbk 乗 is 81 5C; big5 功 is A5 5C.
        assert_eq!(text(b"'\x95\x5C'", Some(Multibyte::Sjis)), "'\u{FFFD}'");
        assert_eq!(text(b"'\x81\x5C'", Some(Multibyte::Gbk)), "'\u{FFFD}'");
        assert_eq!(text(b"'\xA5\x5C'", Some(Multibyte::Big5)), "'\u{FFFD}'");
        // Without the character set the backslash is one.
        assert_eq!(text(b"'\x95\x5C'", None), "'\u{FFFD}\\'");
    }

    #[test]
    fn wide_character_sets_are_not_client_character_sets() {
        assert_eq!(not_a_client_charset(35), Some("ucs2"));
        assert_eq!(not_a_client_charset(159), Some("ucs2"));
        assert_eq!(not_a_client_charset(124), Some("utf16"));
        assert_eq!(not_a_client_charset(62), Some("utf16le"));
        assert_eq!(not_a_client_charset(183), Some("utf32"));
        for usable in [8, 28, 33, 45, 63, 83, 192, 224, 246, 255] {
            assert_eq!(not_a_client_charset(usable), None, "{usable}");
        }
    }

    #[test]
    fn valid_utf8_is_read_as_the_client_s_character_set() {
        // E4 B8 AD 5C: UTF-8 for a character and a backslash; gbk for two characters.
        assert_eq!(text("'中\\'".as_bytes(), None), "'中\\'");
        assert_eq!(text("'中\\'".as_bytes(), Some(Multibyte::Gbk)), "'\u{FFFD}\u{FFFD}'");
    }

    #[test]
    fn single_byte_katakana_and_bad_pairs_are_one_byte() {
        // sjis A1..DF are one-byte characters: the backslash after one is one.
        assert_eq!(text(b"\xB1\\", Some(Multibyte::Sjis)), "\u{FFFD}\\");
        // A lead byte before a byte that cannot follow it: the next byte stands alone.
        assert_eq!(text(b"\x81'", Some(Multibyte::Gbk)), "\u{FFFD}'");
        assert_eq!(text(b"\x95", Some(Multibyte::Sjis)), "\u{FFFD}");
    }

    #[test]
    fn gb18030_four_byte_characters_are_one() {
        assert_eq!(text(b"a\x81\x30\x81\x30b", Some(Multibyte::Gb18030)), "a\u{FFFD}b");
        assert_eq!(text(b"\x81\x30'", Some(Multibyte::Gb18030)), "\u{FFFD}0'");
    }

    #[test]
    fn charsets_are_known_by_name_and_collation() {
        assert_eq!(Multibyte::of_charset(b"SJIS"), Some(Multibyte::Sjis));
        assert_eq!(Multibyte::of_charset(b"cp932"), Some(Multibyte::Sjis));
        assert_eq!(Multibyte::of_charset(b"utf8mb4"), None);
        assert_eq!(Multibyte::of_collation(28), Some(Multibyte::Gbk));
        assert_eq!(Multibyte::of_collation(45), None);
        assert_eq!(Multibyte::of_collation(8), None);
    }
}
