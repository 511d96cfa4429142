//! Synthetic multi-step integer arithmetic with worked, column-by-column solutions.
//!
//! The `arith` task exists so that reprolm has a benchmark that needs no download and a model small
//! enough to ship with the project (the embedded default model is trained on [`generate`]'s train
//! split). Problems are sums and differences of 3 to 5 terms, where a term is a number below 100 or
//! a product of such a number and one digit:
//!
//! ```text
//! What is 48 + 27 - 19 + 6 * 3?
//! ```
//!
//! The solution does one operation per line, spelled out one column at a time, so that every step a
//! model must take is a one-digit fact or a copy. That keeps the task learnable by a model of a few
//! million parameters while making responses long (100 to about 470 tokens, 250 on average), which lets
//! numerical precision change an answer: one flipped digit early on changes everything after it.
//!
//! ```text
//! Products first.
//! 6 * 3: 6 * 3 = 18, write 18. So 6 * 3 = 18.
//! Now 48 + 27 - 19 + 18.
//! 48 + 27: 8 + 7 = 15, write 5 carry 1. 4 + 2 + 1 = 7, write 7. So 48 + 27 = 75.
//! 75 - 19: 5 - 9 is negative, borrow: 15 - 9 = 6, write 6. 7 - 1 - 1 = 5, write 5. So 75 - 19 = 56.
//! 56 + 18: 6 + 8 = 14, write 4 carry 1. 5 + 1 + 1 = 7, write 7. So 56 + 18 = 74.
//! The answer is \boxed{74}.
//! ```
//!
//! Splits are disjoint by construction: a problem belongs to the test split exactly when a stable
//! hash of its canonical form falls in the test bucket, so no seed or size can make a test problem
//! appear in training data.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Which side of the train/test partition to draw problems from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The problems the embedded model is trained on (about 90% of the problem space).
    Train,
    /// Held-out problems used for evaluation (about 10% of the problem space).
    Test,
}

/// One generated problem with its exact answer and a worked solution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArithProblem {
    /// Stable id derived from the problem's content, so it names the same problem for every seed.
    pub id: String,
    /// The question as shown to the model, e.g. `What is 48 + 27 - 19 + 6 * 3?`.
    pub question: String,
    /// The exact value of the expression.
    pub answer: i64,
    /// The worked steps alone, one operation per line, without the final statement. Kept apart so a
    /// chat format can wrap them in a thinking block.
    pub reasoning: String,
    /// The full worked solution: [`ArithProblem::reasoning`] followed by
    /// `The answer is \boxed{answer}.` on its own line.
    pub solution: String,
}

/// The sign joining a term to the running total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sign {
    Plus,
    Minus,
}

/// A term of the expression: a plain number or a number times one digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    Number(i64),
    Product(i64, i64),
}

impl Term {
    fn value(self) -> i64 {
        match self {
            Term::Number(n) => n,
            Term::Product(a, b) => a * b,
        }
    }

    fn render(self) -> String {
        match self {
            Term::Number(n) => n.to_string(),
            Term::Product(a, b) => format!("{a} * {b}"),
        }
    }
}

/// Problem shape limits. Running totals stay in 0..=999 so no column algorithm meets a sign change.
const MIN_TERMS: usize = 3;
const MAX_TERMS: usize = 5;
const MAX_PRODUCTS: usize = 2;
const MAX_TOTAL: i64 = 999;
/// One problem in this many (by hash) belongs to the test split.
const TEST_BUCKETS: u64 = 10;

/// Generates `n` distinct problems of one split, reproducibly from `seed`.
///
/// The same `(split, seed, n)` always gives the same list, and a shorter list is a prefix of a longer
/// one, so growing an evaluation keeps its first problems.
///
/// ```
/// use reprolm_tasks::arith::{generate, Split};
/// let problems = generate(Split::Test, 42, 3);
/// assert_eq!(problems.len(), 3);
/// assert!(problems[0].solution.ends_with(&format!("\\boxed{{{}}}.", problems[0].answer)));
/// assert_eq!(problems, generate(Split::Test, 42, 3));
/// ```
pub fn generate(split: Split, seed: u64, n: usize) -> Vec<ArithProblem> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let Some((first, rest)) = sample_expression(&mut rng) else {
            continue;
        };
        let canonical = canonical_form(first, &rest);
        let hash = fnv1a(canonical.as_bytes());
        if split_of(hash) != split || !seen.insert(hash) {
            continue;
        }
        out.push(build_problem(first, &rest, hash));
    }
    out
}

