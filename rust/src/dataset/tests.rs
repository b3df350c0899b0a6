//! Unit tests of the dataset codec: splitting, errors, transcoding, Part 10.

use super::*;
use proptest::prelude::*;

const ILE: &str = uids::IMPLICIT_VR_LE;
const ELE: &str = uids::EXPLICIT_VR_LE;
const EBE: &str = uids::EXPLICIT_VR_BE;
const DEF: &str = uids::DEFLATED_EXPLICIT_VR_LE;

/// A tiny dataset builder for tests.
struct B {
    enc: Encoding,
    out: Vec<u8>,
}

impl B {
    fn new(enc: Encoding) -> B {
        B { enc, out: Vec::new() }
    }
    fn el(&mut self, tag: u32, vr: &[u8; 2], value: &[u8]) -> &mut Self {
        write_element_header(&mut self.out, self.enc, tag, Some(*vr), value.len() as u32);
        self.out.extend_from_slice(value);
        self
    }
    fn u16s(&mut self, tag: u32, vr: &[u8; 2], vals: &[u16]) -> &mut Self {
        let v: Vec<u8> = vals
            .iter()
            .flat_map(|x| if self.enc.little_endian { x.to_le_bytes() } else { x.to_be_bytes() })
            .collect();
        self.el(tag, vr, &v)
    }
    fn raw_header(&mut self, tag: u32, vr: &[u8; 2], len: u32) -> &mut Self {
        write_element_header(&mut self.out, self.enc, tag, Some(*vr), len);
        self
    }
    fn item(&mut self, len: u32) -> &mut Self {
        write_element_header(&mut self.out, self.enc, TAG_ITEM, None, len);
        self
    }
    fn item_end(&mut self) -> &mut Self {
        write_element_header(&mut self.out, self.enc, TAG_ITEM_DELIMITER, None, 0);
        self
    }
    fn seq_end(&mut self) -> &mut Self {
        write_element_header(&mut self.out, self.enc, TAG_SEQUENCE_DELIMITER, None, 0);
        self
    }
}

