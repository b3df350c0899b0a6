//! Unit tests of `ul::negotiation` (kept beside it so that negotiation.rs holds only the code).

use super::*;

const VERIFICATION: &str = "1.2.840.10008.1.1";
const CT_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const MR_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
const FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const IMPLICIT: &str = "1.2.840.10008.1.2";
const EXPLICIT: &str = "1.2.840.10008.1.2.1";
const JPEG_LOSSLESS: &str = "1.2.840.10008.1.2.4.70";

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn requestor() -> RequestorConfig {
    let mut cfg = RequestorConfig::new("STORESCU", "ARCHIVE");
    cfg.contexts = vec![
        (VERIFICATION.into(), s(&[IMPLICIT])),
        (CT_STORAGE.into(), s(&[EXPLICIT, IMPLICIT])),
        (MR_STORAGE.into(), s(&[JPEG_LOSSLESS])),
    ];
    cfg
}

fn acceptor() -> AcceptorConfig {
    let mut cfg = AcceptorConfig::new("ARCHIVE");
    cfg.supported = vec![
        (VERIFICATION.into(), s(&[IMPLICIT])),
        (CT_STORAGE.into(), s(&[IMPLICIT, EXPLICIT])),
        (MR_STORAGE.into(), s(&[IMPLICIT, EXPLICIT])),
    ];
    cfg
}

fn accept(rq: &AssociateRq, cfg: &AcceptorConfig) -> (AssociateAc, Negotiated) {
    match negotiate_acceptor(rq, cfg) {
        AcceptorDecision::Accept(ac, n) => (ac, n),
        AcceptorDecision::Reject(rj) => panic!("rejected: {}", describe_reject(&rj)),
    }
}

fn rejection(rq: &AssociateRq, cfg: &AcceptorConfig) -> AssociateRj {
    match negotiate_acceptor(rq, cfg) {
        AcceptorDecision::Reject(rj) => rj,
        AcceptorDecision::Accept(..) => panic!("accepted"),
    }
}

fn roles_in(info: &UserInformation) -> Vec<(String, u8, u8)> {
    info.role_selections()
        .map(|(c, a, b)| (c.to_string(), a, b))
        .collect()
}

#[test]
fn build_rq_numbers_contexts_and_orders_items() {
    let mut cfg = requestor();
    cfg.calling_ae = " STORESCU ".into();
    cfg.role_selections = vec![(CT_STORAGE.into(), true, true)];
    cfg.async_ops_window = Some((4, 1));
    cfg.user_identity = Some(UserIdentity::username("alice", false));
    let rq = build_associate_rq(&cfg).unwrap();
    assert_eq!(rq.protocol_version, 1);
    assert_eq!(rq.calling_ae_title, "STORESCU");
    assert_eq!(rq.called_ae_title, "ARCHIVE");
    assert_eq!(rq.application_context, DICOM_APPLICATION_CONTEXT);
    let ids: Vec<u8> = rq.presentation_contexts.iter().map(|pc| pc.id).collect();
    assert_eq!(ids, vec![1, 3, 5]);
    assert_eq!(
        rq.presentation_contexts[1].transfer_syntaxes,
        s(&[EXPLICIT, IMPLICIT])
    );
    let types: Vec<u8> = rq
        .user_information
        .items
        .iter()
        .map(|i| match i {
            UserItem::MaximumLength(_) => 0x51,
            UserItem::ImplementationClassUid(_) => 0x52,
            UserItem::AsyncOperationsWindow { .. } => 0x53,
            UserItem::RoleSelection { .. } => 0x54,
            UserItem::ImplementationVersionName(_) => 0x55,
            UserItem::UserIdentityRq { .. } => 0x58,
            _ => 0,
        })
        .collect();
    assert_eq!(types, vec![0x51, 0x52, 0x53, 0x54, 0x55, 0x58]);
    assert_eq!(
        rq.user_information.max_length(),
        Some(DEFAULT_MAX_PDU_LENGTH)
    );
    assert_eq!(
        roles_in(&rq.user_information),
        vec![(CT_STORAGE.to_string(), 1, 1)]
    );
}

