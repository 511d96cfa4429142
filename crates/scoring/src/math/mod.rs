//! Grading of math answers: extraction from a response, normalisation, parsing, equivalence.
//!
//! Modules, in the order a grade uses them: [`extract`] finds the answer in the response, `normalize`
//! removes notation that does not change the value, `answer` reads the answer's shape, `expr` parses and
//! evaluates expressions, and [`equal`] decides with one named rule per shape.
//!
//! # Policies
//!
//! Where graders differ, this one decides as follows (Math-Verify and the hendrycks MATH `is_equiv`
//! used by lm-evaluation-harness for comparison):
//!
//! - **Which answer**: the last `\boxed{}` after `</think>`, then an answer phrase, then a
//!   concluding sentence, then the last math span.
//!   - Boxes (or `$...$` spans) listed together, with only commas, `and`, `or`, `;`, spacing or
//!     math delimiters between them, are one answer (`\boxed{3}, \boxed{5} and \boxed{7}` is `3,
//!     5, 7`; `$21, 16$ or $11$` is `21, 16, 11`), as in Math-Verify. Two forms of one value
//!     joined by "or" (`\boxed{1.5}, or \boxed{\frac32}`) are a list that restates that value,
//!     and a list whose items all have one value equals that value; two different values joined
//!     by "or" (a hedge) equal neither. (Before issue #30 the last of the two was taken, which
//!     scored a hedge whose second guess was right.)
//!   - Boxes that each follow their own label are one labelled answer (`y_1 = \boxed{a}` and `y_2
//!     = \boxed{b}` is `y_1 = a, y_2 = b`). Boxes joined by "and" after at most three words that
//!     name a unit or a part (`\boxed{1} papers and \boxed{2} bins`, `\boxed{(3, 3)} \text{ for
//!     part (a) and } \boxed{(1, 1)}`) are listed too, as in Math-Verify, unless a word judges
//!     the first (`\boxed{3} is too small and \boxed{5}` is 5). Boxes with other words between
//!     them (`\boxed{4}, so adding two we get \boxed{6}`, `\boxed{35} ++ \boxed{4}`) are
//!     intermediate results: the last is taken (Math-Verify takes them all).
//!   - A "final answer is" phrase after the last box wins over the box, which was then a step
//!     towards it. A phrase followed by a sentence in words that holds exactly one number
//!     (`Final Answer: Jane started growing Sphere 3 hours ago.`) states that number. A phrase
//!     followed by a quoted answer (`The final answer is "$12$ and $13$".`) states what the
//!     quotes enclose, and by `$...$` spans listed together (`$3$ and $-3$`) states them all.
//!   - With no box or answer phrase, a concluding sentence after the last math span, opened by
//!     "Therefore", "Thus", "Hence" or "So", in words with exactly one number and no digit after
//!     it (`Therefore, the probability that Alice wins is 2/3.`), states that number: the
//!     sentence is the response's own answer phrase (Math-Verify finds these numbers with its
//!     last-number search).
//!   - A response with none of these has no answer: there is no "last number in the text"
//!     fallback unless [`MathOptions::last_number_fallback`] asks for it (Math-Verify has one;
//!     `is_equiv` has no extraction at all); that number must stand as a word of the text (`is
//!     2/3.`, `1,000.99€`), not sit inside LaTeX (`\frac{10}{9}` states no 9).
//!   - Math in one span may run over several lines (`$ \n 9 \n $`, `\( \n 9 \n \)` is 9), as
//!     LaTeX allows; Math-Verify does not read an inline span across lines.
//! - **A box never closed**: in a response, a last `\boxed{` whose brace never closes was cut off
//!   by the end of the generation and is not an answer (an earlier box, a phrase or a span is
//!   taken instead); in an answer string given to [`equal::math_equal`] (a gold answer that lost
//!   its `}`), it holds the rest of the string, and the verdict's detail says it was read to the
//!   end.
//! - **Lists and sets**: `6 and 8`, `6 or 8`, `6; 8` and `{6, 8}` are the list `6, 8`. A list compares as
//!   a set: order and repetition do not matter (`is_equiv` compares strings, so order matters there).
//!   A tuple `(1, 3)` is not the set `{1, 3}` (Math-Verify accepts this pair). Boxes with anything
//!   but separators between them (`\boxed{35} ++ \boxed{4}`) are not listed together either.
//! - **Labels**: an equation whose left side only names the answer (`x = 3`, `AB = 4`, `f(x) = 1`,
//!   `|AB| = 1`, `\frac{NO}{BO} = ...`, `(p, q) = (3, 2)`, `V_1 : V_2 = 11 : 21`) equals its right side;
//!   `2x = 6` is an equation, not a label. An equation with no variable on either side is a
//!   computation and states its right side (`2 + 3 = 5` is 5), as a chain `x = 2 + 3 = 5` does,
//!   also when the two sides differ (`\frac12 = \frac{10}{9}` states `\frac{10}{9}`, as in
//!   Math-Verify, which takes the last side of any equation); the verdict's detail says whether
//!   they agreed. `7 = 11a + c` has variables and stays an equation. `is_equiv` compares
//!   strings, so none of these is a number there.
//! - **Numbers**: `1 000` and `1,000` are a thousand, `1 1/2` and `1\frac12` one and a half; values
//!   agree within a relative 1e-8, so `1.732` is not `\sqrt 3` (Math-Verify rounds to 6 digits by
//!   default).
//! - **Decimal commas**: `1000,99`, `1,5` or `0,111` (two digit groups, one comma, no space, not a
//!   thousands grouping) is read as a decimal only against a single number, the one comparison in
//!   which the list reading could never agree: `1,5` equals `1.5` and also the list `5, 1`, while
//!   `1, 5` (with a space) and `1,5,0` stay lists. Math-Verify reads such commas as decimals
//!   everywhere; `is_equiv` compares strings, so `1,5` is neither `1.5` nor `5,1` there.
//!   [`options::DecimalComma::Never`] keeps every comma a list separator.
//! - **Degrees** inside a trigonometric function are a unit of its argument (`\\sin(90^\\circ - x)` is
//!   `\\cos x`); elsewhere the degree sign is dropped (`30^\\circ` is `30`).
//! - **Inequalities** in one variable are the interval of their solutions: `x \le 0`, `0 \ge x` and
//!   `(-\infty, 0]` are one answer, and so is an inequality linear in its variable, solved for it
//!   (`-3x \ge 0`, `2x + 1 \le 1`); the variable's name is not compared. A chain around a named
//!   quantity or its absolute value is that quantity's range (`0 < f(x) < 1`, `1 \le |z| \le 2`). A non-linear one (`x^2 < 1`)
//!   is not solved (`is_equiv` compares strings, so none of these pairs match there). This holds
//!   whichever side is the gold: Math-Verify compares a gold `x \in [-2, 7]` with a predicted
//!   `-2 \le x \le 7` only under `allow_set_relation_comp`, and the gold inequality with the
//!   predicted interval always. A range of `|z|` with a positive lower bound is that quantity's
//!   range against one interval (`1 \le |z| \le 2` is `[1, 2]`) and is solved for a real `z`
//!   against a union (`[-2, -1] \cup [1, 2]`), the one reading under which each comparison can
//!   hold; the verdict's detail says when it was solved. Math-Verify solves it for `z` only;
//!   `is_equiv` compares strings.
//! - **Spelling**: `>=`, `<=`, `!=` are `\ge`, `\le`, `\ne`; `\approx` and `≈` are `=` when they give
//!   the value (which must still agree to 1e-8, so `\approx 1.732` is not `\sqrt 3`) and are dropped
//!   with what follows when a value came before (`x = 1/3 \approx 0.33` is `x = 1/3`); `percent`, `percentage` and `pct`
//!   after a number are `\%`; `\mathrm{e}` is Euler's number; a backslash doubled by escaping (`\\frac`) is one.
//! - **Units** after a number are dropped (`12 inches`, `5\text{ cm}`); glued to it only when the
//!   word has four letters or more (`10weeks`), since `2m` may be a product with a variable.
//! - **Sums and products**: `\sum_{k=1}^{10} k^2` (and `\prod`) with bounds that are integers is
//!   evaluated: 385; the summand is the product after the limits (`\sum_{k=1}^{3} k + 1` is 7), and
//!   at most 100 000 terms are summed in all, past which, as for an infinite series, there is no
//!   value. A sum with a symbolic bound (`F_n = \sum_{k=0}^{n-1} F_k F_{n-k-1}`) is compared by its
//!   bounds and summand, not summed: the summand in another order or with the index renamed is
//!   the same sum, another bound is not, and its closed form (`\frac{n(n+1)}{2}` for
//!   `\sum_{k=1}^{n} k`) is not recognised, which the verdict's detail says. Math-Verify hands sums
//!   to SymPy, which may find closed forms; `is_equiv` compares strings.
//! - **Matrices**: a sum or difference of matrices with optional numeric factors
//!   (`\begin{pmatrix}1\\2\end{pmatrix} + 2\begin{pmatrix}3\\4\end{pmatrix}`), each term possibly a
//!   product of matrices written side by side or with `\cdot` / `\times` (up to four), is the matrix
//!   it equals; matrices of different shapes do not add, nor multiply unless they conform.

pub mod equal;
pub mod extract;
pub mod options;

mod answer;
mod expr;
mod normalize;

use serde::{Deserialize, Serialize};

use equal::{math_equal_with, Rule};
use extract::{extract_answer_with, Extracted};
use options::MathOptions;

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
    grade_math_with(gold, response, &MathOptions::default())
}

/// [`grade_math`] under other [`MathOptions`].
pub fn grade_math_with(gold: &str, response: &str, opts: &MathOptions) -> MathGrade {
    match extract_answer_with(response, opts) {
        None => MathGrade {
            correct: false,
            extracted: None,
            rule: Rule::NoAnswer,
            detail: "no boxed answer, answer phrase or math span".into(),
        },
        Some(e) => {
            let v = math_equal_with(gold, &e.text, opts);
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
