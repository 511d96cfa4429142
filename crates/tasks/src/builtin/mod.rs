//! The built-in tasks, with the prompts of the reference implementation of arXiv 2506.09501 (derived
//! from SkyThought's evaluation handlers), so that numbers compare with the paper's.

pub mod aime;
pub mod arith;
pub mod gpqa;
pub mod livecodebench;
pub mod math500;

/// `Return your final response within \boxed{}. {problem}`: the SkyThought MATH/AIME template.
pub(crate) fn boxed_prefix(problem: &str) -> String {
    format!("Return your final response within \\boxed{{}}. {problem}")
}
