//! Unit tests of `service::store::scu`: planning, contexts, the scanner.

use super::*;

fn p(class: &str, ts: &str) -> Planned {
    Planned { index: 0, source: Source::Memory(Vec::new()), class: class.into(), instance: "1".into(), ts: ts.into(), hold: None }
}

#[test]
fn contexts_cover_own_syntax_and_fallbacks() {
    let g = contexts_for(&[p("1.1", uids::EXPLICIT_VR_LE), p("1.1", "1.2.840.10008.1.2.4.50"), p("1.2", "1.2.840.10008.1.2.5")]);
    assert_eq!(g.len(), 1);
    let c = &g[0];
    assert!(c.contains(&("1.1".into(), vec![uids::EXPLICIT_VR_LE.into()])));
    assert!(c.contains(&("1.1".into(), vec!["1.2.840.10008.1.2.4.50".into()])));
    assert!(c.contains(&("1.1".into(), vec![uids::IMPLICIT_VR_LE.into(), uids::EXPLICIT_VR_BE.into()])));
    // a class with only compressed instances gets no uncompressed fall-back
    assert_eq!(c.iter().filter(|(a, _)| a == "1.2").count(), 1);
}

#[test]
fn more_than_128_contexts_spill_into_further_associations() {
    let many: Vec<Planned> = (0..200).map(|i| p(&format!("1.2.{i}"), uids::IMPLICIT_VR_LE)).collect();
    let g = contexts_for(&many);
    assert!(g.len() >= 3);
    assert!(g.iter().all(|x| x.len() <= 128));
    assert_eq!(g.iter().map(|x| x.len()).sum::<usize>(), 400);
}
fn plan_of(items: &[(&str, &str)]) -> Plan {
    let plan = Plan { state: Mutex::new(PlanState::default()), cond: std::sync::Condvar::new(), lookahead: 8 };
    for (c, t) in items {
        plan.record(&p(c, t));
    }
    plan
}

#[test]
fn a_proposal_puts_the_needed_class_first_and_covers_uncompressed_fallbacks() {
    let plan = plan_of(&[("1.1", uids::EXPLICIT_VR_LE), ("1.2", "1.2.840.10008.1.2.4.50")]);
    let need = p("1.3", uids::IMPLICIT_VR_LE);
    let (ctxs, cov) = plan.propose(&[&need]);
    assert_eq!(ctxs[0], ("1.3".to_string(), vec![uids::IMPLICIT_VR_LE.to_string()]));
    assert!(cov.covers(&need));
    // an uncompressed instance of 1.1 in another syntax goes on the fall-back context
    assert!(cov.covers(&p("1.1", uids::EXPLICIT_VR_BE)));
    assert!(cov.covers(&p("1.2", "1.2.840.10008.1.2.4.50")));
    // a compressed syntax not seen, or a class not seen, is not covered
    assert!(!cov.covers(&p("1.1", "1.2.840.10008.1.2.4.70")));
    assert!(!cov.covers(&p("1.2", uids::EXPLICIT_VR_LE)));
    assert!(!cov.covers(&p("9.9", uids::EXPLICIT_VR_LE)));
}

#[test]
fn a_proposal_never_exceeds_128_contexts_and_prefers_recent_classes() {
    let items: Vec<(String, &str)> = (0..200).map(|i| (format!("1.2.{i}"), uids::IMPLICIT_VR_LE)).collect();
    let refs: Vec<(&str, &str)> = items.iter().map(|(c, t)| (c.as_str(), *t)).collect();
    let plan = plan_of(&refs);
    assert!(plan.contexts_needed() > MAX_PRESENTATION_CONTEXTS);
    let need = p("1.2.0", uids::IMPLICIT_VR_LE);
    let (ctxs, cov) = plan.propose(&[&need]);
    assert!(ctxs.len() <= MAX_PRESENTATION_CONTEXTS);
    assert_eq!(ctxs.len(), 128);
    assert!(cov.covers(&need), "the needed class is in, although it was seen first");
    assert!(cov.covers(&p("1.2.199", uids::IMPLICIT_VR_LE)), "the most recent class is in");
    assert!(!cov.covers(&p("1.2.100", uids::IMPLICIT_VR_LE)), "older ones wait for another association");
}

#[test]
fn the_plan_forgets_the_least_recent_classes_beyond_its_bound() {
    let items: Vec<String> = (0..PLAN_CLASSES + 10).map(|i| format!("1.3.{i}")).collect();
    let refs: Vec<(&str, &str)> = items.iter().map(|c| (c.as_str(), uids::EXPLICIT_VR_LE)).collect();
    let plan = plan_of(&refs);
    let s = plan.lock();
    assert_eq!(s.classes.len(), PLAN_CLASSES);
    assert!(!s.classes.contains_key("1.3.0"));
    assert!(s.classes.contains_key(&format!("1.3.{}", PLAN_CLASSES + 9)));
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fastdimse-walk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn the_walker_goes_depth_first_in_name_order() {
    let d = tmpdir("sorted");
    for f in ["b/2", "b/1", "a", "c/x/9", "c/0"] {
        let p = d.join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, b"x").expect("write");
    }
    let got: Vec<String> = Walker::new(&d).map(|p| p.strip_prefix(&d).expect("under d").to_string_lossy().into_owned()).collect();
    assert_eq!(got, ["a", "b/1", "b/2", "c/0", "c/x/9"]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_walker_lists_a_huge_folder_without_holding_it() {
    let d = tmpdir("huge");
    let n = SORTED_FOLDER + 50;
    for i in 0..n {
        std::fs::write(d.join(format!("{i:06}")), b"x").expect("write");
    }
    std::fs::create_dir_all(d.join("sub")).expect("mkdir");
    std::fs::write(d.join("sub").join("z"), b"x").expect("write");
    let mut w = Walker::new(&d);
    let first = w.next();
    assert!(first.is_some());
    // at most SORTED_FOLDER names are held per level
    assert!(w.stack.iter().all(|(q, _)| q.len() <= SORTED_FOLDER));
    let rest: BTreeSet<PathBuf> = w.collect();
    assert_eq!(rest.len() + 1, n + 1);
    assert!(rest.contains(&d.join("sub").join("z")) || first.as_deref() == Some(&d.join("sub").join("z")));
    let _ = std::fs::remove_dir_all(&d);
}
