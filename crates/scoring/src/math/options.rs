//! The grading choices where math graders differ; the defaults are this grader's policies (see
//! the [module documentation](crate::math)).

use serde::{Deserialize, Serialize};

/// Choices where math graders differ; the defaults are this grader's policies (see the
/// documentation of the `math` module).
///
/// ```
/// use reprolm_scoring::{DecimalComma, MathOptions};
/// let strict = MathOptions { decimal_comma: DecimalComma::Never, ..Default::default() };
/// assert!(!strict.last_number_fallback);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MathOptions {
    /// When the response states no answer with a box or an answer phrase, grade the last number in
    /// it if nothing else comes after it (a math span that ends before it, or none), as Math-Verify
    /// does. Off by default: a number in a sentence is not a stated answer.
    pub last_number_fallback: bool,
    /// When `1,5` is read as the decimal 1.5 rather than the list `1, 5`.
    #[serde(default)]
    pub decimal_comma: DecimalComma,
}

/// When a comma between digits is read as a decimal point.
///
/// A comma followed by exactly three digits after a group of one to three (`1,000`, `12,345`) is a
/// thousands separator in every mode.
///
/// ```
/// use reprolm_scoring::{math_equal_with, DecimalComma, MathOptions};
/// assert!(math_equal_with("1.5", "1,5", &MathOptions::default()).equal);
/// let never = MathOptions { decimal_comma: DecimalComma::Never, ..Default::default() };
/// assert!(!math_equal_with("1.5", "1,5", &never).equal);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecimalComma {
    /// Two digit groups joined by one comma with no space (`1000,99`, `0,111`) are a decimal when
    /// the other answer is a single number, the one reading under which they can agree; anywhere
    /// else they are a list. Math-Verify reads such a comma as a decimal point everywhere.
    #[default]
    AgainstNumber,
    /// A comma always separates list items (`1,5` is `1, 5`), as `is_equiv`'s string comparison
    /// in effect does.
    Never,
}
