//! Tests of the PDU codec (decode in codec.rs, encode in encode.rs).

use super::*;

// -----------------------------------------------------------------------------------
// Sample PDUs
// -----------------------------------------------------------------------------------

fn all_user_items() -> Vec<UserItem> {
    vec![
        UserItem::MaximumLength(16384),
        UserItem::ImplementationClassUid("1.2.826.0.1.3680043.9.1".into()),
        UserItem::AsyncOperationsWindow {
            invoked: 5,
            performed: 1,
        },
        UserItem::RoleSelection {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            scu_role: 0,
            scp_role: 1,
        },
        UserItem::ImplementationVersionName("FASTDIMSE_010".into()),
        UserItem::SopClassExtendedNegotiation {
            sop_class_uid: "1.2.840.10008.5.1.4.1.2.1.1".into(),
            info: vec![1, 1, 0, 1],
        },
        UserItem::SopClassCommonExtendedNegotiation {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.88.22".into(),
            service_class_uid: "1.2.840.10008.4.2".into(),
            related_general_sop_classes: vec![
                "1.2.840.10008.5.1.4.1.1.88.11".into(),
                "1.2.840.10008.5.1.4.1.1.88.33".into(),
            ],
        },
        UserItem::SopClassCommonExtendedNegotiation {
            sop_class_uid: "1.2.3".into(),
            service_class_uid: "1.2.4".into(),
            related_general_sop_classes: vec![],
        },
        UserItem::UserIdentityRq {
            identity_type: 2,
            positive_response_requested: true,
            primary_field: b"alice".to_vec(),
            secondary_field: b"s3cret".to_vec(),
        },
        UserItem::UserIdentityRq {
            identity_type: 1,
            positive_response_requested: false,
            primary_field: b"bob".to_vec(),
            secondary_field: vec![],
        },
        UserItem::UserIdentityAc {
            server_response: b"ticket".to_vec(),
        },
        UserItem::UserIdentityAc {
            server_response: vec![],
        },
        UserItem::Unknown {
            item_type: 0x5A,
            data: vec![9, 8, 7],
        },
        UserItem::Unknown {
            item_type: 0xFE,
            data: vec![],
        },
    ]
}

fn sample_rq() -> AssociateRq {
    AssociateRq {
        protocol_version: 1,
        called_ae_title: "ANY-SCP".into(),
        calling_ae_title: "STORE SCU".into(),
        application_context: DICOM_APPLICATION_CONTEXT.into(),
        presentation_contexts: vec![
            PresentationContextRq {
                id: 1,
                abstract_syntax: "1.2.840.10008.1.1".into(),
                transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
            },
            PresentationContextRq {
                id: 3,
                abstract_syntax: "1.2.840.10008.5.1.4.1.1.2".into(),
                transfer_syntaxes: vec![
                    "1.2.840.10008.1.2.1".into(),
                    "1.2.840.10008.1.2".into(),
                    "1.2.840.10008.1.2.4.90".into(),
                ],
            },
        ],
        user_information: UserInformation {
            items: all_user_items(),
        },
    }
}

fn sample_ac() -> AssociateAc {
    AssociateAc {
        protocol_version: 1,
        called_ae_title: "ANY-SCP".into(),
        calling_ae_title: "STORE SCU".into(),
        application_context: DICOM_APPLICATION_CONTEXT.into(),
        presentation_contexts: vec![
            PresentationContextAc {
                id: 1,
                result: 0,
                transfer_syntax: "1.2.840.10008.1.2".into(),
            },
            PresentationContextAc {
                id: 3,
                result: 4,
                transfer_syntax: String::new(),
            },
            PresentationContextAc {
                id: 5,
                result: 3,
                transfer_syntax: "1.2.840.10008.1.2".into(),
            },
        ],
        user_information: UserInformation {
            items: all_user_items(),
        },
    }
}

fn sample_pdus() -> Vec<Pdu> {
    vec![
        Pdu::AssociateRq(sample_rq()),
        Pdu::AssociateAc(sample_ac()),
        Pdu::AssociateRj(AssociateRj {
            result: 1,
            source: 2,
            reason: 2,
        }),
        Pdu::PData(PData {
            pdvs: vec![
                Pdv {
                    context_id: 1,
                    control: 0x03,
                    data: vec![0x08, 0x00, 0x00, 0x00, 1, 2],
                },
                Pdv {
                    context_id: 1,
                    control: 0x00,
                    data: vec![7; 40],
                },
                Pdv {
                    context_id: 3,
                    control: 0x02,
                    data: vec![],
                },
            ],
        }),
        Pdu::ReleaseRq,
        Pdu::ReleaseRp,
        Pdu::Abort(Abort {
            source: 2,
            reason: 6,
        }),
    ]
}

