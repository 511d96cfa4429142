//! Grading of math answers: extraction from a response, normalisation, parsing, equivalence.
//!
//! Modules, in the order a grade uses them: [`extract`] finds the answer in the response, `normalize`
//! removes notation that does not change the value, `answer` reads the answer's shape, `expr` parses and
//! evaluates expressions, and [`equal`] decides with one named rule per shape.

pub mod equal;
pub mod extract;

mod answer;
mod expr;
mod normalize;

use serde::{Deserialize, Serialize};

use equal::{math_equal, Rule};
use extract::{extract_answer, Extracted};

/// The grade of one response against a gold answer; stored as the score detail of a run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MathGrade {
    /// Whether the extracted answer equals the gold one.
    pub correct: bool,
    /// The answer found in the response, if any.
    pub extracted: Option<Extracted>,
    /// The rule that decided ([`Rule::NoAnswer`] when nothing was extracted).
    pub rule: Rule,
    /// Why the rule decided as it did.
    pub detail: String,
}

/// Extracts the answer from `response` and compares it with `gold`, an answer string such as MATH500's
/// `answer` field.
///
/// ```
/// use reprolm_scoring::{grade_math, Rule};
/// let g = grade_math("\\frac{\\sqrt{3}}{3}", "<think>...</think>So $\\boxed{\\frac{1}{\\sqrt3}}$.");
/// assert!(g.correct);
/// assert_eq!(g.rule, Rule::Numeric);
/// let none = grade_math("5", "I am not sure.");
/// assert_eq!((none.correct, none.rule), (false, Rule::NoAnswer));
/// ```
pub fn grade_math(gold: &str, response: &str) -> MathGrade {
    match extract_answer(response) {
        None => MathGrade {
            correct: false,
            extracted: None,
            rule: Rule::NoAnswer,
            detail: "no boxed answer, answer phrase or math span".into(),
        },
        Some(e) => {
            let v = math_equal(gold, &e.text);
            MathGrade {
                correct: v.equal,
                extracted: Some(e),
                rule: v.rule,
                detail: v.detail,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grade_serialises_for_run_records() {
        let g = grade_math("\\frac12", "</think>so $\\boxed{0.5}$");
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v["correct"], true);
        assert_eq!(v["rule"], "numeric");
        assert_eq!(v["extracted"]["text"], "0.5");
        assert_eq!(v["extracted"]["source"], "boxed");
        assert_eq!(v["extracted"]["after_think"], true);
        let back: MathGrade = serde_json::from_value(v).unwrap();
        assert_eq!(back, g);
    }
}