/// A dataset exercising every swap unit, text, a nested undefined-length
/// sequence, a defined-length sequence and private elements.
fn sample(enc: Encoding) -> Vec<u8> {
    let le = enc.little_endian;
    let mut b = B::new(enc);
    b.el(0x0008_0016, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0")
        .el(0x0008_0018, b"UI", b"1.2.3.4\0")
        .el(0x0009_0010, b"LO", b"ACME 1.0")
        .el(0x0009_1001, b"UN", &[1, 2, 3, 4])
        .el(0x0010_0010, b"PN", b"Doe^John")
        .u16s(0x0028_0010, b"US", &[512]);
    let ul: Vec<u8> = if le { 70000u32.to_le_bytes().to_vec() } else { 70000u32.to_be_bytes().to_vec() };
    b.el(0x0018_6058, b"UL", &ul);
    let fd: Vec<u8> = if le { 1.5f64.to_le_bytes().to_vec() } else { 1.5f64.to_be_bytes().to_vec() };
    b.el(0x0018_9087, b"FD", &fd);
    b.u16s(0x0020_9165, b"AT", &[0x0010, 0x0020]);
    // (0008,1115) ReferencedSeriesSequence, undefined length, two items
    b.raw_header(0x0008_1115, b"SQ", UNDEFINED_LENGTH).item(UNDEFINED_LENGTH);
    b.el(0x0020_000E, b"UI", b"1.2.3\0").u16s(0x0028_0011, b"US", &[7, 8]);
    // nested (0008,114A) ReferencedInstanceSequence, undefined, one item
    b.raw_header(0x0008_114A, b"SQ", UNDEFINED_LENGTH).item(UNDEFINED_LENGTH);
    b.u16s(0x0028_0002, b"US", &[3]).item_end().seq_end();
    b.item_end();
    // second item: defined length, containing one US
    let mut inner = B::new(enc);
    inner.u16s(0x0028_0100, b"US", &[16]);
    let inner = inner.out;
    b.item(inner.len() as u32);
    b.out.extend_from_slice(&inner);
    b.seq_end();
    // a defined-length sequence (3006,0039) ROIContourSequence, one item
    let mut item = B::new(enc);
    item.el(0x3006_0050, b"DS", b"1\\2\\3 ");
    let item = item.out;
    let mut sq = Vec::new();
    write_element_header(&mut sq, enc, TAG_ITEM, None, item.len() as u32);
    sq.extend_from_slice(&item);
    b.raw_header(0x3006_0039, b"SQ", sq.len() as u32);
    b.out.extend_from_slice(&sq);
    b.u16s(0x7FE0_0010, b"OW", &[1, 2, 3, 0x1234]);
    b.out
}

fn implicit_sample() -> Vec<u8> {
    let mut b = B::new(Encoding::IMPLICIT_LE);
    b.el(0x0008_0018, b"UI", b"1.2.3.4\0")
        .el(0x0009_0010, b"LO", b"ACME 1.0")
        .el(0x0009_1001, b"UN", &[1, 2, 3, 4])
        .u16s(0x0028_0010, b"US", &[512])
        .u16s(0x0028_0100, b"US", &[16])
        .u16s(0x0028_0103, b"US", &[1])
        .u16s(0x0028_0106, b"US", &[0xFFFF]);
    let mut item = B::new(Encoding::IMPLICIT_LE);
    item.el(0x0020_000E, b"UI", b"1.2.3\0");
    let item = item.out;
    let mut sq = Vec::new();
    write_element_header(&mut sq, Encoding::IMPLICIT_LE, TAG_ITEM, None, item.len() as u32);
    sq.extend_from_slice(&item);
    b.raw_header(0x0008_1115, b"SQ", sq.len() as u32);
    b.out.extend_from_slice(&sq);
    b.u16s(0x7FE0_0010, b"OW", &[1, 2]);
    b.out
}

fn tags(data: &[u8], enc: Encoding) -> Vec<(u32, Option<[u8; 2]>)> {
    split_elements(data, enc).unwrap().iter().map(|e| (e.tag, e.vr)).collect()
}

#[test]
fn dataset_split_finds_top_level_elements() {
    let data = sample(Encoding::EXPLICIT_LE);
    let els = split_elements(&data, Encoding::EXPLICIT_LE).unwrap();
    let t: Vec<u32> = els.iter().map(|e| e.tag).collect();
    assert_eq!(
        t,
        vec![
            0x0008_0016, 0x0008_0018, 0x0009_0010, 0x0009_1001, 0x0010_0010, 0x0028_0010, 0x0018_6058,
            0x0018_9087, 0x0020_9165, 0x0008_1115, 0x3006_0039, 0x7FE0_0010
        ]
    );
    let sq = els.iter().find(|e| e.tag == 0x0008_1115).unwrap();
    assert_eq!(sq.length, UNDEFINED_LENGTH);
    // the value ends at the sequence delimiter
    assert_eq!(&data[sq.value_end..sq.value_end + 4], &[0xFE, 0xFF, 0xDD, 0xE0]);
    let pn = els.iter().find(|e| e.tag == 0x0010_0010).unwrap();
    assert_eq!(&data[pn.value_start..pn.value_end], b"Doe^John");
    // implicit: undefined-length SQ known to the dictionary is reported as SQ
    let imp = transcode(&data, ELE, ILE).unwrap();
    let it = tags(&imp, Encoding::IMPLICIT_LE);
    assert!(it.contains(&(0x0008_1115, Some(*b"SQ"))));
    assert!(it.contains(&(0x0010_0010, None)));
}

#[test]
fn dataset_errors_name_offset_and_tag() {
    // 4 GiB length in a 1 KiB buffer
    let mut b = B::new(Encoding::EXPLICIT_LE);
    b.el(0x0010_0010, b"PN", b"Doe^John").raw_header(0x7FE0_0010, b"OW", 0xFFFF_FFFE);
    let mut data = b.out;
    data.resize(1024, 0);
    let e = split_elements(&data, Encoding::EXPLICIT_LE).unwrap_err();
    assert_eq!(e.tag(), Some(0x7FE0_0010));
    assert_eq!(e.offset(), Some(16));
    let msg = e.message(Some("/x/y.dcm"));
    assert!(msg.contains("(7FE0,0010)") && msg.contains("offset 16 in /x/y.dcm") && msg.contains("4294967294"), "{msg}");
    // the transcoder says the same at finish
    let e = transcode(&data, ELE, EBE).unwrap_err();
    assert_eq!(e.tag(), Some(0x7FE0_0010));

    // odd length where even is required
    let mut b = B::new(Encoding::EXPLICIT_LE);
    b.el(0x0028_0010, b"US", &[1, 2, 3]);
    let e = split_elements(&b.out, Encoding::EXPLICIT_LE).unwrap_err();
    assert!(matches!(e, DatasetError::OddLength { tag: 0x0028_0010, offset: 0, length: 3, .. }), "{e}");
    assert!(matches!(transcode(&b.out, ELE, EBE), Err(DatasetError::OddLength { .. })));

    // a sequence that never closes
    let mut b = B::new(Encoding::EXPLICIT_LE);
    b.el(0x0008_0018, b"UI", b"1.2\0").raw_header(0x0008_1115, b"SQ", UNDEFINED_LENGTH).item(UNDEFINED_LENGTH);
    b.el(0x0020_000E, b"UI", b"1.2.3\0");
    let e = split_elements(&b.out, Encoding::EXPLICIT_LE).unwrap_err();
    assert!(matches!(e, DatasetError::Unclosed { .. }), "{e}");
    assert!(e.to_string().contains("offset"));
    let e = transcode(&b.out, ELE, ILE).unwrap_err();
    assert!(matches!(e, DatasetError::Unclosed { .. }), "{e}");

    // truncated header
    let e = split_elements(&[0x10, 0, 0x10, 0, b'P'], Encoding::EXPLICIT_LE).unwrap_err();
    assert!(matches!(e, DatasetError::Truncated { tag: Some(0x0010_0010), offset: 0, .. }), "{e}");

    // an item at top level
    let mut b = B::new(Encoding::EXPLICIT_LE);
    b.item(0);
    assert!(matches!(split_elements(&b.out, Encoding::EXPLICIT_LE), Err(DatasetError::UnexpectedTag { .. })));

    // an element overrunning its item
    let mut b = B::new(Encoding::EXPLICIT_LE);
    b.raw_header(0x0008_1115, b"SQ", 16).item(8).u16s(0x0028_0010, b"US", &[1, 2]);
    let e = transcode(&b.out, ELE, EBE).unwrap_err();
    assert!(matches!(e, DatasetError::Truncated { tag: Some(0x0028_0010), .. }), "{e}");
}

#[test]
fn dataset_deep_nesting_does_not_overflow() {
    // 200k nested undefined-length sequences/items, never closed, then closed.
    let mut b = B::new(Encoding::EXPLICIT_LE);
    for _ in 0..200_000 {
        b.raw_header(0x0008_1115, b"SQ", UNDEFINED_LENGTH).item(UNDEFINED_LENGTH);
    }
    let open = b.out.clone();
    assert!(matches!(split_elements(&open, Encoding::EXPLICIT_LE), Err(DatasetError::Unclosed { .. })));
    assert!(matches!(transcode(&open, ELE, ILE), Err(DatasetError::Unclosed { .. })));
    for _ in 0..200_000 {
        b.item_end().seq_end();
    }
    assert_eq!(split_elements(&b.out, Encoding::EXPLICIT_LE).unwrap().len(), 1);
    let imp = transcode(&b.out, ELE, ILE).unwrap();
    assert_eq!(transcode(&imp, ILE, ELE).unwrap(), b.out);
}

#[test]
fn dataset_swap_per_vr_le_to_be() {
    let le = sample(Encoding::EXPLICIT_LE);
    let be = transcode(&le, ELE, EBE).unwrap();
    // built natively in BE, the sample must be identical to the transcoded one
    assert_eq!(be, sample(Encoding::EXPLICIT_BE));
    assert_eq!(transcode(&be, EBE, ELE).unwrap(), le);
}

#[test]
fn dataset_implicit_explicit_round_trip() {
    let imp = implicit_sample();
    let exp = transcode(&imp, ILE, ELE).unwrap();
    let t = tags(&exp, Encoding::EXPLICIT_LE);
    assert!(t.contains(&(0x0008_0018, Some(*b"UI"))));
    assert!(t.contains(&(0x0009_0010, Some(*b"LO"))), "private creator is LO");
    assert!(t.contains(&(0x0009_1001, Some(*b"UN"))), "unknown private is UN");
    assert!(t.contains(&(0x0028_0106, Some(*b"SS"))), "US or SS with PixelRepresentation 1");
    assert!(t.contains(&(0x7FE0_0010, Some(*b"OW"))));
    // the defined-length sequence became undefined length
    let sq = split_elements(&exp, Encoding::EXPLICIT_LE).unwrap().into_iter().find(|e| e.tag == 0x0008_1115).unwrap();
    assert_eq!(sq.length, UNDEFINED_LENGTH);
    // back to implicit: same elements and values (containers now undefined length)
    let back = transcode(&exp, ELE, ILE).unwrap();
    let a = split_elements(&imp, Encoding::IMPLICIT_LE).unwrap();
    let b = split_elements(&back, Encoding::IMPLICIT_LE).unwrap();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.tag, y.tag);
        if x.tag != 0x0008_1115 {
            assert_eq!(imp[x.value_start..x.value_end], back[y.value_start..y.value_end]);
        }
    }
    // and to big endian, where US/SS/OW are swapped
    let be = transcode(&imp, ILE, EBE).unwrap();
    let els = split_elements(&be, Encoding::EXPLICIT_BE).unwrap();
    let rows = els.iter().find(|e| e.tag == 0x0028_0010).unwrap();
    assert_eq!(&be[rows.value_start..rows.value_end], &512u16.to_be_bytes());
    assert_eq!(transcode(&be, EBE, ILE).unwrap(), transcode(&exp, ELE, ILE).unwrap());
}