fn complete(buf: &[u8]) -> (Pdu, usize) {
    match decode(buf, 0) {
        Ok(Decoded::Complete(p, n)) => (p, n),
        other => panic!("expected a complete PDU, got {other:?}"),
    }
}

fn malformed_offset(r: Result<Decoded, PduError>) -> usize {
    match r {
        Err(PduError::Malformed { offset, .. }) => offset,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

/// item header helper for hand-built vectors: type, reserved 0, u16 length, body.
fn item(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![ty, 0];
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

pub(super) fn pdu_bytes(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![ty, 0];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// The fixed part of an A-ASSOCIATE-RQ/AC body (68 bytes) for hand-built vectors.
fn assoc_fixed(called: &[u8; 16], calling: &[u8; 16]) -> Vec<u8> {
    let mut v = vec![0x00, 0x01, 0x00, 0x00];
    v.extend_from_slice(called);
    v.extend_from_slice(calling);
    v.extend_from_slice(&[0u8; 32]);
    v
}

// -----------------------------------------------------------------------------------
// Round trips
// -----------------------------------------------------------------------------------

#[test]
fn pdu_roundtrip_every_type() {
    for pdu in sample_pdus() {
        let bytes = encode_to_vec(&pdu);
        let (back, used) = complete(&bytes);
        assert_eq!(back, pdu);
        assert_eq!(used, bytes.len());
        // encode appends
        let mut out = vec![0xAA];
        encode(&pdu, &mut out);
        assert_eq!(&out[1..], &bytes[..]);
        // try_encode agrees
        let mut out2 = Vec::new();
        try_encode(&pdu, &mut out2).unwrap();
        assert_eq!(out2, bytes);
    }
}

#[test]
fn pdu_roundtrip_each_user_item_alone() {
    for it in all_user_items() {
        let mut rq = sample_rq();
        rq.user_information.items = vec![it.clone()];
        let pdu = Pdu::AssociateRq(rq);
        assert_eq!(complete(&encode_to_vec(&pdu)).0, pdu, "{it:?}");
    }
}

#[test]
fn pdu_two_pdus_back_to_back_report_consumed_bytes() {
    let mut buf = encode_to_vec(&Pdu::ReleaseRq);
    let first = buf.len();
    encode(
        &Pdu::Abort(Abort {
            source: 0,
            reason: 0,
        }),
        &mut buf,
    );
    let (p, n) = complete(&buf);
    assert_eq!((p, n), (Pdu::ReleaseRq, first));
    let (p, n) = complete(&buf[n..]);
    assert_eq!(
        (p, n),
        (
            Pdu::Abort(Abort {
                source: 0,
                reason: 0
            }),
            10
        )
    );
}

// -----------------------------------------------------------------------------------
// Hand-built vectors against the layout of PS3.8 9.3
// -----------------------------------------------------------------------------------

/// An A-ASSOCIATE-RQ as a dcmtk echoscu sends it (verification, implicit VR LE,
/// max length 16384), written out byte by byte.
fn echoscu_rq_bytes() -> Vec<u8> {
    let mut v = vec![0x01, 0x00, 0x00, 0x00, 0x00, 0xCD]; // type 1, length 205
    v.extend_from_slice(&[0x00, 0x01, 0x00, 0x00]); // protocol version 1, reserved
    v.extend_from_slice(b"ANY-SCP         "); // called, offset 10
    v.extend_from_slice(b"ECHOSCU         "); // calling, offset 26
    v.extend_from_slice(&[0u8; 32]); // reserved, offset 42
                                     // offset 74: application context item
    v.extend_from_slice(&[0x10, 0x00, 0x00, 0x15]);
    v.extend_from_slice(b"1.2.840.10008.3.1.1.1");
    // offset 99: presentation context item, id 1
    v.extend_from_slice(&[0x20, 0x00, 0x00, 0x2E, 0x01, 0x00, 0x00, 0x00]);
    v.extend_from_slice(&[0x30, 0x00, 0x00, 0x11]);
    v.extend_from_slice(b"1.2.840.10008.1.1");
    v.extend_from_slice(&[0x40, 0x00, 0x00, 0x11]);
    v.extend_from_slice(b"1.2.840.10008.1.2");
    // offset 149: user information item
    v.extend_from_slice(&[0x50, 0x00, 0x00, 0x3A]);
    v.extend_from_slice(&[0x51, 0x00, 0x00, 0x04, 0x00, 0x00, 0x40, 0x00]); // offset 153
    v.extend_from_slice(&[0x52, 0x00, 0x00, 0x1B]); // offset 161
    v.extend_from_slice(b"1.2.276.0.7230010.3.0.3.6.4");
    v.extend_from_slice(&[0x55, 0x00, 0x00, 0x0F]); // offset 192
    v.extend_from_slice(b"OFFIS_DCMTK_364");
    v
}

fn echoscu_rq() -> AssociateRq {
    AssociateRq {
        protocol_version: 1,
        called_ae_title: "ANY-SCP".into(),
        calling_ae_title: "ECHOSCU".into(),
        application_context: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextRq {
            id: 1,
            abstract_syntax: "1.2.840.10008.1.1".into(),
            transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
        }],
        user_information: UserInformation {
            items: vec![
                UserItem::MaximumLength(16384),
                UserItem::ImplementationClassUid("1.2.276.0.7230010.3.0.3.6.4".into()),
                UserItem::ImplementationVersionName("OFFIS_DCMTK_364".into()),
            ],
        },
    }
}

#[test]
fn pdu_associate_rq_hand_built_layout() {
    let bytes = echoscu_rq_bytes();
    assert_eq!(bytes.len(), 211);
    assert_eq!(peek_header(&bytes), Some((0x01, 205)));
    assert_eq!(&bytes[10..26], b"ANY-SCP         ");
    assert_eq!(bytes[74], item_type::APPLICATION_CONTEXT);
    assert_eq!(bytes[99], item_type::PRESENTATION_CONTEXT_RQ);
    assert_eq!(bytes[149], item_type::USER_INFORMATION);
    assert_eq!(bytes[153], item_type::MAXIMUM_LENGTH);
    assert_eq!(bytes[161], item_type::IMPLEMENTATION_CLASS_UID);
    assert_eq!(bytes[192], item_type::IMPLEMENTATION_VERSION_NAME);

    let (pdu, used) = complete(&bytes);
    assert_eq!(used, 211);
    assert_eq!(pdu, Pdu::AssociateRq(echoscu_rq()));
    // and we write exactly those bytes
    assert_eq!(encode_to_vec(&pdu), bytes);
}

#[test]
fn pdu_associate_ac_hand_built_layout() {
    // AC echoing the AE titles, context 1 accepted, context 3 rejected (abstract syntax
    // not supported) without a transfer syntax sub-item, context 5 rejected with one.
    let mut body = assoc_fixed(b"ANY-SCP         ", b"ECHOSCU         ");
    body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
    let mut pc = vec![0x01, 0x00, 0x00, 0x00];
    pc.extend(item(0x40, b"1.2.840.10008.1.2\0")); // NUL padded: trimmed
    body.extend(item(0x21, &pc));
    body.extend(item(0x21, &[0x03, 0x00, 0x03, 0x00]));
    let mut pc5 = vec![0x05, 0xFF, 0x02, 0xFF]; // reserved bytes not tested
    pc5.extend(item(0x40, b"1.2.840.10008.1.2.1"));
    pc5.extend(item(0x40, b"1.2.840.10008.1.2.2")); // ignored: context rejected
    body.extend(item(0x21, &pc5));
    let mut ui = item(0x51, &[0x00, 0x01, 0x00, 0x00]);
    ui.extend(item(0x59, &[0x00, 0x02, b'o', b'k']));
    body.extend(item(0x50, &ui));
    let bytes = pdu_bytes(0x02, &body);

    let (pdu, _) = complete(&bytes);
    let want = AssociateAc {
        protocol_version: 1,
        called_ae_title: "ANY-SCP".into(),
        calling_ae_title: "ECHOSCU".into(),
        application_context: DICOM_APPLICATION_CONTEXT.into(),
        presentation_contexts: vec![
            PresentationContextAc {
                id: 1,
                result: 0,
                transfer_syntax: "1.2.840.10008.1.2".into(),
            },
            PresentationContextAc {
                id: 3,
                result: 3,
                transfer_syntax: String::new(),
            },
            PresentationContextAc {
                id: 5,
                result: 2,
                transfer_syntax: "1.2.840.10008.1.2.1".into(),
            },
        ],
        user_information: UserInformation {
            items: vec![
                UserItem::MaximumLength(65536),
                UserItem::UserIdentityAc {
                    server_response: b"ok".to_vec(),
                },
            ],
        },
    };
    assert_eq!(pdu, Pdu::AssociateAc(want.clone()));

    // Our encoding of it: AE titles echoed at 10..42, reserved 42..74 zero, and the
    // rejected context 3 carries an empty transfer syntax sub-item.
    let enc = encode_to_vec(&Pdu::AssociateAc(want));
    assert_eq!(enc[0], 0x02);
    assert_eq!(&enc[10..26], b"ANY-SCP         ");
    assert_eq!(&enc[26..42], b"ECHOSCU         ");
    assert!(enc[42..74].iter().all(|&b| b == 0));
    assert_eq!(&enc[74..78], &[0x10, 0x00, 0x00, 0x15]);
    let ctx3_at = 78 + 21 + 4 + 4 + 4 + 17;
    assert_eq!(
        &enc[ctx3_at..ctx3_at + 12],
        &[0x21, 0, 0, 8, 3, 0, 3, 0, 0x40, 0, 0, 0]
    );
}

#[test]
fn pdu_fixed_size_pdus_hand_built() {
    let rj = [0x03, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x01, 0x01, 0x07];
    assert_eq!(
        complete(&rj).0,
        Pdu::AssociateRj(AssociateRj {
            result: 1,
            source: 1,
            reason: 7
        })
    );
    assert_eq!(encode_to_vec(&complete(&rj).0), rj);

    let rq = [0x05, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00];
    assert_eq!(complete(&rq).0, Pdu::ReleaseRq);
    assert_eq!(encode_to_vec(&Pdu::ReleaseRq), rq);
    let rp = [0x06, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00];
    assert_eq!(complete(&rp).0, Pdu::ReleaseRp);
    assert_eq!(encode_to_vec(&Pdu::ReleaseRp), rp);
    // reserved bytes are not tested
    let rp_dirty = [0x06, 0xEE, 0x00, 0x00, 0x00, 0x04, 0x01, 0x02, 0x03, 0x04];
    assert_eq!(complete(&rp_dirty).0, Pdu::ReleaseRp);

    let ab = [0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x02, 0x01];
    assert_eq!(
        complete(&ab).0,
        Pdu::Abort(Abort {
            source: 2,
            reason: 1
        })
    );
    assert_eq!(encode_to_vec(&complete(&ab).0), ab);

    // wrong fixed lengths
    for bad in [
        vec![0x05, 0, 0, 0, 0, 3, 0, 0, 0],
        vec![0x06, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0],
        vec![0x07, 0, 0, 0, 0, 0],
        vec![0x03, 0, 0, 0, 0, 2, 0, 1],
    ] {
        assert_eq!(malformed_offset(decode(&bad, 0)), 6, "{bad:?}");
    }
}

#[test]
fn pdu_pdata_hand_built_layout() {
    let bytes = [
        0x04, 0x00, 0x00, 0x00, 0x00, 0x10, // P-DATA-TF, length 16
        0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0xAA, 0xBB, 0xCC, 0xDD, // PDV ctx 1, cmd+last
        0x00, 0x00, 0x00, 0x02, 0x03, 0x00, // PDV ctx 3, empty data fragment
    ];
    let want = Pdu::PData(PData {
        pdvs: vec![
            Pdv {
                context_id: 1,
                control: 3,
                data: vec![0xAA, 0xBB, 0xCC, 0xDD],
            },
            Pdv {
                context_id: 3,
                control: 0,
                data: vec![],
            },
        ],
    });
    assert_eq!(complete(&bytes), (want.clone(), 22));
    assert_eq!(encode_to_vec(&want), bytes);
    if let Pdu::PData(p) = &want {
        assert!(p.pdvs[0].is_command() && p.pdvs[0].is_last());
        assert!(!p.pdvs[1].is_command() && !p.pdvs[1].is_last());
    }
}

#[test]
fn pdu_pdv_items_borrow_without_copy() {
    let pdu = sample_pdus().remove(3);
    let bytes = encode_to_vec(&pdu);
    let Pdu::PData(p) = &pdu else { panic!() };
    let (_, len) = peek_header(&bytes).unwrap();
    let body = &bytes[6..6 + len as usize];
    let refs: Vec<_> = pdv_items(body).collect::<Result<_, _>>().unwrap();
    assert_eq!(refs.len(), p.pdvs.len());
    for (r, o) in refs.iter().zip(&p.pdvs) {
        assert_eq!(
            (r.context_id, r.control, r.data),
            (o.context_id, o.control, &o.data[..])
        );
    }
    // the data slices point into the input
    let range = body.as_ptr_range();
    assert!(range.contains(&refs[1].data.as_ptr()));
    // errors carry PDU offsets and end the iteration
    let bad = [0, 0, 0, 3, 1, 2, 9, 0, 0, 0, 1, 5];
    let got: Vec<_> = pdv_items(&bad).collect();
    assert_eq!(got.len(), 2);
    assert!(got[0].is_ok());
    assert!(matches!(
        got[1],
        Err(PduError::Malformed { offset: 13, .. })
    ));
    assert_eq!(pdv_items(&[]).count(), 0);
}

#[test]
fn pdu_write_single_pdv_header_matches_encode() {
    let data: Vec<u8> = (0..=255u8).collect();
    let mut streamed = Vec::new();
    write_single_pdv_header(&mut streamed, 7, Pdv::LAST, data.len() as u32);
    assert_eq!(streamed.len(), PDATA_SINGLE_PDV_OVERHEAD);
    assert_eq!(
        streamed,
        [0x04, 0, 0, 0, 0x01, 0x06, 0, 0, 0x01, 0x02, 7, 2]
    );
    streamed.extend_from_slice(&data);
    let pdu = Pdu::PData(PData {
        pdvs: vec![Pdv {
            context_id: 7,
            control: Pdv::LAST,
            data,
        }],
    });
    assert_eq!(streamed, encode_to_vec(&pdu));
    assert_eq!(complete(&streamed).0, pdu);
    assert_eq!(
        PDATA_SINGLE_PDV_OVERHEAD,
        PDU_HEADER_LEN + PDV_ITEM_OVERHEAD
    );
}

// -----------------------------------------------------------------------------------
// Lenient decoding
// -----------------------------------------------------------------------------------

#[test]
fn pdu_ae_titles_and_uids_are_trimmed() {
    let mut body = assoc_fixed(b"  PACS  1       ", b"\0\0MOD\0\0\0\0\0\0\0\0\0\0\0");
    body.extend(item(0x10, b"1.2.840.10008.3.1.1.1\0"));
    let mut pc = vec![1, 0, 0, 0];
    pc.extend(item(0x30, b"1.2.840.10008.1.1\0"));
    pc.extend(item(0x40, b"1.2.840.10008.1.2 "));
    body.extend(item(0x20, &pc));
    body.extend(item(0x50, &item(0x52, b"1.2.3\0")));
    let Pdu::AssociateRq(rq) = complete(&pdu_bytes(1, &body)).0 else {
        panic!()
    };
    assert_eq!(rq.called_ae_title, "PACS  1");
    assert_eq!(rq.calling_ae_title, "MOD");
    assert_eq!(rq.application_context, DICOM_APPLICATION_CONTEXT);
    assert_eq!(
        rq.presentation_contexts[0].abstract_syntax,
        "1.2.840.10008.1.1"
    );
    assert_eq!(
        rq.presentation_contexts[0].transfer_syntaxes,
        ["1.2.840.10008.1.2"]
    );
    assert_eq!(
        rq.user_information.implementation_class_uid(),
        Some("1.2.3")
    );
}

#[test]
fn pdu_non_ascii_text_decodes_as_question_marks() {
    let mut body = assoc_fixed(b"\xC3\xA9CHO           ", b"SCU             ");
    body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
    let Pdu::AssociateRq(rq) = complete(&pdu_bytes(1, &body)).0 else {
        panic!()
    };
    assert_eq!(rq.called_ae_title, "??CHO");
}

#[test]
fn pdu_unknown_items_skipped_or_kept() {
    let mut body = assoc_fixed(b"A               ", b"B               ");
    body.extend(item(0x77, b"whatever")); // unknown PDU-level item: skipped
    body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
    let mut pc = vec![1, 0, 0, 0];
    pc.extend(item(0x31, b"?")); // unknown presentation context sub-item: skipped
    pc.extend(item(0x30, b"1.2.840.10008.1.1"));
    pc.extend(item(0x40, b"1.2.840.10008.1.2"));
    body.extend(item(0x20, &pc));
    let mut ui = item(0x51, &[0, 0, 0x80, 0]);
    ui.extend(item(0x5F, &[1, 2, 3])); // unknown user sub-item: kept
    body.extend(item(0x50, &ui));
    body.extend(item(0x00, &[])); // another unknown item, empty
    let bytes = pdu_bytes(1, &body);
    let Pdu::AssociateRq(rq) = complete(&bytes).0 else {
        panic!()
    };
    assert_eq!(rq.presentation_contexts.len(), 1);
    assert_eq!(
        rq.user_information.items,
        [
            UserItem::MaximumLength(0x8000),
            UserItem::Unknown {
                item_type: 0x5F,
                data: vec![1, 2, 3]
            }
        ]
    );
    assert_eq!(rq.user_information.max_length(), Some(0x8000));
    // re-encoding drops the skipped items but keeps the unknown sub-item
    let again = encode_to_vec(&Pdu::AssociateRq(rq.clone()));
    assert_eq!(again.len(), bytes.len() - 12 - 4 - 5);
    assert_eq!(complete(&again).0, Pdu::AssociateRq(rq));
}

#[test]
fn pdu_missing_user_information_and_transfer_syntaxes() {
    let mut body = assoc_fixed(b"A               ", b"B               ");
    body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
    body.extend(item(
        0x20,
        &[[1u8, 0, 0, 0].as_slice(), &item(0x30, b"1.2")].concat(),
    ));
    let Pdu::AssociateRq(rq) = complete(&pdu_bytes(1, &body)).0 else {
        panic!()
    };
    assert!(rq.user_information.items.is_empty());
    assert!(rq.presentation_contexts[0].transfer_syntaxes.is_empty());
}

#[test]
fn pdu_user_identity_without_secondary_length_is_tolerated() {
    let mut body = assoc_fixed(b"A               ", b"B               ");
    body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
    body.extend(item(0x50, &item(0x58, &[1, 0, 0, 3, b'b', b'o', b'b'])));
    let Pdu::AssociateRq(rq) = complete(&pdu_bytes(1, &body)).0 else {
        panic!()
    };
    assert_eq!(
        rq.user_information.items,
        [UserItem::UserIdentityRq {
            identity_type: 1,
            positive_response_requested: false,
            primary_field: b"bob".to_vec(),
            secondary_field: vec![],
        }]
    );
}

// -----------------------------------------------------------------------------------
// Errors
// -----------------------------------------------------------------------------------

#[test]
fn pdu_unrecognized_type_is_abort_reason_1() {
    for t in [0x00u8, 0x08, 0x10, 0xFF] {
        let e = decode(&[t], 16384).unwrap_err();
        assert_eq!(e, PduError::UnrecognizedPduType(t));
        assert_eq!(e.abort_reason(), 1);
        assert!(e.to_string().contains(&format!("0x{t:02X}")), "{e}");
        assert!(decode(&[t, 0, 0, 0, 0, 4, 0, 0, 0, 0], 16384).is_err());
    }
}

#[test]
fn pdu_too_long_before_reading_4gib() {
    let buf = [0x04, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];
    let e = decode(&buf, 16384).unwrap_err();
    assert_eq!(
        e,
        PduError::TooLong {
            declared: u32::MAX,
            limit: 16384
        }
    );
    assert_eq!(e.abort_reason(), 6);
    // with no limit it simply needs (a lot) more
    assert_eq!(
        decode(&buf, 0),
        Ok(Decoded::NeedMore(u32::MAX as usize + 6 - 10))
    );
    // the length is judged from the header alone
    assert!(matches!(
        decode(&buf[..6], 100),
        Err(PduError::TooLong { .. })
    ));
}

#[test]
fn pdu_need_more_at_every_truncation_point() {
    for pdu in sample_pdus() {
        let bytes = encode_to_vec(&pdu);
        for cut in 0..bytes.len() {
            let want = if cut < 6 { 6 - cut } else { bytes.len() - cut };
            assert_eq!(
                decode(&bytes[..cut], 0),
                Ok(Decoded::NeedMore(want)),
                "{pdu:?} cut at {cut}"
            );
            assert_eq!(
                decode(&bytes[..cut], bytes.len() as u32),
                Ok(Decoded::NeedMore(want))
            );
        }
        assert_eq!(complete(&bytes).1, bytes.len());
    }
}

#[test]
fn pdu_pdata_errors() {
    // no PDV
    let e = decode(&[0x04, 0, 0, 0, 0, 0], 0).unwrap_err();
    assert!(matches!(&e, PduError::Malformed { what, .. } if what.contains("without any PDV")));
    assert_eq!(e.abort_reason(), 6);
    // PDV item length 0 and 1
    assert_eq!(
        malformed_offset(decode(&[0x04, 0, 0, 0, 0, 4, 0, 0, 0, 0], 0)),
        6
    );
    assert_eq!(
        malformed_offset(decode(&[0x04, 0, 0, 0, 0, 5, 0, 0, 0, 1, 1], 0)),
        6
    );
    // second PDV item longer than what remains of the PDU (offset of that item)
    let bad = [0x04, 0, 0, 0, 0, 13, 0, 0, 0, 3, 1, 2, 9, 0, 0, 0, 9, 1, 2];
    assert_eq!(malformed_offset(decode(&bad, 0)), 13);
    // a PDV item length that does not fit in the PDU at all
    let bad = [0x04, 0, 0, 0, 0, 6, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2];
    assert_eq!(malformed_offset(decode(&bad, 0)), 6);
    // truncated PDV item header
    assert_eq!(
        malformed_offset(decode(&[0x04, 0, 0, 0, 0, 3, 0, 0, 0], 0)),
        6
    );
}

#[test]
fn pdu_associate_errors_name_offsets() {
    // item length past the end of the PDU: offset of the item
    let mut body = assoc_fixed(b"A               ", b"B               ");
    body.extend_from_slice(&[0x10, 0x00, 0x00, 0x40, b'1']);
    let e = decode(&pdu_bytes(1, &body), 0).unwrap_err();
    assert_eq!(e.abort_reason(), 6);
    assert!(matches!(&e, PduError::Malformed { offset: 74, .. }), "{e}");
    assert!(e.to_string().contains("offset 74"), "{e}");

    // body shorter than the fixed part
    assert_eq!(
        malformed_offset(decode(&pdu_bytes(1, &[0, 1, 0, 0, b'A']), 0)),
        10
    );

    // no application context item
    let body = assoc_fixed(b"A               ", b"B               ");
    assert_eq!(malformed_offset(decode(&pdu_bytes(2, &body), 0)), 74);

    // two application context items: offset of the second
    let mut body = assoc_fixed(b"A               ", b"B               ");
    body.extend(item(0x10, b"1.2"));
    body.extend(item(0x10, b"1.2"));
    assert_eq!(malformed_offset(decode(&pdu_bytes(1, &body), 0)), 81);

    // presentation context without abstract syntax
    let mut body = assoc_fixed(b"A               ", b"B               ");
    body.extend(item(0x10, b"1.2"));
    body.extend(item(
        0x20,
        &[[1u8, 0, 0, 0].as_slice(), &item(0x40, b"1.2")].concat(),
    ));
    assert_eq!(malformed_offset(decode(&pdu_bytes(1, &body), 0)), 81);

    // accepted presentation context without transfer syntax
    let mut body = assoc_fixed(b"A               ", b"B               ");
    body.extend(item(0x10, b"1.2"));
    body.extend(item(0x21, &[1, 0, 0, 0]));
    assert_eq!(malformed_offset(decode(&pdu_bytes(2, &body), 0)), 81);

    // presentation context item shorter than its 4 fixed bytes
    let mut body = assoc_fixed(b"A               ", b"B               ");
    body.extend(item(0x10, b"1.2"));
    body.extend(item(0x20, &[1, 0]));
    // item at 81, body at 85: id, then the 3 reserved bytes at 86 are missing
    assert_eq!(malformed_offset(decode(&pdu_bytes(1, &body), 0)), 86);

    // maximum length sub-item with a wrong length
    let mut body = assoc_fixed(b"A               ", b"B               ");
    body.extend(item(0x10, b"1.2"));
    body.extend(item(0x50, &item(0x51, &[0, 0, 1])));
    // user information item at 81, sub-item at 85, its body at 89
    assert_eq!(malformed_offset(decode(&pdu_bytes(1, &body), 0)), 89);

    // role selection with a UID length past the item
    let mut body = assoc_fixed(b"A               ", b"B               ");
    body.extend(item(0x10, b"1.2"));
    body.extend(item(0x50, &item(0x54, &[0, 9, b'1', 1, 1])));
    // the UID field starts at 91, after its 2-byte length
    assert_eq!(malformed_offset(decode(&pdu_bytes(1, &body), 0)), 91);

    // role selection with trailing bytes
    let mut body = assoc_fixed(b"A               ", b"B               ");
    body.extend(item(0x10, b"1.2"));
    body.extend(item(0x50, &item(0x54, &[0, 1, b'1', 1, 1, 0])));
    assert_eq!(malformed_offset(decode(&pdu_bytes(1, &body), 0)), 94);

    // common extended negotiation with a related-classes length past the item
    let mut body = assoc_fixed(b"A               ", b"B               ");
    body.extend(item(0x10, b"1.2"));
    body.extend(item(
        0x50,
        &item(0x57, &[0, 1, b'1', 0, 1, b'2', 0, 5, 0, 1]),
    ));
    assert!(decode(&pdu_bytes(1, &body), 0).is_err());
}

#[test]
fn pdu_misplaced_items_are_unexpected_parameters() {
    let mut body = assoc_fixed(b"A               ", b"B               ");
    body.extend(item(0x10, b"1.2"));
    body.extend(item(0x21, &[1, 0, 0, 0]));
    let e = decode(&pdu_bytes(1, &body), 0).unwrap_err();
    assert_eq!(
        e,
        PduError::UnexpectedItem {
            item_type: 0x21,
            context: "A-ASSOCIATE-RQ",
            offset: 81
        }
    );
    assert_eq!(e.abort_reason(), 5);

    let mut body = assoc_fixed(b"A               ", b"B               ");
    body.extend(item(0x10, b"1.2"));
    body.extend(item(0x51, &[0, 0, 0, 0]));
    assert!(matches!(
        decode(&pdu_bytes(2, &body), 0),
        Err(PduError::UnexpectedItem {
            item_type: 0x51,
            ..
        })
    ));
}

#[test]
fn pdu_error_messages_are_clear() {
    let e = PduError::TooLong {
        declared: 70000,
        limit: 65536,
    };
    assert_eq!(
        e.to_string(),
        "PDU length 70000 exceeds the limit of 65536 bytes"
    );
    let e = PduError::Malformed {
        what: "x".into(),
        offset: 12,
    };
    assert_eq!(e.to_string(), "malformed PDU at byte offset 12: x");
    assert_eq!(PduError::Unencodable { what: "y".into() }.abort_reason(), 0);
}

#[test]
fn pdu_unencodable_fields() {
    // a 70000-byte UID cannot be written: try_encode refuses and leaves out alone,
    // encode truncates without panicking
    let mut rq = echoscu_rq();
    rq.user_information
        .items
        .push(UserItem::ImplementationClassUid("1".repeat(70000)));
    let pdu = Pdu::AssociateRq(rq);
    let mut out = vec![1, 2, 3];
    let e = try_encode(&pdu, &mut out).unwrap_err();
    assert!(matches!(e, PduError::Unencodable { .. }));
    assert_eq!(out, [1, 2, 3]);
    let bytes = encode_to_vec(&pdu);
    // The PDU framing stays consistent (a receiver can skip it), but the user
    // information item was cut at 65535 bytes, in the middle of the long sub-item.
    assert_eq!(
        peek_header(&bytes).map(|h| h.1 as usize + 6),
        Some(bytes.len())
    );
    assert!(matches!(decode(&bytes, 0), Err(PduError::Malformed { .. })));

    // AE title longer than 16 bytes
    let mut rq = echoscu_rq();
    rq.calling_ae_title = "THIS_IS_TOO_LONG_AE".into();
    let pdu = Pdu::AssociateRq(rq);
    assert!(try_encode(&pdu, &mut Vec::new()).is_err());
    let Pdu::AssociateRq(back) = complete(&encode_to_vec(&pdu)).0 else {
        panic!()
    };
    assert_eq!(back.calling_ae_title, "THIS_IS_TOO_LONG");
}

#[test]
fn pdu_every_single_byte_corruption_is_handled() {
    // Not vacuous: many corruptions (reserved bytes, text, values) still decode, and
    // then must re-encode to an equal PDU; the others must be clean errors.
    for pdu in sample_pdus() {
        let bytes = encode_to_vec(&pdu);
        let (mut complete_count, mut err_count) = (0, 0);
        for i in 0..bytes.len() {
            for v in [0x00, 0x01, 0x7F, 0xFF] {
                let mut b = bytes.clone();
                b[i] = v;
                match decode(&b, 0) {
                    Ok(Decoded::Complete(p, n)) => {
                        complete_count += 1;
                        assert!(n <= b.len());
                        assert_eq!(complete(&encode_to_vec(&p)).0, p, "byte {i} = {v}");
                    }
                    Ok(Decoded::NeedMore(n)) => assert!(n > 0),
                    Err(_) => err_count += 1,
                }
            }
        }
        assert!(complete_count > 0, "{pdu:?}");
        if !matches!(
            pdu,
            Pdu::ReleaseRq | Pdu::ReleaseRp | Pdu::Abort(_) | Pdu::AssociateRj(_)
        ) {
            assert!(err_count > 0, "{pdu:?}");
        }
    }
}
