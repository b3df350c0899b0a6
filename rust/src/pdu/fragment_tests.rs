//! Tests of the PDU codec, continued: max-PDU arithmetic, fragmentation and property tests.

use super::*;
use proptest::prelude::*;
use super::tests::pdu_bytes;

// -----------------------------------------------------------------------------------
// Max-PDU arithmetic and fragmentation
// -----------------------------------------------------------------------------------

#[test]
fn pdu_max_pdv_data_len_edges() {
    // 0 = no limit: we use 1 MiB bodies
    assert_eq!(max_pdv_data_len(0), (1 << 20) - 6);
    assert_eq!(
        max_pdv_data_len(0),
        max_pdv_data_len(UNLIMITED_PEER_MAX_PDU)
    );
    // usual values
    assert_eq!(max_pdv_data_len(16384), 16378);
    assert_eq!(max_pdv_data_len(16382), 16376); // dcmtk's default ASC_DEFAULTMAXPDU
    assert_eq!(max_pdv_data_len(65536), 65530);
    // smallest useful and degenerate
    assert_eq!(max_pdv_data_len(7), 1);
    assert_eq!(max_pdv_data_len(6), 1);
    assert_eq!(max_pdv_data_len(1), 1);
    // the largest
    assert_eq!(max_pdv_data_len(u32::MAX), u32::MAX as usize - 6);
}