#[test]
fn build_rq_context_limits() {
    let mut cfg = requestor();
    cfg.contexts = (0..128)
        .map(|_| (VERIFICATION.to_string(), s(&[IMPLICIT])))
        .collect();
    let rq = build_associate_rq(&cfg).unwrap();
    assert_eq!(rq.presentation_contexts.last().unwrap().id, 255);
    cfg.contexts.push((VERIFICATION.into(), s(&[IMPLICIT])));
    assert_eq!(
        build_associate_rq(&cfg),
        Err(NegotiationError::TooManyContexts(129))
    );
    cfg.contexts.clear();
    assert_eq!(build_associate_rq(&cfg), Err(NegotiationError::NoContexts));
    cfg.contexts = vec![(CT_STORAGE.into(), vec![])];
    assert!(matches!(
        build_associate_rq(&cfg),
        Err(NegotiationError::NoTransferSyntax { .. })
    ));
}

#[test]
fn build_rq_checks_ae_titles() {
    for bad in ["", "    ", "SEVENTEEN_CHARS_X", "BACK\\SLASH", "TAB\tHERE"] {
        let mut cfg = requestor();
        cfg.called_ae = bad.into();
        assert!(
            matches!(
                build_associate_rq(&cfg),
                Err(NegotiationError::InvalidAeTitle { .. })
            ),
            "{bad:?}"
        );
    }
    let mut cfg = requestor();
    cfg.called_ae = "SIXTEEN_CHARS_AE".into();
    assert!(build_associate_rq(&cfg).is_ok());
}

#[test]
fn acceptor_picks_first_of_our_preferences_that_peer_offers() {
    let rq = build_associate_rq(&requestor()).unwrap();
    let (ac, n) = accept(&rq, &acceptor());
    let answers: Vec<(u8, u8, &str)> = ac
        .presentation_contexts
        .iter()
        .map(|pc| (pc.id, pc.result, pc.transfer_syntax.as_str()))
        .collect();
    // CT: the peer prefers explicit, we prefer implicit: ours wins.
    // MR: JPEG only, which we do not take: transfer-syntaxes-not-supported.
    assert_eq!(
        answers,
        vec![(1, 0, IMPLICIT), (3, 0, IMPLICIT), (5, 4, JPEG_LOSSLESS)]
    );
    assert_eq!(n.contexts.len(), 2);
    assert_eq!(n.rejected, vec![(5, MR_STORAGE.to_string(), 4)]);
    assert_eq!(n.peer_ae_title, "STORESCU");
    assert_eq!(n.our_ae_title, "ARCHIVE");
    assert!(!n.requestor);
    assert_eq!(ac.called_ae_title, "ARCHIVE");
    assert_eq!(ac.calling_ae_title, "STORESCU");
    assert_eq!(
        n.peer_implementation_class_uid.as_deref(),
        Some(DEFAULT_IMPLEMENTATION_CLASS_UID)
    );
    assert_eq!(
        n.peer_implementation_version_name.as_deref(),
        Some(DEFAULT_IMPLEMENTATION_VERSION_NAME)
    );
}

#[test]
fn acceptor_abstract_syntax_not_supported_and_wildcards() {
    let mut rcfg = requestor();
    rcfg.contexts.push((FIND.into(), s(&[EXPLICIT, IMPLICIT])));
    let rq = build_associate_rq(&rcfg).unwrap();
    let (_, n) = accept(&rq, &acceptor());
    assert!(n.rejected.contains(&(7, FIND.to_string(), 3)));

    // Any abstract syntax, with our default preference list.
    let mut cfg = acceptor();
    cfg.accept_any_abstract = true;
    cfg.default_transfer_syntaxes = s(&[IMPLICIT]);
    let (_, n) = accept(&rq, &cfg);
    assert_eq!(n.context(7).unwrap().transfer_syntax, IMPLICIT);

    // Empty preference list everywhere: take whatever the peer prefers.
    cfg.default_transfer_syntaxes.clear();
    cfg.supported = vec![(MR_STORAGE.into(), vec![])];
    cfg.accept_any_abstract = false;
    let (_, n) = accept(&rq, &cfg);
    assert_eq!(n.contexts.len(), 1);
    assert_eq!(n.context(5).unwrap().transfer_syntax, JPEG_LOSSLESS);
    assert_eq!(
        n.rejected.iter().map(|r| r.2).collect::<Vec<_>>(),
        vec![3, 3, 3]
    );
}

