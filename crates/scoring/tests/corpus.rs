//! The grader against hand-labelled answer pairs (tests/data/math_equivalence.tsv) and whole
//! responses (tests/data/math_responses.tsv).

use std::collections::BTreeSet;

use reprolm_scoring::{grade_math, math_equal, read_labelled_pairs, Rule};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/math_equivalence.tsv"
);

#[test]
fn agrees_with_hand_labels() {
    let pairs = read_labelled_pairs(CORPUS).expect("corpus readable");
    assert!(pairs.len() >= 400, "corpus has only {} pairs", pairs.len());
    assert!(pairs.iter().any(|p| p.equal) && pairs.iter().any(|p| !p.equal));
    let mut wrong = Vec::new();
    for p in &pairs {
        let v = math_equal(&p.gold, &p.pred);
        if v.equal != p.equal {
            wrong.push(format!(
                "line {}: label {} but {:?} ({}): `{}` vs `{}` [{}]",
                p.line, p.equal, v.rule, v.detail, p.gold, p.pred, p.note
            ));
        }
    }
    let agreement = 1.0 - wrong.len() as f64 / pairs.len() as f64;
    println!(
        "agreement {:.2}% on {} pairs",
        100.0 * agreement,
        pairs.len()
    );
    for w in &wrong {
        println!("{w}");
    }
    assert!(
        agreement >= 0.995,
        "agreement {:.2}% < 99.5%:\n{}",
        100.0 * agreement,
        wrong.join("\n")
    );
}

#[test]
fn every_rule_decides_some_pair() {
    let pairs = read_labelled_pairs(CORPUS).expect("corpus readable");
    let mut equal_by = BTreeSet::new();
    let mut any_by = BTreeSet::new();
    for p in &pairs {
        let v = math_equal(&p.gold, &p.pred);
        any_by.insert(v.rule);
        if v.equal && p.equal {
            equal_by.insert(v.rule);
        }
    }
    let all = [
        Rule::StringMatch,
        Rule::Numeric,
        Rule::Percent,
        Rule::RandomPoints,
        Rule::Equation,
        Rule::EquationRhs,
        Rule::Tuple,
        Rule::Interval,
        Rule::Set,
        Rule::Matrix,
        Rule::BaseSubscript,
        Rule::Text,
        Rule::ChoiceLetter,
    ];
    for r in all {
        assert!(
            equal_by.contains(&r),
            "no correctly labelled equal pair is decided by {r:?}"
        );
    }
    // Rules that only ever say "not equal"; NoAnswer belongs to whole-response grading, not to math_equal.
    for r in [
        Rule::ShapeMismatch,
        Rule::NotFinite,
        Rule::Unparsable,
        Rule::Rejected,
    ] {
        assert!(any_by.contains(&r), "no pair is decided by {r:?}");
    }
}

const RESPONSES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/math_responses.tsv");

/// Whole responses (extraction and equivalence together) against hand labels: every one agrees.
#[test]
fn responses_agree_with_hand_labels() {
    let pairs = read_labelled_pairs(RESPONSES).expect("response corpus readable");
    assert!(pairs.iter().any(|p| p.equal) && pairs.iter().any(|p| !p.equal));
    let wrong: Vec<String> = pairs
        .iter()
        .filter_map(|p| {
            let g = grade_math(&p.gold, &p.pred);
            (g.correct != p.equal).then(|| {
                format!(
                    "line {}: label {} but {:?} ({}), extracted {:?}: `{}` [{}]",
                    p.line,
                    p.equal,
                    g.rule,
                    g.detail,
                    g.extracted.map(|e| e.text),
                    p.pred,
                    p.note
                )
            })
        })
        .collect();
    println!("{} responses, {} disagree", pairs.len(), wrong.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