/// Encode a message as the sender would for a peer with `peer_max`, and decode every PDU
/// with the receiver's limit `peer_max`.
fn send_and_receive(total: usize, peer_max: u32) -> (usize, Vec<u8>) {
    let msg: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let mut wire = Vec::new();
    let ranges: Vec<_> = fragment_ranges(total, peer_max).collect();
    assert_eq!(ranges.len(), fragment_count(total, peer_max));
    for (i, r) in ranges.iter().enumerate() {
        let last = i + 1 == ranges.len();
        write_single_pdv_header(
            &mut wire,
            1,
            if last { Pdv::LAST } else { 0 },
            r.len() as u32,
        );
        wire.extend_from_slice(&msg[r.clone()]);
    }
    let mut got = Vec::new();
    let mut pos = 0;
    let mut pdus = 0;
    while pos < wire.len() {
        let (_, body_len) = peek_header(&wire[pos..]).unwrap();
        if peer_max != 0 {
            assert!(
                body_len <= peer_max,
                "PDU body {body_len} > peer max {peer_max}"
            );
        }
        match decode(&wire[pos..], peer_max).unwrap() {
            Decoded::Complete(Pdu::PData(p), n) => {
                assert_eq!(p.pdvs.len(), 1);
                assert_eq!(p.pdvs[0].is_last(), pos + n == wire.len());
                got.extend_from_slice(&p.pdvs[0].data);
                pos += n;
                pdus += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, msg);
    (pdus, wire)
}

#[test]
fn pdu_fragmentation_exactly_full_and_one_over() {
    let max = 16384u32;
    let chunk = max_pdv_data_len(max);
    // exactly full: one PDU whose body is exactly the peer's max
    let (n, wire) = send_and_receive(chunk, max);
    assert_eq!(n, 1);
    assert_eq!(wire.len(), max as usize + 6);
    assert_eq!(peek_header(&wire), Some((0x04, max)));
    // one byte over: two PDUs, the second carrying one byte
    let (n, wire) = send_and_receive(chunk + 1, max);
    assert_eq!(n, 2);
    assert_eq!(
        wire.len(),
        (max as usize + 6) + (PDATA_SINGLE_PDV_OVERHEAD + 1)
    );
    // one byte under: one PDU
    assert_eq!(send_and_receive(chunk - 1, max).0, 1);
    // two exactly full
    assert_eq!(send_and_receive(2 * chunk, max).0, 2);
    // empty message: one empty fragment with the last bit
    let (n, wire) = send_and_receive(0, max);
    assert_eq!((n, wire.len()), (1, PDATA_SINGLE_PDV_OVERHEAD));

    // a PDU one byte over the receiver's limit is refused before it is read
    let mut over = Vec::new();
    write_single_pdv_header(&mut over, 1, 2, chunk as u32 + 1);
    assert_eq!(
        decode(&over, max),
        Err(PduError::TooLong {
            declared: max + 1,
            limit: max
        })
    );
    let mut full = Vec::new();
    write_single_pdv_header(&mut full, 1, 2, chunk as u32);
    assert_eq!(decode(&full, max), Ok(Decoded::NeedMore(chunk)));
}

#[test]
fn pdu_fragmentation_peer_smaller_than_ours_and_unlimited() {
    // We accept 65536 but the peer only 4096: fragments follow the peer's value.
    let ours = 65536u32;
    let peer = 4096u32;
    let total = 10_000;
    let (n, wire) = send_and_receive(total, peer);
    assert_eq!(n, 3); // 4090 + 4090 + 1820
    assert_eq!(fragment_count(total, peer), 3);
    let ranges: Vec<_> = fragment_ranges(total, peer).collect();
    assert_eq!(ranges, [0..4090, 4090..8180, 8180..10_000]);
    assert_eq!(wire.len(), total + 3 * PDATA_SINGLE_PDV_OVERHEAD);
    // and what the peer sends us (cut for our 65536) would be too long for the peer
    let mut big = Vec::new();
    write_single_pdv_header(&mut big, 1, 2, max_pdv_data_len(ours) as u32);
    assert!(matches!(decode(&big, peer), Err(PduError::TooLong { .. })));
    assert!(matches!(decode(&big, ours), Ok(Decoded::NeedMore(_))));

    // peer says 0 (unlimited): 1 MiB bodies
    assert_eq!(fragment_count(3 << 20, 0), 4);
    let r: Vec<_> = fragment_ranges(3 << 20, 0).collect();
    assert_eq!(r[0], 0..(1 << 20) - 6);
    assert_eq!(r.last().unwrap().end, 3 << 20);
    assert_eq!(send_and_receive(5000, 0).0, 1);
    // degenerate peer max still makes progress
    assert_eq!(fragment_count(3, 6), 3);
    assert_eq!(fragment_count(0, 6), 1);
}

// -----------------------------------------------------------------------------------
// Property tests
// -----------------------------------------------------------------------------------

fn uid() -> impl Strategy<Value = String> {
    "[0-9.]{0,64}"
}

fn ae() -> impl Strategy<Value = String> {
    "([A-Z0-9_\\-]([A-Z0-9_ ]{0,14}[A-Z0-9_])?)?"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn user_item() -> impl Strategy<Value = UserItem> {
    prop_oneof![
        any::<u32>().prop_map(UserItem::MaximumLength),
        uid().prop_map(UserItem::ImplementationClassUid),
        (any::<u16>(), any::<u16>()).prop_map(|(invoked, performed)| {
            UserItem::AsyncOperationsWindow { invoked, performed }
        }),
        (uid(), any::<u8>(), any::<u8>()).prop_map(|(sop_class_uid, scu_role, scp_role)| {
            UserItem::RoleSelection {
                sop_class_uid,
                scu_role,
                scp_role,
            }
        }),
        "[!-~]{0,16}".prop_map(UserItem::ImplementationVersionName),
        (uid(), bytes(40)).prop_map(|(sop_class_uid, info)| {
            UserItem::SopClassExtendedNegotiation {
                sop_class_uid,
                info,
            }
        }),
        (uid(), uid(), prop::collection::vec(uid(), 0..4)).prop_map(|(a, b, c)| {
            UserItem::SopClassCommonExtendedNegotiation {
                sop_class_uid: a,
                service_class_uid: b,
                related_general_sop_classes: c,
            }
        }),
        (any::<u8>(), any::<bool>(), bytes(40), bytes(40)).prop_map(|(t, p, a, b)| {
            UserItem::UserIdentityRq {
                identity_type: t,
                positive_response_requested: p,
                primary_field: a,
                secondary_field: b,
            }
        }),
        bytes(40).prop_map(|server_response| UserItem::UserIdentityAc { server_response }),
        (
            any::<u8>().prop_filter("undefined sub-item type", |t| !(0x51..=0x59).contains(t)),
            bytes(40)
        )
            .prop_map(|(item_type, data)| UserItem::Unknown { item_type, data }),
    ]
}

fn user_info() -> impl Strategy<Value = UserInformation> {
    prop::collection::vec(user_item(), 0..6).prop_map(|items| UserInformation { items })
}

fn arb_pdu() -> impl Strategy<Value = Pdu> {
    let rq_ctx =
        (any::<u8>(), uid(), prop::collection::vec(uid(), 0..4)).prop_map(|(id, a, t)| {
            PresentationContextRq {
                id,
                abstract_syntax: a,
                transfer_syntaxes: t,
            }
        });
    let ac_ctx =
        (any::<u8>(), 0u8..6, uid()).prop_map(|(id, result, ts)| PresentationContextAc {
            id,
            result,
            transfer_syntax: ts,
        });
    let rq = (
        any::<u16>(),
        ae(),
        ae(),
        uid(),
        prop::collection::vec(rq_ctx, 0..4),
        user_info(),
    )
        .prop_map(|(v, called, calling, app, pcs, ui)| {
            Pdu::AssociateRq(AssociateRq {
                protocol_version: v,
                called_ae_title: called,
                calling_ae_title: calling,
                application_context: app,
                presentation_contexts: pcs,
                user_information: ui,
            })
        });
    let ac = (
        any::<u16>(),
        ae(),
        ae(),
        uid(),
        prop::collection::vec(ac_ctx, 0..4),
        user_info(),
    )
        .prop_map(|(v, called, calling, app, pcs, ui)| {
            Pdu::AssociateAc(AssociateAc {
                protocol_version: v,
                called_ae_title: called,
                calling_ae_title: calling,
                application_context: app,
                presentation_contexts: pcs,
                user_information: ui,
            })
        });
    let pdv =
        (any::<u8>(), any::<u8>(), bytes(100)).prop_map(|(context_id, control, data)| Pdv {
            context_id,
            control,
            data,
        });
    prop_oneof![
        rq,
        ac,
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(result, source, reason)| {
            Pdu::AssociateRj(AssociateRj {
                result,
                source,
                reason,
            })
        }),
        prop::collection::vec(pdv, 1..4).prop_map(|pdvs| Pdu::PData(PData { pdvs })),
        Just(Pdu::ReleaseRq),
        Just(Pdu::ReleaseRp),
        (any::<u8>(), any::<u8>())
            .prop_map(|(source, reason)| Pdu::Abort(Abort { source, reason })),
    ]
}

/// Decode with no limit; if a PDU comes out, check the invariants: it used no more than
/// the buffer, and it re-encodes to bytes that decode to the same PDU.
fn check_decode_invariants(buf: &[u8]) -> Result<(), TestCaseError> {
    match decode(buf, 0) {
        Ok(Decoded::Complete(pdu, used)) => {
            prop_assert!(used >= 6 && used <= buf.len());
            let again = encode_to_vec(&pdu);
            let mut checked = Vec::new();
            prop_assert!(try_encode(&pdu, &mut checked).is_ok());
            match decode(&again, 0) {
                Ok(Decoded::Complete(p2, n2)) => {
                    prop_assert_eq!(p2, pdu);
                    prop_assert_eq!(n2, again.len());
                }
                other => prop_assert!(false, "re-decode failed: {:?}", other),
            }
        }
        Ok(Decoded::NeedMore(n)) => prop_assert!(n > 0),
        Err(e) => {
            let _ = (e.to_string(), e.abort_reason());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn pdu_prop_roundtrip(pdu in arb_pdu()) {
        let bytes = encode_to_vec(&pdu);
        prop_assert_eq!(decode(&bytes, 0), Ok(Decoded::Complete(pdu.clone(), bytes.len())));
        prop_assert_eq!(peek_header(&bytes).map(|h| h.1 as usize + 6), Some(bytes.len()));
        // with a limit of exactly the body length it is accepted, one less it is not
        let body = (bytes.len() - 6) as u32;
        prop_assert!(matches!(decode(&bytes, body), Ok(Decoded::Complete(..))));
        if body > 0 {
            prop_assert_eq!(
                decode(&bytes, body - 1),
                Err(PduError::TooLong { declared: body, limit: body - 1 })
            );
        }
    }

    #[test]
    fn pdu_prop_random_bytes_never_panic(buf in bytes(400)) {
        check_decode_invariants(&buf)?;
    }

    #[test]
    fn pdu_prop_random_framed_bodies_never_panic(ty in 1u8..=7, body in bytes(400)) {
        let buf = pdu_bytes(ty, &body);
        check_decode_invariants(&buf)?;
    }

    #[test]
    fn pdu_prop_mutated_valid_pdus_never_panic(
        pdu in arb_pdu(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut buf = encode_to_vec(&pdu);
        for (at, v) in edits {
            let i = at.index(buf.len());
            buf[i] = v;
        }
        if truncate {
            let n = cut.index(buf.len() + 1);
            buf.truncate(n);
        }
        check_decode_invariants(&buf)?;
    }

    #[test]
    fn pdu_prop_mutated_lengths_never_panic(
        pdu in arb_pdu(),
        at in any::<prop::sample::Index>(),
        len in prop_oneof![Just(0u16), Just(1), Just(2), Just(0xFFFF), any::<u16>()],
    ) {
        // Overwrite a 2-byte window (often an item length) with a hostile value,
        // keeping the PDU length consistent so the body is actually parsed.
        let mut buf = encode_to_vec(&pdu);
        if buf.len() > 8 {
            let i = 6 + at.index(buf.len() - 7);
            buf[i..i + 2].copy_from_slice(&len.to_be_bytes());
            check_decode_invariants(&buf)?;
        }
    }
}
