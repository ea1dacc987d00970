//! Routing hints written in comments: `rwsplit:primary`, `rwsplit:replica` and
//! `rwsplit:consistency=eventual|pin|gtid|gtid_global`, case-insensitive, in any comment
//! form, anywhere in the text, several per comment allowed. Executable comments are code,
//! not comments, and strings are never searched. Primary wins over replica; for
//! consistency the last hint wins. Unknown names or values are ignored.

use super::info::{Consistency, Hint};

/// Routing hints collected from comments.
#[derive(Clone, Copy, Default, Debug)]
pub(super) struct Hints {
    pub primary: bool,
    pub replica: bool,
    pub consistency: Option<Consistency>,
}

impl Hints {
    /// Applies every hint in one comment's text.
    pub fn scan(&mut self, text: &[u8]) {
        const TAG: &[u8] = b"rwsplit:";
        let mut i = 0;
        while i + TAG.len() <= text.len() {
            if text[i] | 0x20 == b'r' && text[i..i + TAG.len()].eq_ignore_ascii_case(TAG) {
                i = self.apply(text, i + TAG.len());
            } else {
                i += 1;
            }
        }
    }

    /// Applies the hint whose name starts at `i`; returns where scanning goes on.
    fn apply(&mut self, text: &[u8], i: usize) -> usize {
        let (name, mut i) = hint_word(text, i);
        if name.eq_ignore_ascii_case(b"primary") {
            self.primary = true;
        } else if name.eq_ignore_ascii_case(b"replica") {
            self.replica = true;
        } else if name.eq_ignore_ascii_case(b"consistency") {
            i = skip_blanks(text, i);
            if text.get(i) == Some(&b'=') {
                let (value, end) = hint_word(text, skip_blanks(text, i + 1));
                i = end;
                if let Some(c) = consistency(value) {
                    self.consistency = Some(c);
                }
            }
        }
        i
    }

    /// The primary/replica hint; primary wins when both were written.
    pub fn hint(&self) -> Option<Hint> {
        if self.primary {
            Some(Hint::Primary)
        } else if self.replica {
            Some(Hint::Replica)
        } else {
            None
        }
    }
}

fn hint_word(text: &[u8], mut i: usize) -> (&[u8], usize) {
    let start = i;
    while i < text.len() && (text[i].is_ascii_alphanumeric() || text[i] == b'_') {
        i += 1;
    }
    (&text[start..i], i)
}

fn skip_blanks(text: &[u8], mut i: usize) -> usize {
    while i < text.len() && text[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn consistency(value: &[u8]) -> Option<Consistency> {
    [
        (&b"eventual"[..], Consistency::Eventual),
        (b"pin", Consistency::Pin),
        (b"gtid", Consistency::Gtid),
        (b"gtid_global", Consistency::GtidGlobal),
    ]
    .into_iter()
    .find(|(name, _)| value.eq_ignore_ascii_case(name))
    .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(text: &str) -> Hints {
        let mut h = Hints::default();
        h.scan(text.as_bytes());
        h
    }

    #[test]
    fn consistency_value_may_have_spaces_around_equals() {
        assert_eq!(
            hints(" rwsplit:consistency = gtid_global ").consistency,
            Some(Consistency::GtidGlobal)
        );
    }

    #[test]
    fn consistency_without_value_is_ignored() {
        assert_eq!(hints("rwsplit:consistency").consistency, None);
        assert_eq!(hints("rwsplit:consistency=").consistency, None);
    }

    #[test]
    fn last_consistency_wins() {
        assert_eq!(
            hints("rwsplit:consistency=pin rwsplit:consistency=gtid").consistency,
            Some(Consistency::Gtid)
        );
    }

    #[test]
    fn unknown_hint_name_is_ignored() {
        let h = hints("rwsplit:fastest rwsplit:");
        assert!(!h.primary && !h.replica && h.consistency.is_none());
    }

    #[test]
    fn hint_word_must_follow_the_tag_directly() {
        assert!(!hints("rwsplit: primary").primary);
    }
}
