use std::io::Cursor;

use super::*;
use crate::dataset::{write_element_header, UNDEFINED_LENGTH};

const LE: Encoding = Encoding::EXPLICIT_LE;
const IM: Encoding = Encoding::IMPLICIT_LE;
const BE: Encoding = Encoding::EXPLICIT_BE;

fn el(enc: Encoding, tag: u32, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_element_header(&mut out, enc, tag, Some(*vr), value.len() as u32);
    out.extend_from_slice(value);
    out
}

fn undefined(enc: Encoding, tag: u32, vr: &[u8; 2]) -> Vec<u8> {
    let mut out = Vec::new();
    write_element_header(&mut out, enc, tag, Some(*vr), UNDEFINED_LENGTH);
    out
}

fn marker(enc: Encoding, tag: u32, length: u32) -> Vec<u8> {
    let mut out = Vec::new();
    write_element_header(&mut out, enc, tag, None, length);
    out
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn c(edits: &[(u32, Option<&str>)]) -> Coercion {
    Coercion::new(edits.iter().map(|(t, v)| (*t, v.map(str::to_string))).collect()).expect("valid coercion")
}

/// Coerce `data` and return the whole data set as it would be sent, and the bytes read.
fn apply(data: &[u8], enc: Encoding, co: &Coercion) -> Result<(Vec<u8>, u64), DatasetError> {
    let mut cur = Cursor::new(data);
    let h = coerce_header(&mut cur, data.len() as u64, enc, co, 0)?;
    assert_eq!(cur.position(), h.consumed, "consumed counts every byte read");
    let mut out = h.bytes;
    out.extend_from_slice(&data[h.consumed as usize..]);
    Ok((out, h.consumed))
}

fn pixels(enc: Encoding) -> Vec<u8> {
    el(enc, TAG_PIXEL_DATA, b"OW", &(0u8..=255).cycle().take(4096).collect::<Vec<_>>())
}

fn sample(enc: Encoding, patient_id: &[u8], issuer: Option<&[u8]>) -> Vec<u8> {
    let mut parts = vec![
        el(enc, 0x0008_0016, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
        el(enc, 0x0008_0018, b"UI", b"1.2.3.4\0"),
        el(enc, 0x0010_0010, b"PN", b"Doe^John"),
        el(enc, 0x0010_0020, b"LO", patient_id),
    ];
    if let Some(i) = issuer {
        parts.push(el(enc, 0x0010_0021, b"LO", i));
    }
    parts.push(el(enc, 0x0010_0030, b"DA", b"19700101"));
    parts.push(el(enc, 0x0020_000D, b"UI", b"1.2.3\0"));
    parts.push(el(enc, 0x0028_0010, b"US", &if enc.little_endian { 64u16.to_le_bytes() } else { 64u16.to_be_bytes() }));
    parts.push(pixels(enc));
    cat(&parts)
}

#[test]
fn dataset_coerce_replaces_and_inserts_explicit_and_implicit() {
    for enc in [LE, IM, BE] {
        let data = sample(enc, b"OLD1", None);
        let co = c(&[(0x0010_0020, Some("X123")), (0x0010_0021, Some("SITE"))]);
        let (out, consumed) = apply(&data, enc, &co).expect("coerced");
        assert_eq!(out, sample(enc, b"X123", Some(b"SITE")), "{enc:?}");
        // The cut is at (0020,000D), the first element past group 0010: nothing after it was read.
        let pixel_at = (data.len() - pixels(enc).len()) as u64;
        assert!(consumed < pixel_at, "{enc:?}: the cut is before the pixel data ({consumed})");
    }
}

#[test]
fn dataset_coerce_pads_to_even_length_and_keeps_odd_input() {
    let data = cat(&[
        el(LE, 0x0008_0018, b"UI", b"1.2.3.4\0"),
        el(LE, 0x0008_0020, b"DA", b"2020010"), // odd, as some writers do: kept as is
        el(LE, 0x0010_0020, b"LO", b"OLD"),
        pixels(LE),
    ]);
    let co = c(&[(0x0010_0020, Some("X12")), (0x0020_000D, Some("1.2.345"))]);
    let (out, _) = apply(&data, LE, &co).expect("coerced");
    let want = cat(&[
        el(LE, 0x0008_0018, b"UI", b"1.2.3.4\0"),
        el(LE, 0x0008_0020, b"DA", b"2020010"),
        el(LE, 0x0010_0020, b"LO", b"X12 "),
        el(LE, 0x0020_000D, b"UI", b"1.2.345\0"),
        pixels(LE),
    ]);
    assert_eq!(out, want);
}

#[test]
fn dataset_coerce_deletes_and_inserts_where_nothing_was() {
    let data = sample(LE, b"OLD1", Some(b"OLDSITE "));
    let co = c(&[(0x0010_0021, None), (0x0010_1000, Some("A\\B"))]);
    let (out, _) = apply(&data, LE, &co).expect("coerced");
    let mut want = sample(LE, b"OLD1", None);
    let at = want.windows(4).position(|w| w == [0x20, 0x00, 0x0D, 0x00]).expect("(0020,000D) is there");
    // (0010,1000) Other Patient IDs goes after Patient's Birth Date (0010,0030).
    want.splice(at..at, el(LE, 0x0010_1000, b"LO", b"A\\B "));
    assert_eq!(out, want);
    // Deleting what is not there changes nothing.
    let (out, _) = apply(&data, LE, &c(&[(0x0010_2160, None)])).expect("coerced");
    assert_eq!(out, data);
}

#[test]
fn dataset_coerce_numbers_in_the_data_sets_byte_order() {
    for enc in [LE, BE, IM] {
        let data = sample(enc, b"ID", None);
        let (out, _) = apply(&data, enc, &c(&[(0x0028_0010, Some("512"))])).expect("coerced");
        let rows = if enc.little_endian { 512u16.to_le_bytes() } else { 512u16.to_be_bytes() };
        let mut want = data.clone();
        let p = data.len() - pixels(enc).len();
        want[p - 2..p].copy_from_slice(&rows);
        assert_eq!(out, want, "{enc:?}");
    }
    assert!(Coercion::new(vec![(0x0028_0010, Some("many".into()))]).is_err());
    assert!(Coercion::new(vec![(0x0028_0010, Some("70000".into()))]).is_err());
}

#[test]
fn dataset_coerce_fixes_or_drops_group_lengths() {
    let group = |pid: &[u8], glen: Option<Vec<u8>>| {
        let body = cat(&[el(LE, 0x0010_0010, b"PN", b"Doe^John"), el(LE, 0x0010_0020, b"LO", pid)]);
        let mut parts = vec![el(LE, 0x0008_0018, b"UI", b"1.2.3.4\0")];
        match glen {
            Some(v) => parts.push(el(LE, 0x0010_0000, b"UL", &v)),
            None => parts.push(el(LE, 0x0010_0000, b"UL", &(body.len() as u32).to_le_bytes())),
        }
        parts.push(body);
        parts.push(pixels(LE));
        cat(&parts)
    };
    let data = group(b"OLD1", None);
    let (out, _) = apply(&data, LE, &c(&[(0x0010_0020, Some("LONGER-ID-42"))])).expect("coerced");
    assert_eq!(out, group(b"LONGER-ID-42", None), "the group length is recomputed");
    // A group length that is not a 4-byte value is dropped.
    let data = group(b"OLD1", Some(vec![1, 2]));
    let (out, _) = apply(&data, LE, &c(&[(0x0010_0020, Some("X1"))])).expect("coerced");
    let want = cat(&[el(LE, 0x0008_0018, b"UI", b"1.2.3.4\0"), el(LE, 0x0010_0010, b"PN", b"Doe^John"), el(LE, 0x0010_0020, b"LO", b"X1"), pixels(LE)]);
    assert_eq!(out, want);
}

/// A sequence of undefined length with an undefined-length item holding a nested
/// undefined-length sequence, then a defined-length sequence, then (explicit VR) a UN of
/// undefined length whose content is implicit VR.
fn sequences(enc: Encoding) -> Vec<u8> {
    let inner_item = cat(&[marker(enc, TAG_ITEM, UNDEFINED_LENGTH), el(enc, 0x0008_1155, b"UI", b"1.2\0"), marker(enc, TAG_ITEM_DELIMITER, 0)]);
    let nested = cat(&[undefined(enc, 0x0008_1199, b"SQ"), inner_item.clone(), marker(enc, TAG_SEQUENCE_DELIMITER, 0)]);
    let item = cat(&[marker(enc, TAG_ITEM, UNDEFINED_LENGTH), el(enc, 0x0008_1150, b"UI", b"1.2.3\0"), nested, marker(enc, TAG_ITEM_DELIMITER, 0)]);
    let seq = cat(&[undefined(enc, 0x0008_1115, b"SQ"), item, marker(enc, TAG_SEQUENCE_DELIMITER, 0)]);
    let defined_item = el(enc, 0x0008_0100, b"SH", b"CODE");
    let defined = cat(&[marker(enc, TAG_ITEM, defined_item.len() as u32), defined_item]);
    let dseq = el(enc, 0x0008_1140, b"SQ", &defined);
    let mut parts = vec![el(enc, 0x0008_0018, b"UI", b"1.2.3.4\0"), seq, dseq];
    if !enc.implicit_vr {
        let un = cat(&[marker(IM, TAG_ITEM, UNDEFINED_LENGTH), el(IM, 0x0008_0100, b"SH", b"UNCODE"), marker(IM, TAG_ITEM_DELIMITER, 0), marker(IM, TAG_SEQUENCE_DELIMITER, 0)]);
        parts.push(cat(&[undefined(enc, 0x0009_1010, b"UN"), un]));
    }
    cat(&parts)
}

#[test]
fn dataset_coerce_copies_sequences_before_the_tag() {
    for enc in [LE, IM, BE] {
        let data = cat(&[sequences(enc), el(enc, 0x0010_0020, b"LO", b"OLD1"), pixels(enc)]);
        let (out, _) = apply(&data, enc, &c(&[(0x0010_0020, Some("NEW1"))])).expect("coerced");
        assert_eq!(out, cat(&[sequences(enc), el(enc, 0x0010_0020, b"LO", b"NEW1"), pixels(enc)]), "{enc:?}");
    }
}

#[test]
fn dataset_coerce_encapsulated_pixel_data_is_not_read() {
    let frags = cat(&[
        undefined(LE, TAG_PIXEL_DATA, b"OB"),
        marker(LE, TAG_ITEM, 0),
        marker(LE, TAG_ITEM, 4),
        vec![1, 2, 3, 4],
        marker(LE, TAG_SEQUENCE_DELIMITER, 0),
    ]);
    let head = cat(&[el(LE, 0x0010_0020, b"LO", b"OLD1")]);
    let data = cat(&[head.clone(), frags.clone()]);
    let (out, consumed) = apply(&data, LE, &c(&[(0x0010_0020, Some("N2"))])).expect("coerced");
    assert_eq!(out, cat(&[el(LE, 0x0010_0020, b"LO", b"N2"), frags]));
    assert_eq!(consumed, head.len() as u64 + 12, "only the pixel data header was read");
}

#[test]
fn dataset_coerce_inserts_at_the_end_of_a_data_set_without_pixel_data() {
    let data = el(LE, 0x0008_0018, b"UI", b"1.2.3.4\0");
    let (out, consumed) = apply(&data, LE, &c(&[(0x0010_0020, Some("P"))])).expect("coerced");
    assert_eq!(consumed, data.len() as u64);
    assert_eq!(out, cat(&[data, el(LE, 0x0010_0020, b"LO", b"P ")]));
}

#[test]
fn dataset_coerce_refuses_a_header_cut_short() {
    let data = sample(LE, b"OLD1", None);
    let co = c(&[(0x0010_0020, Some("X"))]);
    // Inside an element header, inside a value, and an undefined-length sequence never closed.
    for cut in [3usize, 30, 52] {
        let e = apply(&data[..cut], LE, &co).expect_err("cut short");
        assert!(matches!(e, DatasetError::Truncated { .. }), "{cut}: {e}");
    }
    let open = cat(&[undefined(LE, 0x0008_1115, b"SQ"), marker(LE, TAG_ITEM, UNDEFINED_LENGTH), el(LE, 0x0008_1150, b"UI", b"1.2\0")]);
    let e = apply(&open, LE, &co).expect_err("unclosed");
    assert!(matches!(e, DatasetError::Unclosed { tag: TAG_ITEM, .. }), "{e}");
    // A length past the end of the data set (a hostile length field) allocates nothing big.
    let mut bad = Vec::new();
    write_element_header(&mut bad, LE, 0x0008_1140, Some(*b"SQ"), 0xFFFF_FFF0);
    let e = apply(&bad, LE, &co).expect_err("too long");
    assert!(matches!(e, DatasetError::Truncated { length: 0xFFFF_FFF0, .. }), "{e}");
    // A stray delimiter at the top level.
    let e = apply(&marker(LE, TAG_ITEM_DELIMITER, 0), LE, &co).expect_err("stray delimiter");
    assert!(matches!(e, DatasetError::UnexpectedTag { .. }), "{e}");
}

#[test]
fn dataset_coerce_refuses_what_it_cannot_set() {
    let refused = |tag: u32, v: Option<&str>| Coercion::new(vec![(tag, v.map(str::to_string))]).expect_err("refused").to_string();
    assert!(refused(0x0002_0010, Some("1.2")).contains("groups 0008 to 7FDF"));
    assert!(refused(TAG_PIXEL_DATA, None).contains("groups 0008 to 7FDF"));
    assert!(refused(0x0010_0000, Some("1")).contains("group lengths"));
    assert!(refused(0x0009_1001, Some("x")).contains("not in the data dictionary"));
    assert!(refused(0x0008_1115, None).contains("no text form"));
    let twice = Coercion::new(vec![(0x0010_0020, Some("a".into())), (0x0010_0020, None)]).expect_err("twice");
    assert!(twice.to_string().contains("twice"));
}

#[test]
fn dataset_coerce_refuses_too_long_values_and_non_ascii_without_utf8() {
    let data = sample(LE, b"OLD1", None);
    let e = apply(&data, LE, &c(&[(0x0010_4000, Some(&"x".repeat(70000)))])).expect_err("too long for LT in explicit VR");
    assert!(matches!(e, DatasetError::TooLong { .. }), "{e}");
    // Implicit VR has a 4-byte length: it fits.
    assert!(apply(&sample(IM, b"OLD1", None), IM, &c(&[(0x0010_4000, Some(&"x".repeat(70000)))])).is_ok());
    let e = apply(&data, LE, &c(&[(0x0010_0010, Some("Müller"))])).expect_err("not ASCII");
    assert!(e.to_string().contains("ISO_IR 192"), "{e}");
    let utf8 = cat(&[el(LE, SPECIFIC_CHARACTER_SET, b"CS", b"ISO_IR 192"), data.clone()]);
    let (out, _) = apply(&utf8, LE, &c(&[(0x0010_0010, Some("Müller"))])).expect("UTF-8 declared");
    assert!(out.windows(7).any(|w| w == "Müller".as_bytes()));
}

#[test]
fn dataset_coerce_keeps_a_vr_written_in_explicit_vr() {
    // Patient ID written as SH by some writer: it stays SH.
    let data = cat(&[el(LE, 0x0010_0020, b"SH", b"OLD1"), pixels(LE)]);
    let (out, _) = apply(&data, LE, &c(&[(0x0010_0020, Some("N"))])).expect("coerced");
    assert_eq!(out, cat(&[el(LE, 0x0010_0020, b"SH", b"N "), pixels(LE)]));
    // Written as OB: no text form, refused rather than guessed.
    let data = cat(&[el(LE, 0x0010_0020, b"OB", b"OLD1"), pixels(LE)]);
    assert!(apply(&data, LE, &c(&[(0x0010_0020, Some("N"))])).is_err());
}