#[test]
fn acceptor_with_no_common_context_still_accepts_with_results() {
    let mut rcfg = requestor();
    rcfg.contexts = vec![(FIND.into(), s(&[IMPLICIT]))];
    let rq = build_associate_rq(&rcfg).unwrap();
    let (ac, n) = accept(&rq, &acceptor());
    assert!(n.contexts.is_empty());
    assert_eq!(ac.presentation_contexts[0].result, 3);
}

#[test]
fn acceptor_handles_even_and_duplicate_context_ids() {
    let mut rq = build_associate_rq(&requestor()).unwrap();
    rq.presentation_contexts[1].id = 2; // even
    rq.presentation_contexts[2].id = 1; // duplicate of the first
    let (ac, n) = accept(&rq, &acceptor());
    let answers: Vec<(u8, u8)> = ac
        .presentation_contexts
        .iter()
        .map(|pc| (pc.id, pc.result))
        .collect();
    assert_eq!(answers, vec![(1, 0), (2, 2)]);
    assert_eq!(n.context(1).unwrap().abstract_syntax, VERIFICATION);
    assert_eq!(n.rejected, vec![(2, CT_STORAGE.to_string(), 2)]);
}

#[test]
fn reject_protocol_version() {
    let mut rq = build_associate_rq(&requestor()).unwrap();
    rq.protocol_version = 2;
    // Checked first, even when other checks would also fail.
    rq.application_context = "1.2.3".into();
    let rj = rejection(&rq, &acceptor());
    assert_eq!((rj.result, rj.source, rj.reason), (1, 2, 2));
    assert_eq!(
        reject_reason_text(rj.result, rj.source, rj.reason),
        "protocol version not supported"
    );
}

#[test]
fn reject_application_context() {
    let mut rq = build_associate_rq(&requestor()).unwrap();
    rq.application_context = "1.2.840.10008.3.1.1.2".into();
    let rj = rejection(&rq, &acceptor());
    assert_eq!((rj.result, rj.source, rj.reason), (1, 1, 2));
    // Padding is not a different name.
    rq.application_context = format!("{DICOM_APPLICATION_CONTEXT}\0");
    accept(&rq, &acceptor());
}

#[test]
fn reject_called_ae() {
    let mut rcfg = requestor();
    rcfg.called_ae = "SOMEONE".into();
    let rq = build_associate_rq(&rcfg).unwrap();
    let mut cfg = acceptor();
    accept(&rq, &cfg); // not checked by default
    cfg.require_called_ae = true;
    let rj = rejection(&rq, &cfg);
    assert_eq!(rj, reject::CALLED_AE_NOT_RECOGNIZED);
    assert_eq!((rj.result, rj.source, rj.reason), (1, 1, 7));
    assert_eq!(
        reject_reason_text(1, 1, 7),
        "called AE title not recognized"
    );
    // Spaces are not significant; case is.
    let mut rq2 = build_associate_rq(&requestor()).unwrap();
    rq2.called_ae_title = "  ARCHIVE ".into();
    accept(&rq2, &cfg);
    rq2.called_ae_title = "archive".into();
    assert_eq!(rejection(&rq2, &cfg), reject::CALLED_AE_NOT_RECOGNIZED);
}

#[test]
fn reject_calling_ae() {
    let rq = build_associate_rq(&requestor()).unwrap();
    let mut cfg = acceptor();
    cfg.allowed_calling_aes = Some(vec!["MODALITY1".into(), "STORESCU ".into()]);
    accept(&rq, &cfg);
    cfg.allowed_calling_aes = Some(vec!["MODALITY1".into()]);
    let rj = rejection(&rq, &cfg);
    assert_eq!((rj.result, rj.source, rj.reason), (1, 1, 3));
    assert!(!reject::is_transient(&rj));
    assert_eq!(
        describe_reject(&rj),
        "rejected-permanent by DICOM UL service-user: calling AE title not recognized \
         (result 1, source 1, reason 3)"
    );
}

