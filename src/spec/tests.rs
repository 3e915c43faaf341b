//! Unit tests of the parser's pieces; `tests/spec.rs` covers the grammar.

use super::options::OptKind;
use super::parse::{flag_bit, Parser};
use super::*;

fn pos(name: &str) -> usize {
    match parse(name) {
        Err(Error::InvalidPortSpec { position, .. }) => position,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn identifiers() {
    assert!(is_ident(""));
    assert!(is_ident("a_Z09"));
    assert!(!is_ident("a-b"));
    assert!(!is_ident("é"));
}

#[test]
fn flag_letters() {
    let all: u64 = b"xztrRT".iter().map(|&c| flag_bit(c).unwrap()).sum();
    assert_eq!(all, 0x100 | 0x200 | 0x400 | 0x800 | 0x2000 | 0x4000);
    assert_eq!(flag_bit(b'X'), None);
}

#[test]
fn numbers_saturate_to_none() {
    let text = "18446744073709551616x";
    let p = Parser {
        input: text,
        text,
        b: text.as_bytes(),
        shift: 0,
    };
    let n = p.number(0);
    assert_eq!(n.value, None);
    assert_eq!(n.end, text.len() - 1);
    let n = p.number(1);
    assert_eq!(n.value, Some(8_446_744_073_709_551_616));
}

#[test]
fn plain_names_shift_positions() {
    assert_eq!(pos("eth0-x"), 5);
    assert_eq!(pos("netmap:eth0-x"), 12);
    assert_eq!(pos(""), 0);
    assert_eq!(pos("@conf:"), 0);
}

#[test]
fn every_key_is_found_by_its_name_and_its_dashed_spelling() {
    for k in OptKind::ALL {
        let keys = k.keys();
        for (i, key) in keys.iter().enumerate() {
            assert!(!keys[..i].contains(key), "{key} twice in {}", k.name());
            assert_eq!(k.key(key), Some(*key));
            assert_eq!(k.key(&key.replace('_', "-")), Some(*key));
        }
        assert_eq!(k.key("nope"), None);
        if let Some(d) = k.default_key() {
            assert_eq!(keys[0], d, "the default key of {} comes first", k.name());
        }
    }
}

#[test]
fn conf_shorthands_lose_to_specific_keys_in_any_order() {
    let a = parse("x@conf:tx_slots=7,slots=9").unwrap().conf;
    let b = parse("x@conf:slots=9,tx_slots=7").unwrap().conf;
    assert_eq!(a, b);
    assert_eq!(a.tx_slots, Some(7));
    assert_eq!(a.rx_slots, Some(9));
}