/// The split a problem belongs to, decided by its content hash alone.
fn split_of(hash: u64) -> Split {
    // Mix the high bits in: FNV's low bits vary less on short, similar inputs.
    if (hash ^ (hash >> 32)) % TEST_BUCKETS == 0 {
        Split::Test
    } else {
        Split::Train
    }
}

/// Draws one expression, or `None` when a running total leaves 0..=999 (the caller draws again).
fn sample_expression(rng: &mut ChaCha8Rng) -> Option<(i64, Vec<(Sign, Term)>)> {
    let n_terms = rng.random_range(MIN_TERMS..=MAX_TERMS);
    let first = rng.random_range(10..=99);
    let mut total = first;
    let mut products = 0;
    let mut rest = Vec::with_capacity(n_terms - 1);
    for _ in 1..n_terms {
        let sign = if rng.random_bool(0.5) {
            Sign::Plus
        } else {
            Sign::Minus
        };
        let term = if products < MAX_PRODUCTS && rng.random_bool(0.3) {
            products += 1;
            Term::Product(rng.random_range(2..=99), rng.random_range(2..=9))
        } else {
            Term::Number(rng.random_range(1..=99))
        };
        total = match sign {
            Sign::Plus => total + term.value(),
            Sign::Minus => total - term.value(),
        };
        if !(0..=MAX_TOTAL).contains(&total) {
            return None;
        }
        rest.push((sign, term));
    }
    Some((first, rest))
}

/// The expression as written in the question, which is also what the split hash is taken over.
fn canonical_form(first: i64, rest: &[(Sign, Term)]) -> String {
    let mut s = first.to_string();
    for (sign, term) in rest {
        s.push_str(match sign {
            Sign::Plus => " + ",
            Sign::Minus => " - ",
        });
        s.push_str(&term.render());
    }
    s
}

fn build_problem(first: i64, rest: &[(Sign, Term)], hash: u64) -> ArithProblem {
    let expression = canonical_form(first, rest);
    let mut lines = Vec::new();
    let products: Vec<(i64, i64)> = rest
        .iter()
        .filter_map(|(_, t)| match t {
            Term::Product(a, b) => Some((*a, *b)),
            Term::Number(_) => None,
        })
        .collect();
    if !products.is_empty() {
        lines.push("Products first.".to_string());
        for (a, b) in products {
            lines.push(multiply_line(a, b));
        }
        let mut reduced = first.to_string();
        for (sign, term) in rest {
            reduced.push_str(match sign {
                Sign::Plus => " + ",
                Sign::Minus => " - ",
            });
            reduced.push_str(&term.value().to_string());
        }
        lines.push(format!("Now {reduced}."));
    }
    let mut total = first;
    for (sign, term) in rest {
        let v = term.value();
        match sign {
            Sign::Plus => {
                lines.push(add_line(total, v));
                total += v;
            }
            Sign::Minus => {
                lines.push(subtract_line(total, v));
                total -= v;
            }
        }
    }
    let reasoning = lines.join("\n");
    let solution = format!("{reasoning}\nThe answer is \\boxed{{{total}}}.");
    ArithProblem {
        id: format!("arith-{hash:016x}"),
        question: format!("What is {expression}?"),
        answer: total,
        reasoning,
        solution,
    }
}

/// Decimal digits, least significant first.
fn digits(mut n: i64) -> Vec<i64> {
    let mut d = vec![n % 10];
    n /= 10;
    while n > 0 {
        d.push(n % 10);
        n /= 10;
    }
    d
}