#[test]
fn dataset_long_value_in_short_vr_becomes_un() {
    let mut b = B::new(Encoding::IMPLICIT_LE);
    let big = vec![b'A'; 70_000];
    b.el(0x0008_0070, b"LO", &big);
    let exp = transcode(&b.out, ILE, ELE).unwrap();
    let els = split_elements(&exp, Encoding::EXPLICIT_LE).unwrap();
    assert_eq!(els[0].vr, Some(*b"UN"));
    assert_eq!(els[0].value_end - els[0].value_start, 70_000);
}

#[test]
fn dataset_group_length_dropped_only_when_lengths_change() {
    let mut b = B::new(Encoding::IMPLICIT_LE);
    b.el(0x0008_0000, b"UL", &8u32.to_le_bytes()).el(0x0008_0018, b"UI", b"1.2\0");
    let exp = transcode(&b.out, ILE, ELE).unwrap();
    assert_eq!(tags(&exp, Encoding::EXPLICIT_LE), vec![(0x0008_0018, Some(*b"UI"))]);
    let mut b = B::new(Encoding::EXPLICIT_LE);
    b.el(0x0008_0000, b"UL", &8u32.to_le_bytes()).el(0x0008_0018, b"UI", b"1.2\0");
    let be = transcode(&b.out, ELE, EBE).unwrap();
    assert_eq!(tags(&be, Encoding::EXPLICIT_BE).len(), 2);
}

