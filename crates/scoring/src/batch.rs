//! Grading many responses at once on all cores, in input order.
//!
//! Grades are independent, so rayon's indexed `par_iter().map().collect()` both spreads them over threads
//! and keeps the output in input order regardless of which thread finished first.

use rayon::prelude::*;

use crate::choice::{grade_choice, ChoiceGrade};
use crate::math::{grade_math, MathGrade};

/// [`grade_math`] for every `(gold, response)` pair; the i-th grade belongs to the i-th pair.
///
/// ```
/// use reprolm_scoring::grade_math_batch;
/// let grades = grade_math_batch(&[("2", "\\boxed{2}"), ("3", "\\boxed{4}")]);
/// assert_eq!(grades.iter().map(|g| g.correct).collect::<Vec<_>>(), [true, false]);
/// ```
pub fn grade_math_batch<G, R>(pairs: &[(G, R)]) -> Vec<MathGrade>
where
    G: AsRef<str> + Sync,
    R: AsRef<str> + Sync,
{
    pairs
        .par_iter()
        .map(|(g, r)| grade_math(g.as_ref(), r.as_ref()))
        .collect()
}

/// [`grade_choice`] for every `(gold letter, response)` pair, in input order.
///
/// ```
/// use reprolm_scoring::grade_choice_batch;
/// let grades = grade_choice_batch(&[('A', "Answer: A"), ('B', "Answer: C")]);
/// assert_eq!(grades.iter().map(|g| g.correct).collect::<Vec<_>>(), [true, false]);
/// ```
pub fn grade_choice_batch<R>(pairs: &[(char, R)]) -> Vec<ChoiceGrade>
where
    R: AsRef<str> + Sync,
{
    pairs
        .par_iter()
        .map(|(g, r)| grade_choice(*g, r.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_input_order() {
        let pairs: Vec<(String, String)> = (0..500)
            .map(|i| {
                (
                    i.to_string(),
                    format!("\\boxed{{{}}}", if i % 3 == 0 { i } else { i + 1 }),
                )
            })
            .collect();
        let grades = grade_math_batch(&pairs);
        for (i, g) in grades.iter().enumerate() {
            assert_eq!(g.correct, i % 3 == 0, "pair {i}");
            let expected = if i % 3 == 0 { i } else { i + 1 };
            assert_eq!(g.extracted.as_ref().unwrap().text, expected.to_string());
        }
        let serial: Vec<_> = pairs.iter().map(|(g, r)| grade_math(g, r)).collect();
        assert_eq!(grades, serial);
    }
}