#[test]
fn reject_texts() {
    assert!(reject::is_transient(&reject::LOCAL_LIMIT_EXCEEDED));
    assert_eq!(reject_reason_text(2, 3, 2), "local limit exceeded");
    assert_eq!(reject_reason_text(2, 3, 1), "temporary congestion");
    assert_eq!(reject_reason_text(1, 1, 1), "no reason given");
    assert_eq!(reject_reason_text(1, 1, 5), "reserved reason");
    assert_eq!(reject_reason_text(1, 9, 1), "unknown reason");
    assert_eq!(abort_reason_text(2, 2), "unexpected PDU");
    assert_eq!(abort_reason_text(2, 6), "invalid PDU parameter value");
    assert_eq!(abort_reason_text(0, 77), "aborted by the service-user");
    assert_eq!(
        describe_abort(&Abort {
            source: 2,
            reason: 1
        }),
        "A-ABORT from the service-provider: unrecognized PDU (source 2, reason 1)"
    );
    assert_eq!(
        context_result_text(4),
        "transfer-syntaxes-not-supported (provider rejection)"
    );
}

#[test]
fn role_selection_answers() {
    let mut rcfg = requestor();
    rcfg.role_selections = vec![
        (CT_STORAGE.into(), true, true),   // C-GET SCU: also SCP for storage
        (MR_STORAGE.into(), false, true),  // SCP only
        (CT_STORAGE.into(), false, false), // repeated: ignored
    ];
    rcfg.contexts[2].1 = s(&[IMPLICIT]);
    let rq = build_associate_rq(&rcfg).unwrap();

    // Default: refuse the requestor's SCP role.
    let (ac, n) = accept(&rq, &acceptor());
    assert_eq!(
        roles_in(&ac.user_information),
        vec![
            (CT_STORAGE.to_string(), 1, 0),
            (MR_STORAGE.to_string(), 0, 0)
        ]
    );
    let ct = n.find_context(CT_STORAGE, None).unwrap();
    assert_eq!((ct.scu_role, ct.scp_role), (true, false));
    let mr = n.find_context(MR_STORAGE, None).unwrap();
    assert_eq!((mr.scu_role, mr.scp_role), (false, false));
    // No item for verification: default roles.
    let v = n.find_context(VERIFICATION, Some(IMPLICIT)).unwrap();
    assert_eq!((v.scu_role, v.scp_role), (true, false));
    assert!(v.local_is_scp(n.requestor) && !v.local_is_scu(n.requestor));

    // Accept it for CT only.
    let mut cfg = acceptor();
    cfg.requestor_scp_role = ScpRolePolicy::AcceptFor(vec![CT_STORAGE.into()]);
    let (ac, n) = accept(&rq, &cfg);
    assert_eq!(
        roles_in(&ac.user_information),
        vec![
            (CT_STORAGE.to_string(), 1, 1),
            (MR_STORAGE.to_string(), 0, 0)
        ]
    );
    let ct = n.find_context(CT_STORAGE, None).unwrap();
    assert_eq!((ct.scu_role, ct.scp_role), (true, true));
    // As acceptor we may now invoke C-STORE on the CT context.
    assert_eq!(
        n.find_context_as_scu(CT_STORAGE, None).map(|c| c.id),
        Some(3)
    );
    assert!(n.find_context_as_scu(VERIFICATION, None).is_none());

    // Accept for all.
    cfg.requestor_scp_role = ScpRolePolicy::AcceptAll;
    let (ac, n) = accept(&rq, &cfg);
    assert_eq!(
        roles_in(&ac.user_information),
        vec![
            (CT_STORAGE.to_string(), 1, 1),
            (MR_STORAGE.to_string(), 0, 1)
        ]
    );
    let mr = n.find_context(MR_STORAGE, None).unwrap();
    assert_eq!((mr.scu_role, mr.scp_role), (false, true));

    // The requestor reads the same roles from the AC.
    let mine = interpret_associate_ac(&rq, &ac).unwrap();
    assert_eq!(mine.contexts, n.contexts);
    assert!(mine.find_context_as_scu(MR_STORAGE, None).is_none());
    assert!(mine.find_context_as_scu(CT_STORAGE, None).is_some());
}