#[test]
fn dataset_encapsulated_pixel_data_passes_through() {
    let mut b = B::new(Encoding::EXPLICIT_LE);
    b.u16s(0x0028_0100, b"US", &[8]).raw_header(0x7FE0_0010, b"OB", UNDEFINED_LENGTH);
    b.item(4);
    b.out.extend_from_slice(&[0, 0, 0, 0]); // basic offset table
    b.item(6);
    b.out.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
    b.seq_end();
    let els = split_elements(&b.out, Encoding::EXPLICIT_LE).unwrap();
    assert_eq!(els[1].vr, Some(*b"OB"));
    let imp = transcode(&b.out, ELE, ILE).unwrap();
    let back = transcode(&imp, ILE, ELE).unwrap();
    assert_eq!(back, b.out);
    // an undefined-length OB of another tag is fragments too, not a sequence
    let mut p = B::new(Encoding::EXPLICIT_LE);
    p.raw_header(0x0009_1010, b"OB", UNDEFINED_LENGTH).item(3);
    p.out.extend_from_slice(&[9, 9, 9]);
    p.seq_end();
    assert_eq!(transcode(&transcode(&p.out, ELE, EBE).unwrap(), EBE, ELE).unwrap(), p.out);
    // identity on an encapsulated syntax copies bytes
    let jpeg = "1.2.840.10008.1.2.4.50";
    assert_eq!(transcode(&b.out, jpeg, jpeg).unwrap(), b.out);
    assert!(matches!(transcode(&b.out, jpeg, ELE), Err(DatasetError::Unsupported { .. })));
}