/// The solution line that adds `b` to `a` column by column, as in
/// `48 + 27: 8 + 7 = 15, write 5 carry 1. ... So 48 + 27 = 75.` The top column writes its whole
/// sum, so no carry is left dangling. Public so that a training program can write a sum with its
/// terms in the other order.
pub fn add_line(a: i64, b: i64) -> String {
    let (da, db) = (digits(a), digits(b));
    let n = da.len().max(db.len());
    let mut carry = 0;
    let mut steps = Vec::with_capacity(n);
    for i in 0..n {
        let (x, y) = (
            da.get(i).copied().unwrap_or(0),
            db.get(i).copied().unwrap_or(0),
        );
        let s = x + y + carry;
        let expr = if carry > 0 {
            format!("{x} + {y} + {carry}")
        } else {
            format!("{x} + {y}")
        };
        if i + 1 == n {
            steps.push(format!("{expr} = {s}, write {s}."));
        } else if s >= 10 {
            steps.push(format!("{expr} = {s}, write {} carry {}.", s % 10, s / 10));
        } else {
            steps.push(format!("{expr} = {s}, write {s}."));
        }
        carry = s / 10;
    }
    format!("{a} + {b}: {} So {a} + {b} = {}.", steps.join(" "), a + b)
}

/// Column subtraction of `b` from `a >= b`, borrowing from the next column.
fn subtract_line(a: i64, b: i64) -> String {
    debug_assert!(a >= b);
    let (da, db) = (digits(a), digits(b));
    let mut borrow = 0;
    let mut steps = Vec::with_capacity(da.len());
    for (i, &x) in da.iter().enumerate() {
        let y = db.get(i).copied().unwrap_or(0);
        let expr = if borrow > 0 {
            format!("{x} - {y} - 1")
        } else {
            format!("{x} - {y}")
        };
        let v = x - y - borrow;
        if v < 0 {
            let tail = if borrow > 0 { " - 1" } else { "" };
            steps.push(format!(
                "{expr} is negative, borrow: 1{x} - {y}{tail} = {}, write {}.",
                v + 10,
                v + 10
            ));
            borrow = 1;
        } else {
            steps.push(format!("{expr} = {v}, write {v}."));
            borrow = 0;
        }
    }
    format!("{a} - {b}: {} So {a} - {b} = {}.", steps.join(" "), a - b)
}

/// Multiplication by one digit, column by column; the top column writes its whole value.
fn multiply_line(a: i64, b: i64) -> String {
    let da = digits(a);
    let mut carry = 0;
    let mut steps = Vec::with_capacity(da.len());
    for (i, &x) in da.iter().enumerate() {
        let v = x * b + carry;
        let expr = if carry > 0 {
            format!("{x} * {b} + {carry}")
        } else {
            format!("{x} * {b}")
        };
        if i + 1 == da.len() || v < 10 {
            steps.push(format!(
                "{expr} = {v}, write {}.",
                if i + 1 == da.len() { v } else { v % 10 }
            ));
        } else {
            steps.push(format!("{expr} = {v}, write {} carry {}.", v % 10, v / 10));
        }
        carry = if i + 1 == da.len() { 0 } else { v / 10 };
    }
    format!("{a} * {b}: {} So {a} * {b} = {}.", steps.join(" "), a * b)
}