#[test]
fn no_role_items_proposed_means_none_answered() {
    let rq = build_associate_rq(&requestor()).unwrap();
    let mut cfg = acceptor();
    cfg.requestor_scp_role = ScpRolePolicy::AcceptAll;
    let (ac, _) = accept(&rq, &cfg);
    assert!(roles_in(&ac.user_information).is_empty());
}

#[test]
fn requestor_ignores_role_answers_it_did_not_propose() {
    let mut rcfg = requestor();
    rcfg.role_selections = vec![(CT_STORAGE.into(), true, false)];
    let rq = build_associate_rq(&rcfg).unwrap();
    let (mut ac, _) = accept(&rq, &acceptor());
    // A careless acceptor answers 1 for the SCP role we did not propose, and sends an
    // item for a class we sent none for.
    ac.user_information
        .items
        .retain(|i| !matches!(i, UserItem::RoleSelection { .. }));
    ac.user_information.items.push(UserItem::RoleSelection {
        sop_class_uid: CT_STORAGE.into(),
        scu_role: 1,
        scp_role: 1,
    });
    ac.user_information.items.push(UserItem::RoleSelection {
        sop_class_uid: VERIFICATION.into(),
        scu_role: 0,
        scp_role: 1,
    });
    let n = interpret_associate_ac(&rq, &ac).unwrap();
    let ct = n.context(3).unwrap();
    assert_eq!((ct.scu_role, ct.scp_role), (true, false));
    let v = n.context(1).unwrap();
    assert_eq!((v.scu_role, v.scp_role), (true, false));
}

#[test]
fn max_pdu_passthrough_both_sides() {
    for (ours, theirs) in [(0u32, 0u32), (16_384, 0), (0, 1_048_576), (65_536, 16_382)] {
        let mut rcfg = requestor();
        rcfg.max_pdu_length = ours;
        let mut cfg = acceptor();
        cfg.max_pdu_length = theirs;
        let rq = build_associate_rq(&rcfg).unwrap();
        let (ac, acceptor_view) = accept(&rq, &cfg);
        assert_eq!(ac.user_information.max_length(), Some(theirs));
        assert_eq!(
            (acceptor_view.peer_max_pdu, acceptor_view.our_max_pdu),
            (ours, theirs)
        );
        let requestor_view = interpret_associate_ac(&rq, &ac).unwrap();
        assert_eq!(
            (requestor_view.peer_max_pdu, requestor_view.our_max_pdu),
            (theirs, ours)
        );
    }
}

#[test]
fn max_pdu_absent_is_conservative() {
    let mut rq = build_associate_rq(&requestor()).unwrap();
    rq.user_information
        .items
        .retain(|i| !matches!(i, UserItem::MaximumLength(_)));
    let (mut ac, n) = accept(&rq, &acceptor());
    assert_eq!(n.peer_max_pdu, PEER_MAX_PDU_IF_ABSENT);
    ac.user_information
        .items
        .retain(|i| !matches!(i, UserItem::MaximumLength(_)));
    let mine = interpret_associate_ac(&rq, &ac).unwrap();
    assert_eq!(mine.peer_max_pdu, PEER_MAX_PDU_IF_ABSENT);
    assert_eq!(mine.our_max_pdu, 0);
}