fn feed_in_chunks(data: &[u8], from: &str, to: &str, chunk: usize) -> Result<Vec<u8>, DatasetError> {
    let mut t = Transcoder::new(from, to)?;
    let mut out = Vec::new();
    for c in data.chunks(chunk.max(1)) {
        t.feed(c, &mut out)?;
    }
    t.finish(&mut out)?;
    Ok(out)
}

#[test]
fn dataset_streaming_in_small_chunks_equals_all_at_once() {
    let le = sample(Encoding::EXPLICIT_LE);
    let imp = implicit_sample();
    for (data, from) in [(&le, ELE), (&imp, ILE)] {
        for to in [ILE, ELE, EBE] {
            let whole = transcode(data, from, to).unwrap();
            for chunk in [1, 2, 3, 5, 7, 13, 64] {
                assert_eq!(feed_in_chunks(data, from, to, chunk).unwrap(), whole, "{from}->{to} chunk {chunk}");
            }
        }
    }
    // transcode_stream over Read/Write
    let mut out = Vec::new();
    transcode_stream(&mut &le[..], &mut out, ELE, EBE).unwrap();
    assert_eq!(out, transcode(&le, ELE, EBE).unwrap());
}

#[test]
fn dataset_deflate_round_trip() {
    let le = sample(Encoding::EXPLICIT_LE);
    let d = transcode(&le, ELE, DEF).unwrap();
    assert_ne!(d, le);
    assert_eq!(transcode(&d, DEF, ELE).unwrap(), le);
    for chunk in [1, 7, 100] {
        assert_eq!(feed_in_chunks(&d, DEF, EBE, chunk).unwrap(), transcode(&le, ELE, EBE).unwrap());
    }
    // corrupt deflate data is an error, not a panic
    let _ = transcode(&[0xFF; 64], DEF, ELE);
}

