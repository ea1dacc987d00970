use super::super::{Consistency, Hint, classify};

#[test]
fn primary_hint_is_found() {
    assert_eq!(classify("/* rwsplit:primary */ SELECT 1").hint, Some(Hint::Primary));
}

#[test]
fn replica_hint_is_found() {
    assert_eq!(classify("SELECT /* rwsplit:replica */ 1").hint, Some(Hint::Replica));
}

#[test]
fn hint_in_trailing_comment_is_found() {
    assert_eq!(classify("SELECT 1 /* rwsplit:primary */").hint, Some(Hint::Primary));
    assert_eq!(classify("SELECT 1 -- rwsplit:replica").hint, Some(Hint::Replica));
    assert_eq!(classify("SELECT 1 # rwsplit:replica").hint, Some(Hint::Replica));
}

#[test]
fn consistency_hint_is_found() {
    let info = classify("/* rwsplit:consistency=pin */ SELECT 1");
    assert_eq!(info.consistency, Some(Consistency::Pin));
    assert_eq!(info.hint, None);
}

#[test]
fn every_consistency_value_is_parsed() {
    for (text, c) in [
        ("eventual", Consistency::Eventual),
        ("pin", Consistency::Pin),
        ("gtid", Consistency::Gtid),
        ("gtid_global", Consistency::GtidGlobal),
    ] {
        let sql = format!("SELECT 1 /* rwsplit:consistency={text} */");
        assert_eq!(classify(&sql).consistency, Some(c), "{text}");
    }
}

#[test]
fn unknown_consistency_value_is_ignored() {
    assert_eq!(classify("SELECT 1 /* rwsplit:consistency=strong */").consistency, None);
}

#[test]
fn two_hints_in_one_comment_are_both_found() {
    let info = classify("/* rwsplit:replica rwsplit:consistency=eventual */ SELECT 1");
    assert_eq!(info.hint, Some(Hint::Replica));
    assert_eq!(info.consistency, Some(Consistency::Eventual));
}

#[test]
fn primary_wins_over_replica() {
    let info = classify("/* rwsplit:replica */ SELECT 1 /* rwsplit:primary */");
    assert_eq!(info.hint, Some(Hint::Primary));
}

#[test]
fn hint_inside_string_is_ignored() {
    assert_eq!(classify("SELECT '/* rwsplit:primary */'").hint, None);
}

#[test]
fn hint_inside_executable_comment_is_not_a_hint() {
    assert_eq!(classify("SELECT 1 /*! rwsplit:primary */").hint, None);
}

#[test]
fn hint_is_case_insensitive() {
    assert_eq!(classify("SELECT 1 /* RWSPLIT:Primary */").hint, Some(Hint::Primary));
}

#[test]
fn hint_does_not_change_the_kind() {
    assert!(classify("/* rwsplit:replica */ SELECT 1").is_plain_read());
}
