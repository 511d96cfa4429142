//! reprolm-scoring: grading of model responses.
//!
//! Math answers are extracted from a response (last `\boxed{}` after `</think>`, answer phrases, math
//! spans), normalised, parsed into a shape (number, expression, equation, tuple, interval, set, matrix,
//! text) and compared by one named [`Rule`] per shape, with expressions evaluated in complex `f64` at
//! seeded random points. Multiple-choice letters are extracted for GPQA. Batch functions grade on all
//! cores and return grades in input order.
//!
//! LiveCodeBench responses run in [`sandbox`]: Python in fresh namespaces as an unprivileged user.
//!
//! Nothing here panics or hangs on hostile input: answer length, nesting depth, list sizes and `\pm`
//! expansions are bounded, and a grade that cannot be decided is "not equal" with a reason.
//!
//! ```
//! use reprolm_scoring::{grade_math, math_equal, Rule};
//! let g = grade_math("\\left( 3, \\frac{\\pi}{2} \\right)", "... so $\\boxed{(3, \\pi/2)}$");
//! assert!(g.correct);
//! assert_eq!(g.rule, Rule::Tuple);
//! assert_eq!(math_equal("x^2-1", "(x-1)(x+1)").rule, Rule::RandomPoints);
//! ```
#![deny(missing_docs)]

mod batch;
mod choice;
mod error;
mod labelled;
mod math;
pub mod sandbox;

pub use batch::{grade_choice_batch, grade_math_batch};
pub use choice::{extract_choice, grade_choice, ChoiceGrade, ChoiceSource, ExtractedChoice};
pub use error::{Error, Result};
pub use labelled::{read_labelled_pairs, LabelledPair};
pub use math::equal::{
    math_equal, math_equal_with, Equivalence, Rule, MAX_ANSWER_LEN, RANDOM_POINTS, REL_TOL,
};
pub use math::extract::{extract_answer, extract_answer_with, ExtractSource, Extracted};
pub use math::options::{DecimalComma, MathOptions};
pub use math::{grade_math, grade_math_with, MathGrade};