#[test]
fn dataset_part10_meta_round_trip() {
    let mut meta = FileMeta::new("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5", ELE);
    meta.source_ae_title = Some("STORESCU".into());
    let mut file = Vec::new();
    let n = write_part10_meta(&mut file, &meta).unwrap();
    assert_eq!(n as usize, file.len());
    let ds = sample(Encoding::EXPLICIT_LE);
    file.extend_from_slice(&ds);
    let (read, offset) = parse_part10_meta(&file).unwrap();
    assert_eq!(offset, n);
    assert_eq!(read.transfer_syntax, ELE);
    assert_eq!(read.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    assert_eq!(read.sop_instance_uid, "1.2.3.4.5");
    assert_eq!(read.implementation_class_uid, IMPLEMENTATION_CLASS_UID);
    assert_eq!(read.source_ae_title.as_deref(), Some("STORESCU"));
    // group length is right: 132 + 12 + value == offset
    let gl = read.element(0x0002_0000).unwrap();
    assert_eq!(u32::from_le_bytes(gl.value[..4].try_into().unwrap()) as u64 + 144, offset);
    assert_eq!(&file[offset as usize..], &ds[..]);
    // every value is even-length
    assert!(read.elements.iter().all(|e| e.value.len() % 2 == 0));
    // writing what was read gives the same bytes
    let mut again = Vec::new();
    write_part10_meta(&mut again, &read).unwrap();
    assert_eq!(again, file[..offset as usize]);
    // not a Part-10 file
    assert!(matches!(parse_part10_meta(&ds), Err(DatasetError::BadMeta { .. })));
    // truncated meta
    let e = parse_part10_meta(&file[..150]).unwrap_err();
    assert!(matches!(e, DatasetError::Truncated { .. }), "{e}");
}

#[test]
fn dataset_transcode_file_and_meta_from_disk() {
    let dir = std::env::temp_dir().join(format!("fastdimse-dataset-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("in.dcm");
    let dst = dir.join("out.dcm");
    let mut file = Vec::new();
    let meta = FileMeta::new("1.2.840.10008.5.1.4.1.1.7", "1.2.3.4", ELE);
    let n = write_part10_meta(&mut file, &meta).unwrap();
    let ds = sample(Encoding::EXPLICIT_LE);
    file.extend_from_slice(&ds);
    std::fs::write(&src, &file).unwrap();
    let (m, off) = read_part10_meta_path(&src).unwrap();
    assert_eq!((m.transfer_syntax.as_str(), off), (ELE, n));
    // the reader is left at the dataset
    let mut f = std::fs::File::open(&src).unwrap();
    let (_, off2) = read_part10_meta(&mut f).unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut rest).unwrap();
    assert_eq!((off2, rest.as_slice()), (n, ds.as_slice()));
    let written = transcode_file(&src, &dst, EBE, Some("FASTDIMSE")).unwrap();
    let out = std::fs::read(&dst).unwrap();
    assert_eq!(written as usize, out.len());
    let (m2, off3) = parse_part10_meta(&out).unwrap();
    assert_eq!(m2.transfer_syntax, EBE);
    assert_eq!(m2.sop_instance_uid, "1.2.3.4");
    assert_eq!(m2.source_ae_title.as_deref(), Some("FASTDIMSE"));
    assert_eq!(&out[off3 as usize..], transcode(&ds, ELE, EBE).unwrap().as_slice());
    // a truncated source names the file offset of the element
    std::fs::write(&src, &file[..file.len() - 3]).unwrap();
    let e = transcode_file(&src, &dst, ILE, None).unwrap_err();
    assert_eq!(e.tag(), Some(TAG_PIXEL_DATA));
    assert!(e.offset().unwrap() > n);
    assert!(!dst.exists(), "a failed transcode leaves no partial file");
    std::fs::remove_dir_all(&dir).ok();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, timeout: 20_000, .. ProptestConfig::default() })]

    #[test]
    fn dataset_random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        for enc in [Encoding::IMPLICIT_LE, Encoding::EXPLICIT_LE, Encoding::EXPLICIT_BE] {
            let _ = split_elements(&data, enc);
        }
        for (f, t) in [(ILE, ELE), (ELE, EBE), (EBE, ILE), (DEF, ELE), (ELE, DEF)] {
            let _ = transcode(&data, f, t);
        }
        let _ = parse_part10_meta(&data);
    }

    #[test]
    fn dataset_mutations_never_panic(
        muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        chunk in 1usize..40,
    ) {
        let mut data = sample(Encoding::EXPLICIT_LE);
        for (i, b) in &muts {
            let k = i.index(data.len());
            data[k] = *b;
        }
        let data = &data[..cut.index(data.len() + 1)];
        for enc in [Encoding::IMPLICIT_LE, Encoding::EXPLICIT_LE, Encoding::EXPLICIT_BE] {
            let _ = split_elements(data, enc);
        }
        for (f, t) in [(ELE, ILE), (ELE, EBE), (ILE, EBE)] {
            let a = transcode(data, f, t);
            let b = feed_in_chunks(data, f, t, chunk);
            prop_assert_eq!(a.is_ok(), b.is_ok());
            if let (Ok(a), Ok(b)) = (a, b) { prop_assert_eq!(a, b); }
        }
    }
}

