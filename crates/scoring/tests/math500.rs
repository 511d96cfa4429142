//! Every MATH500 gold answer parses and equals itself boxed in a response.
//! Reads ../shared/datasets/math500/test.jsonl; skips when it is absent.

use std::path::PathBuf;

use reprolm_scoring::{grade_math, math_equal, Rule};

fn dataset() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets/math500/test.jsonl");
    if p.exists() {
        Some(p)
    } else {
        println!(
            "SKIP: {} not found; put the MATH500 test split (HuggingFaceH4/MATH-500) there to run",
            p.display()
        );
        None
    }
}

#[test]
fn every_gold_answer_parses_and_matches_itself() {
    let Some(path) = dataset() else { return };
    let text = std::fs::read_to_string(&path).expect("readable dataset");
    let mut count = 0;
    let mut failures = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line).expect("valid JSON line");
        let gold = row["answer"].as_str().expect("answer field");
        count += 1;
        let self_eq = math_equal(gold, gold);
        let boxed = grade_math(
            gold,
            &format!("<think>...</think> The answer is $\\boxed{{{gold}}}$."),
        );
        // Parse the gold against a value it cannot equal, to see that it parsed at all.
        let parsed = math_equal(gold, "\\text{zzz}");
        if !self_eq.equal || !boxed.correct || parsed.rule == Rule::Unparsable {
            failures.push(format!(
                "line {}: `{gold}`: self {:?}, boxed {:?}, parse {:?}",
                i + 1,
                self_eq,
                boxed.rule,
                parsed
            ));
        }
    }
    assert_eq!(count, 500);
    assert!(
        failures.is_empty(),
        "{} of {count} gold answers fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Each reference solution boxes its final answer, with nested braces (`\\boxed{\\frac{\\sqrt{3}}{2}}`),
/// sometimes after earlier boxes or inside `$...$`: extraction must return exactly the `answer` field,
/// or a list that ends with it where the solution restates it in another form in a box joined by
/// "or" (`\\boxed{15\\frac{39}{40}}, or \\boxed{\\frac{639}{40}}`, listed since issue #30), and the
/// grade must be correct.
#[test]
fn extraction_finds_the_boxed_answer_of_every_reference_solution() {
    let Some(path) = dataset() else { return };
    let text = std::fs::read_to_string(&path).expect("readable dataset");
    let mut wrong = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line).expect("valid JSON line");
        let gold = row["answer"].as_str().expect("answer field");
        let solution = row["solution"].as_str().expect("solution field");
        let g = grade_math(gold, solution);
        let text = g.extracted.as_ref().map(|e| e.text.as_str());
        let restated = text.is_some_and(|t| t.ends_with(&format!(", {}", gold.trim())));
        if (text != Some(gold.trim()) && !restated) || !g.correct {
            wrong.push(format!(
                "line {}: `{gold}` vs {text:?}: {:?} {}",
                i + 1,
                g.rule,
                g.detail
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} reference solutions:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