/// 64-bit FNV-1a: tiny, stable across platforms and releases, which `std`'s hasher is not.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evaluates `What is <expr>?` with `*` before `+`/`-`, independently of the generator.
    fn evaluate(question: &str) -> i64 {
        let expr = question
            .strip_prefix("What is ")
            .unwrap()
            .strip_suffix('?')
            .unwrap();
        let tokens: Vec<&str> = expr.split(' ').collect();
        let mut total = 0;
        let mut sign = 1;
        let mut i = 0;
        while i < tokens.len() {
            let mut term: i64 = tokens[i].parse().unwrap();
            while i + 2 < tokens.len() && tokens[i + 1] == "*" {
                term *= tokens[i + 2].parse::<i64>().unwrap();
                i += 2;
            }
            total += sign * term;
            if i + 1 < tokens.len() {
                sign = if tokens[i + 1] == "+" { 1 } else { -1 };
            }
            i += 2;
        }
        total
    }

    /// Checks every `So x op y = z.` claim in a solution against real arithmetic.
    fn check_claims(solution: &str) {
        for line in solution.lines() {
            if let Some(pos) = line.rfind("So ") {
                let claim = line[pos + 3..].strip_suffix('.').unwrap();
                let (lhs, rhs) = claim.split_once(" = ").unwrap();
                let p: Vec<&str> = lhs.split(' ').collect();
                let (a, b): (i64, i64) = (p[0].parse().unwrap(), p[2].parse().unwrap());
                let want = match p[1] {
                    "+" => a + b,
                    "-" => a - b,
                    "*" => a * b,
                    op => panic!("unknown operator {op}"),
                };
                assert_eq!(rhs.parse::<i64>().unwrap(), want, "{line}");
            }
        }
    }

    #[test]
    fn answers_are_exact_and_solutions_end_in_boxed_answer() {
        for p in generate(Split::Train, 1, 2000)
            .iter()
            .chain(&generate(Split::Test, 1, 500))
        {
            assert_eq!(p.answer, evaluate(&p.question), "{}", p.question);
            assert!(p
                .solution
                .ends_with(&format!("The answer is \\boxed{{{}}}.", p.answer)));
            assert!(p.solution.starts_with(&p.reasoning));
            check_claims(&p.solution);
            let last = p.reasoning.lines().last().unwrap();
            assert!(last.ends_with(&format!("= {}.", p.answer)), "{last}");
        }
    }

    #[test]
    fn splits_are_disjoint_for_any_seeds() {
        let train: HashSet<String> = generate(Split::Train, 7, 20_000)
            .into_iter()
            .map(|p| p.question)
            .collect();
        assert_eq!(train.len(), 20_000, "train problems are distinct");
        for seed in [7, 8, 1234] {
            for p in generate(Split::Test, seed, 2_000) {
                assert!(
                    !train.contains(&p.question),
                    "{} is in both splits",
                    p.question
                );
            }
        }
    }

    #[test]
    fn ids_name_content_and_generation_is_reproducible() {
        let a = generate(Split::Test, 3, 50);
        assert_eq!(a, generate(Split::Test, 3, 50));
        assert_eq!(a[..20], generate(Split::Test, 3, 20)[..]);
        let b = generate(Split::Test, 4, 50);
        assert_ne!(a, b, "another seed gives other problems");
        for p in a.iter().chain(&b) {
            let expr = p
                .question
                .strip_prefix("What is ")
                .unwrap()
                .strip_suffix('?')
                .unwrap();
            assert_eq!(p.id, format!("arith-{:016x}", fnv1a(expr.as_bytes())));
            assert_eq!(split_of(fnv1a(expr.as_bytes())), Split::Test);
        }
    }

    #[test]
    fn worked_example_matches_module_doc() {
        let rest = [
            (Sign::Plus, Term::Number(27)),
            (Sign::Minus, Term::Number(19)),
            (Sign::Plus, Term::Product(6, 3)),
        ];
        let p = build_problem(48, &rest, 0);
        assert_eq!(p.question, "What is 48 + 27 - 19 + 6 * 3?");
        assert_eq!(
            p.solution,
            "Products first.\n\
             6 * 3: 6 * 3 = 18, write 18. So 6 * 3 = 18.\n\
             Now 48 + 27 - 19 + 18.\n\
             48 + 27: 8 + 7 = 15, write 5 carry 1. 4 + 2 + 1 = 7, write 7. So 48 + 27 = 75.\n\
             75 - 19: 5 - 9 is negative, borrow: 15 - 9 = 6, write 6. 7 - 1 - 1 = 5, write 5. So 75 - 19 = 56.\n\
             56 + 18: 6 + 8 = 14, write 4 carry 1. 5 + 1 + 1 = 7, write 7. So 56 + 18 = 74.\n\
             The answer is \\boxed{74}."
        );
    }

    #[test]
    fn column_steps_cover_carries_borrows_and_leading_zeros() {
        assert_eq!(
            add_line(975, 48),
            "975 + 48: 5 + 8 = 13, write 3 carry 1. 7 + 4 + 1 = 12, write 2 carry 1. \
             9 + 0 + 1 = 10, write 10. So 975 + 48 = 1023."
        );
        assert_eq!(
            subtract_line(105, 98),
            "105 - 98: 5 - 8 is negative, borrow: 15 - 8 = 7, write 7. \
             0 - 9 - 1 is negative, borrow: 10 - 9 - 1 = 0, write 0. 1 - 0 - 1 = 0, write 0. \
             So 105 - 98 = 7."
        );
        assert_eq!(
            multiply_line(87, 9),
            "87 * 9: 7 * 9 = 63, write 3 carry 6. 8 * 9 + 6 = 78, write 78. So 87 * 9 = 783."
        );
        assert_eq!(
            multiply_line(21, 3),
            "21 * 3: 1 * 3 = 3, write 3. 2 * 3 = 6, write 6. So 21 * 3 = 63."
        );
    }
}