#[test]
fn dataset_split_items_of_a_sequence_value() {
    for enc in [Encoding::EXPLICIT_LE, Encoding::EXPLICIT_BE, Encoding::IMPLICIT_LE] {
        // item 1: defined length, two elements; item 2: undefined length, holding a
        // nested undefined-length sequence with one empty item
        let mut first = B::new(enc);
        first.el(0x0008_1150, b"UI", b"1.2\0").el(0x0008_1155, b"UI", b"1.2.3\0");
        let mut b = B::new(enc);
        b.item(first.out.len() as u32);
        b.out.extend_from_slice(&first.out);
        let second_at = b.out.len();
        b.item(UNDEFINED_LENGTH).el(0x0010_0010, b"PN", b"A^B ");
        b.raw_header(0x0040_0275, b"SQ", UNDEFINED_LENGTH).item(UNDEFINED_LENGTH).item_end().seq_end();
        b.item_end();
        let items = split_items(&b.out, enc).unwrap().expect("regular");
        assert_eq!(items.len(), 2);
        assert_eq!((items[0].offset, items[0].undefined_length), (0, false));
        assert_eq!(items[0].elements.iter().map(|e| e.tag).collect::<Vec<_>>(), vec![0x0008_1150, 0x0008_1155]);
        let e = items[0].elements[1];
        assert_eq!(&b.out[e.value_start..e.value_end], b"1.2.3\0");
        assert_eq!((items[1].offset, items[1].undefined_length), (second_at, true));
        assert_eq!(items[1].elements.iter().map(|e| e.tag).collect::<Vec<_>>(), vec![0x0010_0010, 0x0040_0275]);
        let nested = items[1].elements[1];
        assert_eq!(nested.length, UNDEFINED_LENGTH);
        // the nested value ends where its sequence delimiter starts
        assert_eq!(&b.out[nested.value_end..nested.value_end + 4], &seq_delimiter_bytes(enc));
        // a sequence delimiter ends the items (as pydicom's reader stops there)
        let mut with_end = b.out.clone();
        with_end.extend_from_slice(&B::new(enc).seq_end().out);
        assert_eq!(split_items(&with_end, enc).unwrap().unwrap().len(), 2);
    }
}

fn seq_delimiter_bytes(enc: Encoding) -> [u8; 4] {
    let mut b = B::new(enc);
    b.seq_end();
    [b.out[0], b.out[1], b.out[2], b.out[3]]
}

#[test]
fn dataset_split_items_irregular_or_malformed() {
    let enc = Encoding::EXPLICIT_LE;
    // an element where an item belongs: left to another reader
    let mut b = B::new(enc);
    b.el(0x0010_0010, b"PN", b"A^B ");
    assert_eq!(split_items(&b.out, enc).unwrap(), None);
    // an undefined-length UN inside an item (implicit VR inside): left to another reader
    let mut b = B::new(enc);
    b.item(UNDEFINED_LENGTH).raw_header(0x0009_1010, b"UN", UNDEFINED_LENGTH).seq_end().item_end();
    assert_eq!(split_items(&b.out, enc).unwrap(), None);
    // an item longer than the value: an error naming the item
    let mut b = B::new(enc);
    b.item(100).el(0x0010_0010, b"PN", b"A^B ");
    assert!(matches!(split_items(&b.out, enc), Err(DatasetError::Truncated { tag: Some(TAG_ITEM), offset: 0, .. })));
    // an undefined-length item that never closes
    let mut b = B::new(enc);
    b.item(UNDEFINED_LENGTH).el(0x0010_0010, b"PN", b"A^B ");
    assert!(matches!(split_items(&b.out, enc), Err(DatasetError::Unclosed { .. })));
}