#[test]
fn async_operations_window() {
    let mut rcfg = requestor();
    rcfg.async_ops_window = Some((5, 0)); // we invoke up to 5, perform unlimited
    let rq = build_associate_rq(&rcfg).unwrap();
    // Not configured on the acceptor: no answer, synchronous.
    let (ac, n) = accept(&rq, &acceptor());
    assert_eq!(async_window(&ac.user_information), None);
    assert_eq!(n.async_ops_window, (1, 1));
    assert_eq!(
        interpret_associate_ac(&rq, &ac).unwrap().async_ops_window,
        (1, 1)
    );
    // Acceptor invokes up to 2 and performs up to 3.
    let mut cfg = acceptor();
    cfg.async_ops_window = Some((2, 3));
    let (ac, n) = accept(&rq, &cfg);
    assert_eq!(async_window(&ac.user_information), Some((3, 2)));
    assert_eq!(n.async_ops_window, (3, 2));
    assert_eq!(
        interpret_associate_ac(&rq, &ac).unwrap().async_ops_window,
        (3, 2)
    );
    // Not proposed: not answered even if configured.
    let rq = build_associate_rq(&requestor()).unwrap();
    let (ac, _) = accept(&rq, &cfg);
    assert_eq!(async_window(&ac.user_information), None);
    assert_eq!(min_window(0, 0), 0);
    assert_eq!(min_window(0, 7), 7);
    // An accepted context served one operation at a time keeps the association
    // synchronous; one that is not accepted does not matter.
    let rq = build_associate_rq(&rcfg).unwrap();
    let mut sync_cfg = cfg.clone();
    sync_cfg.synchronous_abstract_syntaxes = vec![CT_STORAGE.to_string()];
    let (ac, n) = accept(&rq, &sync_cfg);
    assert!(n.contexts.iter().any(|c| c.abstract_syntax == CT_STORAGE));
    assert_eq!(async_window(&ac.user_information), None);
    assert_eq!(n.async_ops_window, (1, 1));
    sync_cfg.synchronous_abstract_syntaxes = vec!["1.2.840.10008.5.1.4.1.2.2.1".to_string()];
    let (ac, _) = accept(&rq, &sync_cfg);
    assert_eq!(async_window(&ac.user_information), Some((3, 2)));
}

#[test]
fn interpret_ac_errors_and_missing_answers() {
    let rq = build_associate_rq(&requestor()).unwrap();
    let (ac, _) = accept(&rq, &acceptor());

    let mut bad = ac.clone();
    bad.presentation_contexts[0].id = 9;
    assert_eq!(
        interpret_associate_ac(&rq, &bad),
        Err(NegotiationError::UnknownContextId(9))
    );

    let mut bad = ac.clone();
    bad.presentation_contexts[0].transfer_syntax = EXPLICIT.into(); // only implicit offered
    assert_eq!(
        interpret_associate_ac(&rq, &bad),
        Err(NegotiationError::TransferSyntaxNotProposed {
            id: 1,
            transfer_syntax: EXPLICIT.into()
        })
    );

    let mut short = ac.clone();
    short.presentation_contexts.remove(1);
    let n = interpret_associate_ac(&rq, &short).unwrap();
    assert_eq!(n.contexts.len(), 1);
    assert!(n.rejected.contains(&(3, CT_STORAGE.to_string(), 2)));

    // A rejected context's transfer syntax is not looked at.
    let mut odd = ac.clone();
    odd.presentation_contexts[2].transfer_syntax = "9.9.9".into();
    assert!(interpret_associate_ac(&rq, &odd).is_ok());
}

#[test]
fn full_round_trip_gives_both_sides_the_same_view() {
    let mut rcfg = requestor();
    rcfg.user_identity = Some(UserIdentity::username_password("alice", "s3cret", true));
    let rq = build_associate_rq(&rcfg).unwrap();
    let (ac, theirs) = accept(&rq, &acceptor());
    let mine = interpret_associate_ac(&rq, &ac).unwrap();
    assert_eq!(mine.contexts, theirs.contexts);
    assert_eq!(mine.rejected, theirs.rejected);
    assert_eq!(mine.peer_ae_title, theirs.our_ae_title);
    assert_eq!(mine.our_ae_title, theirs.peer_ae_title);
    assert!(mine.requestor);
    assert_eq!(mine.user_identity_response, None);
    let identity = theirs.peer_user_identity.clone().unwrap();
    assert_eq!(identity.identity_type, 2);
    assert_eq!(identity.secondary_field, b"s3cret");
    let shown = format!("{identity:?}");
    assert!(
        shown.contains("alice") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert_eq!(
        mine.find_context(CT_STORAGE, Some(IMPLICIT)).map(|c| c.id),
        Some(3)
    );
    assert!(mine.find_context(CT_STORAGE, Some(EXPLICIT)).is_none());
    assert!(mine.context(5).is_none());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const ABSTRACTS: [&str; 4] = [VERIFICATION, CT_STORAGE, MR_STORAGE, FIND];
    const SYNTAXES: [&str; 3] = [IMPLICIT, EXPLICIT, JPEG_LOSSLESS];

    fn pick(from: &[&str], mask: u8) -> Vec<String> {
        from.iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, x)| x.to_string())
            .collect()
    }

    fn arb_rq() -> impl Strategy<Value = AssociateRq> {
        (
            prop::collection::vec((any::<u8>(), 0usize..4, any::<u8>()), 0..12),
            prop::collection::vec((0usize..4, any::<bool>(), any::<bool>()), 0..4),
        )
            .prop_map(|(contexts, roles)| {
                let mut cfg = RequestorConfig::new("A", "B");
                cfg.contexts = vec![(VERIFICATION.into(), s(&[IMPLICIT]))];
                cfg.role_selections = roles
                    .iter()
                    .map(|&(a, u, p)| (ABSTRACTS[a].to_string(), u, p))
                    .collect();
                let mut rq = build_associate_rq(&cfg).unwrap();
                rq.presentation_contexts = contexts
                    .into_iter()
                    .map(|(id, a, mask)| PresentationContextRq {
                        id,
                        abstract_syntax: ABSTRACTS[a].to_string(),
                        transfer_syntaxes: pick(&SYNTAXES, mask),
                    })
                    .collect();
                rq
            })
    }

    fn arb_cfg() -> impl Strategy<Value = AcceptorConfig> {
        (
            prop::collection::vec((0usize..4, any::<u8>()), 0..4),
            any::<bool>(),
            any::<u8>(),
            0u8..3,
        )
            .prop_map(|(supported, any_abstract, default_mask, policy)| {
                let mut cfg = AcceptorConfig::new("B");
                cfg.supported = supported
                    .into_iter()
                    .map(|(a, mask)| (ABSTRACTS[a].to_string(), pick(&SYNTAXES, mask)))
                    .collect();
                cfg.accept_any_abstract = any_abstract;
                cfg.default_transfer_syntaxes = pick(&SYNTAXES, default_mask);
                cfg.requestor_scp_role = match policy {
                    0 => ScpRolePolicy::Refuse,
                    1 => ScpRolePolicy::AcceptAll,
                    _ => ScpRolePolicy::AcceptFor(vec![CT_STORAGE.into()]),
                };
                cfg
            })
    }

    proptest! {
        /// Whatever is proposed and configured, the acceptor answers each distinct ID once,
        /// in order, accepts only proposed transfer syntaxes on odd IDs, and the requestor
        /// reading that answer reaches the same contexts, rejections and roles.
        #[test]
        fn acceptor_and_requestor_agree(rq in arb_rq(), cfg in arb_cfg()) {
            let (ac, theirs) = match negotiate_acceptor(&rq, &cfg) {
                AcceptorDecision::Accept(ac, n) => (ac, n),
                AcceptorDecision::Reject(rj) => panic!("{}", describe_reject(&rj)),
            };
            let mut first_ids = Vec::new();
            for pc in &rq.presentation_contexts {
                if !first_ids.contains(&pc.id) {
                    first_ids.push(pc.id);
                }
            }
            let answered: Vec<u8> = ac.presentation_contexts.iter().map(|a| a.id).collect();
            prop_assert_eq!(&answered, &first_ids);
            for answer in &ac.presentation_contexts {
                prop_assert!(answer.result <= 4);
                if answer.result == 0 {
                    prop_assert!(answer.id % 2 == 1);
                    let pc = rq.presentation_contexts.iter().find(|p| p.id == answer.id).unwrap();
                    prop_assert!(pc.transfer_syntaxes.contains(&answer.transfer_syntax));
                }
            }
            prop_assert_eq!(theirs.contexts.len() + theirs.rejected.len(), first_ids.len());
            let mine = interpret_associate_ac(&rq, &ac).unwrap();
            prop_assert_eq!(&mine.contexts, &theirs.contexts);
            prop_assert_eq!(&mine.rejected, &theirs.rejected);
            for c in &mine.contexts {
                // The requestor never gets a role it did not propose.
                if let Some((_, scu, scp)) = rq.user_information.role_selections().find(|r| r.0 == c.abstract_syntax) {
                    prop_assert!(!c.scu_role || scu == 1);
                    prop_assert!(!c.scp_role || scp == 1);
                } else {
                    prop_assert!(c.scu_role && !c.scp_role);
                }
            }
        }
    }
}
