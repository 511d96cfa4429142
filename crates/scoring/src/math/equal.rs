//! Equivalence of a gold answer and a predicted one, with the rule that decided.
//!
//! Each rule is one small function over parsed [`Answer`]s. [`math_equal`] normalises both strings, tries
//! the cheap string rule, parses both into shapes, and dispatches on the pair of shapes; the rule that
//! decided, equal or not, is reported so a surprising grade can be traced to one function.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;

use serde::{Deserialize, Serialize};

use super::answer::{parse_answer, solve_abs_range, Answer};
use super::expr::{Expr, C};
use super::normalize::{normalize, unclosed_box};
use super::options::{DecimalComma, MathOptions};

/// Longest answer string compared. Real answers are a few dozen characters; a longer "answer" is an
/// extraction gone wrong, and rejecting it keeps every comparison bounded in time.
pub const MAX_ANSWER_LEN: usize = 2_000;

/// Relative tolerance for numeric values. Tight enough that `0.33` is not `\frac13`, loose enough for the
/// rounding of `\sqrt`, `\pi` and powers evaluated in `f64`.
pub const REL_TOL: f64 = 1e-8;

/// Points at which expressions with variables are evaluated.
pub const RANDOM_POINTS: usize = 8;

/// Seed of the points, fixed so that every run grades alike.
pub const POINT_SEED: u64 = 0x5EED_2025;

/// The rule that decided an equivalence. Serialised in snake case into score details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The normalised strings are identical.
    StringMatch,
    /// Both are numbers (integers, decimals, fractions, radicals, `\pi`, complex) with equal values.
    Numeric,
    /// A percentage against a number: `50\%` equals both `50` and `0.5`.
    Percent,
    /// Expressions with variables, equal at seeded random points.
    RandomPoints,
    /// Two equations with the same solutions: `lhs - rhs` proportional on both sides.
    Equation,
    /// `x = 3` against `3`: a variable named on one side only.
    EquationRhs,
    /// Tuples (points, vectors) compared in order.
    Tuple,
    /// Intervals: endpoints and open/closed brackets.
    Interval,
    /// Sets, unordered lists of solutions, `\pm` expansions and unions, compared as multisets.
    Set,
    /// Matrices and column vectors, element by element.
    Matrix,
    /// Numbers with a base subscript (`204_5`) against the same digits.
    BaseSubscript,
    /// Words (`\text{Evelyn}`), case-insensitive.
    Text,
    /// Multiple-choice letters: `\text{(B)}` against `B`.
    ChoiceLetter,
    /// The answers have different shapes (a tuple against a number, an interval against a set).
    ShapeMismatch,
    /// An answer has no finite value (`\frac{1}{0}`, an overflow) and so equals nothing.
    NotFinite,
    /// An answer could not be parsed and the strings differ.
    Unparsable,
    /// An answer was rejected before parsing (too long, empty).
    Rejected,
    /// The response had no answer to extract.
    NoAnswer,
}

/// The verdict of [`math_equal`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Equivalence {
    /// Whether the answers are the same.
    pub equal: bool,
    /// The rule that decided.
    pub rule: Rule,
    /// A short human explanation: normalised forms, the element or point that differed, parse errors.
    pub detail: String,
}

impl Equivalence {
    fn new(equal: bool, rule: Rule, detail: impl Into<String>) -> Self {
        Equivalence {
            equal,
            rule,
            detail: detail.into(),
        }
    }
}

/// Decides whether `pred` states the same answer as `gold`.
///
/// Both are answer strings (the content of a `\boxed{}`), not whole responses; see
/// [`grade_math`](crate::grade_math) for those. Never panics and runs in time bounded by
/// [`MAX_ANSWER_LEN`].
///
/// ```
/// use reprolm_scoring::{math_equal, Rule};
/// let v = math_equal("\\frac{1}{2}", "0.5");
/// assert!(v.equal);
/// assert_eq!(v.rule, Rule::Numeric);
/// assert!(!math_equal("(3,4]", "(3,4)").equal);
/// ```
pub fn math_equal(gold: &str, pred: &str) -> Equivalence {
    math_equal_with(gold, pred, &MathOptions::default())
}

/// [`math_equal`] under other [`MathOptions`] (only [`MathOptions::decimal_comma`] matters here).
///
/// ```
/// use reprolm_scoring::{math_equal_with, DecimalComma, MathOptions};
/// let v = math_equal_with("1000.99", "1000,99", &MathOptions::default());
/// assert!(v.equal);
/// assert!(v.detail.contains("decimal comma"));
/// ```
pub fn math_equal_with(gold: &str, pred: &str, opts: &MathOptions) -> Equivalence {
    let mut v = math_equal_of(gold, pred, opts);
    for (name, s) in [("gold", gold), ("prediction", pred)] {
        if s.len() <= MAX_ANSWER_LEN && unclosed_box(s) {
            v.detail.push_str(&format!(
                " ({name}'s `\\boxed{{` is never closed: read to the end)"
            ));
        }
    }
    v
}

fn math_equal_of(gold: &str, pred: &str, opts: &MathOptions) -> Equivalence {
    for (name, s) in [("gold", gold), ("prediction", pred)] {
        if s.len() > MAX_ANSWER_LEN {
            return Equivalence::new(
                false,
                Rule::Rejected,
                format!("{name} longer than {MAX_ANSWER_LEN} bytes"),
            );
        }
    }
    let g = normalize(gold);
    let p = normalize(pred);
    if g.is_empty() || p.is_empty() {
        return Equivalence::new(false, Rule::Rejected, "empty answer after normalisation");
    }
    let ga = parse_answer(&g, 0);
    let pa = parse_answer(&p, 0);
    if let Some(v) = string_match(&g, &p, ga.as_ref().ok()) {
        return v;
    }
    match (ga, pa) {
        (Ok(a), Ok(b)) => {
            let mut v = compare(&a, &b);
            if !v.equal && opts.decimal_comma == DecimalComma::AgainstNumber {
                if let Some(d) = decimal_comma_reading(&g, &a, &p, &b) {
                    return d;
                }
            }
            if !v.equal {
                if let Some(d) = abs_range_solved(&g, &a, &p, &b) {
                    return d;
                }
            }
            if v.detail.is_empty() {
                v.detail = format!("`{}` vs `{}`", clip(&g), clip(&p));
            }
            v
        }
        (Err(e), _) => {
            Equivalence::new(false, Rule::Unparsable, format!("gold `{}`: {e}", clip(&g)))
        }
        (_, Err(e)) => Equivalence::new(
            false,
            Rule::Unparsable,
            format!("prediction `{}`: {e}", clip(&p)),
        ),
    }
}

/// `1000,99` against `1000.99`: two digit groups joined by one comma, read as a list, cannot equal a
/// single number, so the comma is read as a decimal point instead ([`DecimalComma::AgainstNumber`]).
/// `None` when neither side is such a pair against a number.
fn decimal_comma_reading(g: &str, ga: &Answer, p: &str, pa: &Answer) -> Option<Equivalence> {
    static PAIR: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(-?\d+),(\d+)$").expect("valid regex"));
    let (s, number) = match (ga, pa) {
        (Answer::Unordered(_), Answer::Expr(n)) => (g, n),
        (Answer::Expr(n), Answer::Unordered(_)) => (p, n),
        _ => return None,
    };
    let caps = PAIR.captures(s)?;
    let decimal = format!("{}.{}", &caps[1], &caps[2]);
    let Ok(Answer::Expr(read)) = parse_answer(&decimal, 0) else {
        return None;
    };
    let v = numeric(&read, number);
    Some(Equivalence::new(
        v.equal,
        v.rule,
        format!("`{s}` read with a decimal comma: {}", v.detail),
    ))
}

/// `1 \le |z| \le 2` against a union of intervals: the chain, read as the range `[1, 2]` of `|z|`,
/// cannot equal a union, so it is solved for `z`, `[-2, -1] \cup [1, 2]` ([`solve_abs_range`]).
/// `None` when neither side is such a chain against a set of intervals.
fn abs_range_solved(g: &str, ga: &Answer, p: &str, pa: &Answer) -> Option<Equivalence> {
    let (chain, other) = match (ga, pa) {
        (Answer::Ordered { .. }, Answer::Unordered(_)) => (g, pa),
        (Answer::Unordered(_), Answer::Ordered { .. }) => (p, ga),
        _ => return None,
    };
    let solved = solve_abs_range(chain)?;
    let v = compare(&solved, other);
    Some(Equivalence::new(
        v.equal,
        v.rule,
        format!("`{chain}` solved for its variable: {}", v.detail),
    ))
}

/// Rule [`Rule::StringMatch`]: identical after normalisation and with spaces removed, unless the answer is
/// undefined (`\frac{1}{0}` is not an answer even when both sides write it) or has unbalanced braces.
pub(crate) fn string_match(g: &str, p: &str, parsed: Option<&Answer>) -> Option<Equivalence> {
    if squash_spaces(g) != squash_spaces(p) || !braces_balanced(g) {
        return None;
    }
    if let Some(a) = parsed {
        if let Some(why) = undefined(a) {
            return Some(Equivalence::new(false, Rule::NotFinite, why));
        }
    }
    Some(Equivalence::new(
        true,
        Rule::StringMatch,
        format!("`{}`", clip(g)),
    ))
}

/// At most 60 characters of an answer, for details that end up in run records.
fn clip(s: &str) -> String {
    if s.chars().count() <= 60 {
        return s.to_owned();
    }
    s.chars().take(57).chain("...".chars()).collect()
}

/// Removes whitespace except between two digits: `x + 1` is `x+1`, but `2 3` (a product) is not `23`.
fn squash_spaces(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            let prev_digit = out.as_bytes().last().is_some_and(u8::is_ascii_digit);
            let next_digit = b[i + c.len_utf8()..]
                .iter()
                .find(|x| !x.is_ascii_whitespace())
                .is_some_and(u8::is_ascii_digit);
            if !(prev_digit && next_digit) || out.ends_with(' ') {
                continue;
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

fn braces_balanced(s: &str) -> bool {
    let mut depth = 0i64;
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
        i += 1;
    }
    depth == 0
}

/// Why an answer has no value, if it has none (checked on a constant expression only).
fn undefined(a: &Answer) -> Option<String> {
    match a {
        Answer::Expr(e) | Answer::Percent(e) => {
            let mut vars = BTreeSet::new();
            e.vars(&mut vars);
            if !vars.is_empty() {
                return None;
            }
            let v = e.eval(&[]);
            (v.is_nan() || (!v.is_finite() && !e.has_infinity()))
                .then(|| "no finite value".to_owned())
        }
        _ => None,
    }
}

/// Dispatches on the pair of shapes.
pub(crate) fn compare(a: &Answer, b: &Answer) -> Equivalence {
    use Answer as A;
    match (a, b) {
        (A::Expr(x), A::Expr(y)) => compare_exprs(x, y),
        (A::Percent(x), A::Percent(y)) => compare_exprs(x, y),
        (A::Percent(x), A::Expr(y)) | (A::Expr(y), A::Percent(x)) => percent(x, y),
        (A::Text(x), A::Text(y)) => text(x, y),
        (A::Choice(x), A::Choice(y)) => choice_letter(*x, *y),
        (
            A::Based {
                digits: d1,
                base: b1,
            },
            A::Based {
                digits: d2,
                base: b2,
            },
        ) => base_subscript(d1, Some(b1), d2, Some(b2)),
        (A::Based { digits, base }, A::Expr(e)) | (A::Expr(e), A::Based { digits, base }) => {
            based_vs_number(digits, base, e)
        }
        (A::Equation(l1, r1), A::Equation(l2, r2)) => equation(l1, r1, l2, r2),
        (A::Equation(l, r), other) | (other, A::Equation(l, r)) => equation_rhs(l, r, other),
        (
            A::Ordered {
                open: o1,
                close: c1,
                items: i1,
            },
            A::Ordered {
                open: o2,
                close: c2,
                items: i2,
            },
        ) => ordered((*o1, *c1), i1, (*o2, *c2), i2),
        (A::Unordered(x), A::Unordered(y)) => set(x, y),
        (A::Matrix(x), A::Matrix(y)) => matrix(x, y),
        (
            A::Matrix(m),
            A::Ordered {
                open: b'(',
                close: b')',
                items,
            },
        )
        | (
            A::Ordered {
                open: b'(',
                close: b')',
                items,
            },
            A::Matrix(m),
        ) => vector_vs_tuple(m, items),
        (A::Unordered(items), other) if restates_one_value(items) => restated(items, other),
        (other, A::Unordered(items)) if restates_one_value(items) => restated(items, other),
        _ => Equivalence::new(
            false,
            Rule::ShapeMismatch,
            format!("{} vs {}", shape_name(a), shape_name(b)),
        ),
    }
}

/// Whether a list holds one value written several ways (`1.5, \frac32`, joined by "or" in a
/// response): two or more items, each equal to the first.
fn restates_one_value(items: &[Answer]) -> bool {
    items.len() >= 2 && items[1..].iter().all(|x| compare(&items[0], x).equal)
}

/// A list that restates one value against an answer of another shape: compared as that value.
fn restated(items: &[Answer], other: &Answer) -> Equivalence {
    let v = compare(&items[0], other);
    Equivalence::new(
        v.equal,
        v.rule,
        format!("a list of {} forms of one value: {}", items.len(), v.detail),
    )
}

fn shape_name(a: &Answer) -> &'static str {
    match a {
        Answer::Expr(_) => "expression",
        Answer::Percent(_) => "percentage",
        Answer::Text(_) => "text",
        Answer::Choice(_) => "choice letter",
        Answer::Based { .. } => "number in a base",
        Answer::Equation(..) => "equation",
        Answer::Ordered { .. } => "tuple or interval",
        Answer::Unordered(_) => "set or list",
        Answer::Matrix(_) => "matrix",
    }
}

/// Whether two values agree to [`REL_TOL`]; infinities agree with the same infinity.
pub(crate) fn values_close(a: C, b: C) -> bool {
    if !a.is_finite() || !b.is_finite() {
        return a == b;
    }
    // Two integers below 2^53 are exact in f64, and rounding cannot carry one integer onto another:
    // compare them exactly, or 11111111100 would "equal" 11111111101 within the relative tolerance.
    let exact_int =
        |c: C| c.im == 0.0 && c.re.fract() == 0.0 && c.re.abs() < 9_007_199_254_740_992.0;
    if exact_int(a) && exact_int(b) {
        return a.re == b.re;
    }
    let diff = (a.re - b.re).hypot(a.im - b.im);
    diff <= REL_TOL * a.abs().max(b.abs()) || diff <= 1e-12
}

/// Rules [`Rule::Numeric`] and [`Rule::RandomPoints`]: constant expressions by value; expressions with
/// variables at [`RANDOM_POINTS`] seeded points.
pub(crate) fn compare_exprs(x: &Expr, y: &Expr) -> Equivalence {
    let mut vars = BTreeSet::new();
    x.vars(&mut vars);
    y.vars(&mut vars);
    if vars.is_empty() {
        return numeric(x, y);
    }
    random_points(x, y, &vars)
}

/// Rule [`Rule::Numeric`].
pub(crate) fn numeric(x: &Expr, y: &Expr) -> Equivalence {
    let (a, b) = (x.eval(&[]), y.eval(&[]));
    for (name, v, e) in [("gold", a, x), ("prediction", b, y)] {
        if v.is_nan() || (!v.is_finite() && !e.has_infinity()) {
            return Equivalence::new(
                false,
                Rule::NotFinite,
                format!("{name} has no finite value"),
            );
        }
    }
    let equal = values_close(a, b);
    Equivalence::new(
        equal,
        Rule::Numeric,
        format!("{} {} {}", show(a), if equal { "=" } else { "!=" }, show(b)),
    )
}

fn show(c: C) -> String {
    if c.im == 0.0 {
        format!("{}", c.re)
    } else {
        format!("{}{:+}i", c.re, c.im)
    }
}

/// Deterministic points: splitmix64 from [`POINT_SEED`], one value per variable in `[0.5, 3.0]`. Positive
/// values away from 0 and 1 keep `\sqrt{x^2} = x` and logarithms on the principal branch.
pub(crate) fn points(vars: &BTreeSet<String>) -> Vec<Vec<(String, C)>> {
    let mut state = POINT_SEED;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        0.5 + 2.5 * ((z >> 11) as f64 / (1u64 << 53) as f64)
    };
    (0..RANDOM_POINTS)
        .map(|_| vars.iter().map(|v| (v.clone(), C::real(next()))).collect())
        .collect()
}

/// Rule [`Rule::RandomPoints`]: equal at every point where both are defined, and defined at three or more.
pub(crate) fn random_points(x: &Expr, y: &Expr, vars: &BTreeSet<String>) -> Equivalence {
    with_series_note(random_points_of(x, y, vars), &[x, y])
}

/// The detail says so when a sum with a symbolic bound took part: such sums are compared by their
/// bounds and summand, not summed, so a closed form of one is not recognised.
fn with_series_note(mut v: Equivalence, exprs: &[&Expr]) -> Equivalence {
    if exprs.iter().any(|e| e.has_symbolic_series()) {
        v.detail.push_str(
            " (a sum with a symbolic bound is compared by its bounds and summand, not summed)",
        );
    }
    v
}

fn random_points_of(x: &Expr, y: &Expr, vars: &BTreeSet<String>) -> Equivalence {
    let mut defined = 0;
    for env in points(vars) {
        let (a, b) = (x.eval(&env), y.eval(&env));
        if !a.is_finite() || !b.is_finite() {
            // Outside one side's domain (or a pole): the point says nothing.
            continue;
        }
        if !values_close(a, b) {
            let at = env
                .iter()
                .map(|(n, v)| format!("{n}={:.4}", v.re))
                .collect::<Vec<_>>()
                .join(", ");
            return Equivalence::new(
                false,
                Rule::RandomPoints,
                format!("at {at}: {} != {}", show(a), show(b)),
            );
        }
        defined += 1;
    }
    if defined < 3 {
        return Equivalence::new(
            false,
            Rule::NotFinite,
            format!("defined at only {defined} of {RANDOM_POINTS} points"),
        );
    }
    let names = vars.iter().cloned().collect::<Vec<_>>().join(", ");
    Equivalence::new(
        true,
        Rule::RandomPoints,
        format!("equal at {defined} points in ({names})"),
    )
}

/// Rule [`Rule::Percent`]: `p\%` equals `p` and `p/100`, since answers drop or convert the sign.
pub(crate) fn percent(pct: &Expr, number: &Expr) -> Equivalence {
    let direct = compare_exprs(pct, number);
    if direct.equal || direct.rule == Rule::NotFinite {
        return Equivalence {
            rule: if direct.equal {
                Rule::Percent
            } else {
                direct.rule
            },
            ..direct
        };
    }
    let hundredth = Expr::Div(Box::new(pct.clone()), Box::new(Expr::Num(100.0)));
    let v = compare_exprs(&hundredth, number);
    Equivalence::new(
        v.equal,
        Rule::Percent,
        format!("as a number and as a hundredth: {}", v.detail),
    )
}

/// Rule [`Rule::Text`].
pub(crate) fn text(x: &str, y: &str) -> Equivalence {
    let equal = x.eq_ignore_ascii_case(y);
    Equivalence::new(equal, Rule::Text, format!("`{x}` vs `{y}`"))
}

/// Rule [`Rule::ChoiceLetter`].
pub(crate) fn choice_letter(x: char, y: char) -> Equivalence {
    Equivalence::new(x == y, Rule::ChoiceLetter, format!("({x}) vs ({y})"))
}

/// Rule [`Rule::BaseSubscript`]: the digits must match; a missing base is read as the asked-for one.
pub(crate) fn base_subscript(
    d1: &str,
    b1: Option<&str>,
    d2: &str,
    b2: Option<&str>,
) -> Equivalence {
    let digits_equal = d1.trim_start_matches('0') == d2.trim_start_matches('0');
    let bases_equal = match (b1, b2) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    Equivalence::new(
        digits_equal && bases_equal,
        Rule::BaseSubscript,
        format!("{d1}_{} vs {d2}_{}", b1.unwrap_or("?"), b2.unwrap_or("?")),
    )
}

fn based_vs_number(digits: &str, base: &str, e: &Expr) -> Equivalence {
    match e {
        Expr::Num(v) if v.fract() == 0.0 && *v >= 0.0 && *v < 1e15 => {
            base_subscript(digits, Some(base), &format!("{}", *v as u64), None)
        }
        _ => Equivalence::new(
            false,
            Rule::BaseSubscript,
            format!("{digits}_{base} vs a non-integer"),
        ),
    }
}

/// Rule [`Rule::Equation`]: `l1 - r1` and `l2 - r2` are proportional at the random points, so `y = 2x+3`
/// equals `2x - y + 3 = 0`.
pub(crate) fn equation(l1: &Expr, r1: &Expr, l2: &Expr, r2: &Expr) -> Equivalence {
    with_series_note(equation_of(l1, r1, l2, r2), &[l1, r1, l2, r2])
}

fn equation_of(l1: &Expr, r1: &Expr, l2: &Expr, r2: &Expr) -> Equivalence {
    let f1 = Expr::Sub(Box::new(l1.clone()), Box::new(r1.clone()));
    let f2 = Expr::Sub(Box::new(l2.clone()), Box::new(r2.clone()));
    let mut vars = BTreeSet::new();
    f1.vars(&mut vars);
    f2.vars(&mut vars);
    if vars.is_empty() {
        // `2 = 2`: no unknowns; compare the right-hand sides as values.
        let v = compare_exprs(r1, r2);
        return Equivalence {
            rule: if v.rule == Rule::NotFinite {
                v.rule
            } else {
                Rule::Equation
            },
            ..v
        };
    }
    let mut ratio: Option<C> = None;
    let mut defined = 0;
    for env in points(&vars) {
        let (a, b) = (f1.eval(&env), f2.eval(&env));
        if !a.is_finite() || !b.is_finite() {
            continue;
        }
        let (az, bz) = (a.abs() < 1e-12, b.abs() < 1e-12);
        if az && bz {
            continue;
        }
        if az != bz {
            return Equivalence::new(
                false,
                Rule::Equation,
                "one side vanishes where the other does not",
            );
        }
        let q = {
            let d = b.re * b.re + b.im * b.im;
            C {
                re: (a.re * b.re + a.im * b.im) / d,
                im: (a.im * b.re - a.re * b.im) / d,
            }
        };
        match ratio {
            None => ratio = Some(q),
            Some(r0) if !values_close(r0, q) => {
                return Equivalence::new(false, Rule::Equation, "lhs - rhs not proportional");
            }
            Some(_) => {}
        }
        defined += 1;
    }
    if defined < 3 {
        return Equivalence::new(
            false,
            Rule::NotFinite,
            format!("equations defined at only {defined} points"),
        );
    }
    Equivalence::new(true, Rule::Equation, "lhs - rhs proportional")
}

/// Rule [`Rule::EquationRhs`]: `x = 3` against `3`; only when the left side names the answer: a lone
/// variable, or a label such as `AB` or `f(x)` (`f(x) = 1` against `1`), never an expression of it.
/// An equation with no variable (`2 + 3 = 5`) is a computation whose result is the right side, as
/// in a chain `x = 2 + 3 = 5`, whether or not the two sides agree; the detail says which.
/// `7 = 11a + c` has variables: an equation, not a computation.
pub(crate) fn equation_rhs(lhs: &Expr, rhs: &Expr, other: &Answer) -> Equivalence {
    let label;
    let var = match lhs.as_var() {
        Some(v) => v,
        None if lhs.is_label() => {
            label = "a label".to_string();
            &label
        }
        None if is_constant(lhs) && is_constant(rhs) => {
            let agrees = values_close(lhs.eval(&[]), rhs.eval(&[]));
            label = format!(
                "a computation (its left side {} the right)",
                if agrees { "equals" } else { "differs from" }
            );
            &label
        }
        None => return Equivalence::new(false, Rule::ShapeMismatch, "equation vs a non-equation"),
    };
    let inner = compare(&Answer::Expr(rhs.clone()), other);
    let rule = if inner.rule == Rule::NotFinite {
        Rule::NotFinite
    } else {
        Rule::EquationRhs
    };
    Equivalence::new(inner.equal, rule, format!("{var} = ...: {}", inner.detail))
}

fn is_constant(e: &Expr) -> bool {
    let mut vars = BTreeSet::new();
    e.vars(&mut vars);
    vars.is_empty()
}

/// Rules [`Rule::Tuple`] and [`Rule::Interval`]: same brackets, same items in order. Square brackets or an
/// infinite endpoint make it an interval.
pub(crate) fn ordered(b1: (u8, u8), i1: &[Answer], b2: (u8, u8), i2: &[Answer]) -> Equivalence {
    let is_interval = |b: (u8, u8), items: &[Answer]| {
        b != (b'(', b')')
            || items
                .iter()
                .any(|a| matches!(a, Answer::Expr(e) if e.has_infinity()))
    };
    let rule = if is_interval(b1, i1) || is_interval(b2, i2) {
        Rule::Interval
    } else {
        Rule::Tuple
    };
    if b1 != b2 {
        let show = |b: (u8, u8)| format!("{}..{}", b.0 as char, b.1 as char);
        return Equivalence::new(
            false,
            rule,
            format!("brackets {} vs {}", show(b1), show(b2)),
        );
    }
    if i1.len() != i2.len() {
        return Equivalence::new(false, rule, format!("{} items vs {}", i1.len(), i2.len()));
    }
    for (k, (x, y)) in i1.iter().zip(i2).enumerate() {
        let v = compare(x, y);
        if !v.equal {
            return Equivalence::new(false, rule, format!("item {}: {}", k + 1, v.detail));
        }
    }
    Equivalence::new(true, rule, format!("{} items equal", i1.len()))
}

/// Rule [`Rule::Set`]: every element of each side equals some element of the other, so the order and
/// repetitions of listed elements do not matter (`(3,17,3,7)` listed twice is one element of the set).
pub(crate) fn set(x: &[Answer], y: &[Answer]) -> Equivalence {
    let unmatched = |a: &[Answer], b: &[Answer]| {
        a.iter()
            .position(|e| !b.iter().any(|f| compare(e, f).equal))
    };
    if let Some(k) = unmatched(x, y) {
        return Equivalence::new(
            false,
            Rule::Set,
            format!("gold element {} has no match", k + 1),
        );
    }
    if let Some(k) = unmatched(y, x) {
        return Equivalence::new(
            false,
            Rule::Set,
            format!("predicted element {} has no match", k + 1),
        );
    }
    Equivalence::new(
        true,
        Rule::Set,
        format!("same elements ({} and {} listed)", x.len(), y.len()),
    )
}

/// Rule [`Rule::Matrix`].
pub(crate) fn matrix(x: &[Vec<Answer>], y: &[Vec<Answer>]) -> Equivalence {
    let shape = |m: &[Vec<Answer>]| (m.len(), m.first().map_or(0, Vec::len));
    if shape(x) != shape(y) || x.iter().zip(y).any(|(r, s)| r.len() != s.len()) {
        return Equivalence::new(
            false,
            Rule::Matrix,
            format!("shape {:?} vs {:?}", shape(x), shape(y)),
        );
    }
    for (i, (r, s)) in x.iter().zip(y).enumerate() {
        for (j, (a, b)) in r.iter().zip(s).enumerate() {
            let v = compare(a, b);
            if !v.equal {
                return Equivalence::new(
                    false,
                    Rule::Matrix,
                    format!("entry ({}, {}): {}", i + 1, j + 1, v.detail),
                );
            }
        }
    }
    Equivalence::new(true, Rule::Matrix, "all entries equal")
}

/// A column or row vector written as a tuple `(1, 2, 3)`: the [`Rule::Matrix`] rule on the vector.
fn vector_vs_tuple(m: &[Vec<Answer>], items: &[Answer]) -> Equivalence {
    let flat: Vec<Answer> = if m.iter().all(|r| r.len() == 1) {
        m.iter().map(|r| r[0].clone()).collect()
    } else if m.len() == 1 {
        m[0].clone()
    } else {
        return Equivalence::new(false, Rule::ShapeMismatch, "matrix vs tuple");
    };
    let as_column: Vec<Vec<Answer>> = flat.into_iter().map(|a| vec![a]).collect();
    let tuple: Vec<Vec<Answer>> = items.iter().map(|a| vec![a.clone()]).collect();
    matrix(&as_column, &tuple)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::expr::parse_expr;

    fn e(s: &str) -> Expr {
        parse_expr(s).unwrap()
    }
    fn a(s: &str) -> Answer {
        parse_answer(s, 0).unwrap()
    }

    #[test]
    fn string_match_rule() {
        assert!(string_match("1+x", "1 + x", None).unwrap().equal);
        assert!(string_match("1+x", "x+1", None).is_none());
        assert!(string_match("2 3", "23", None).is_none());
        assert!(string_match("2  3", "2 3", None).unwrap().equal);
        let undefined = a("\\frac{1}{0}");
        assert!(
            !string_match("\\frac{1}{0}", "\\frac{1}{0}", Some(&undefined))
                .unwrap()
                .equal
        );
        assert!(string_match("{", "{", None).is_none());
    }

    #[test]
    fn numeric_rule() {
        assert!(numeric(&e("\\frac{3}{4}"), &e("0.75")).equal);
        assert!(!numeric(&e("\\frac{1}{3}"), &e("0.33")).equal);
        assert!(!numeric(&e("11111111100"), &e("11111111101")).equal);
        assert!(numeric(&e("2^{40}"), &e("1099511627776")).equal);
        assert!(numeric(&e("3 \\cdot \\frac{1}{3}"), &e("1")).equal);
        assert_eq!(numeric(&e("\\frac{1}{0}"), &e("1")).rule, Rule::NotFinite);
        assert_eq!(
            numeric(&e("10^{10^{10}}"), &e("10^{10^{11}}")).rule,
            Rule::NotFinite
        );
        assert!(numeric(&e("-\\infty"), &e("-\\infty")).equal);
    }

    #[test]
    fn random_points_rule() {
        assert!(compare_exprs(&e("(a+5)(b+2)"), &e("ab+2a+5b+10")).equal);
        assert!(!compare_exprs(&e("(a+5)(b+2)"), &e("ab+2a+5b+11")).equal);
        assert!(compare_exprs(&e("\\cot x"), &e("\\frac{\\cos x}{\\sin x}")).equal);
        assert_eq!(
            compare_exprs(&e("\\frac{1}{x-x}"), &e("1")).rule,
            Rule::NotFinite
        );
    }

    #[test]
    fn points_are_deterministic_and_in_range() {
        let vars: BTreeSet<String> = ["x".to_owned(), "y".to_owned()].into();
        let p = points(&vars);
        assert_eq!(p, points(&vars));
        assert!(p.iter().flatten().all(|(_, v)| (0.5..=3.0).contains(&v.re)));
    }

    #[test]
    fn percent_rule() {
        assert!(percent(&e("50"), &e("0.5")).equal);
        assert!(percent(&e("50"), &e("50")).equal);
        assert!(!percent(&e("50"), &e("5")).equal);
    }

    #[test]
    fn text_and_choice_rules() {
        assert!(text("east", "East").equal);
        assert!(!text("east", "west").equal);
        assert!(choice_letter('B', 'B').equal);
        assert!(!choice_letter('B', 'C').equal);
    }

    #[test]
    fn base_subscript_rule() {
        assert!(base_subscript("204", Some("5"), "204", None).equal);
        assert!(!base_subscript("204", Some("5"), "204", Some("6")).equal);
        assert!(!based_vs_number("204", "5", &e("54")).equal);
        assert!(based_vs_number("204", "5", &e("204")).equal);
    }

    #[test]
    fn equation_rules() {
        assert!(equation(&e("y"), &e("2x+3"), &e("2x-y+3"), &e("0")).equal);
        assert!(!equation(&e("y"), &e("2x+3"), &e("y"), &e("2x-3")).equal);
        assert!(equation_rhs(&e("x"), &e("5"), &a("5")).equal);
        assert!(!equation_rhs(&e("x+1"), &e("5"), &a("4")).equal);
        // A computation: its right side is the result.
        let v = equation_rhs(&e("2+3"), &e("5"), &a("5"));
        assert!(v.equal && v.detail.contains("equals the right"), "{v:?}");
        let v = equation_rhs(&e("\\frac12"), &e("\\frac{10}{9}"), &a("10/9"));
        assert!(v.equal && v.detail.contains("differs from"), "{v:?}");
        assert!(!equation_rhs(&e("2+3"), &e("5"), &a("6")).equal);
        assert!(!equation_rhs(&e("7"), &e("11a+c"), &a("11a+c")).equal);
    }

    #[test]
    fn ordered_and_set_rules() {
        assert_eq!(compare(&a("(3,4]"), &a("(3,4)")).rule, Rule::Interval);
        assert!(!compare(&a("(3,4]"), &a("(3,4)")).equal);
        assert_eq!(compare(&a("(1,2)"), &a("(1,2)")).rule, Rule::Tuple);
        assert!(!compare(&a("(1,2)"), &a("(2,1)")).equal);
        assert!(set(&[a("1"), a("2")], &[a("2"), a("1")]).equal);
        assert!(!set(&[a("1"), a("1")], &[a("1"), a("2")]).equal);
    }

    #[test]
    fn decimal_comma_against_a_number() {
        let never = MathOptions {
            decimal_comma: DecimalComma::Never,
            ..MathOptions::default()
        };
        let v = math_equal("1000.99", "1000,99");
        assert!(v.equal, "{v:?}");
        assert!(v.detail.contains("decimal comma"));
        assert!(math_equal("1,22", "1.22").equal);
        assert!(math_equal("0.111", "0,111").equal);
        assert!(!math_equal("0.111", "0,112").equal);
        assert!(!math_equal_with("1.22", "1,22", &never).equal);
        // A thousands grouping stays one; a spaced or longer list stays a list.
        assert!(!math_equal("1.000", "1,000").equal);
        assert!(!math_equal("1.5", "1, 5").equal);
        assert!(!math_equal("1.5", "1,5,0").equal);
        // Against a list the comma lists.
        assert!(math_equal("1, 5", "1,5").equal);
        assert!(!math_equal("\\{1.5\\}", "1,5").equal);
    }

    #[test]
    fn a_range_of_an_absolute_value_against_a_union() {
        let v = math_equal(
            "1\\le |z| \\le \\frac32",
            "[-\\frac32, -1] \\cup [1, \\frac32]",
        );
        assert!(v.equal, "{v:?}");
        assert!(v.detail.contains("solved"));
        assert!(math_equal("[-2,-1)\\cup(1,2]", "1 < |x| \\le 2").equal);
        assert!(!math_equal("[-2,-1]\\cup[1,2]", "1 < |x| \\le 2").equal);
        // Against one interval the chain is the range of |z|.
        assert!(math_equal("[1, 2]", "1 \\le |z| \\le 2").equal);
        assert!(!math_equal("[-2,-1]\\cup[1,3]", "1 \\le |z| \\le 2").equal);
    }

    #[test]
    fn a_list_restating_one_value() {
        let v = math_equal("\\frac32", "1.5, \\frac{3}{2}");
        assert!(v.equal, "{v:?}");
        assert!(v.detail.contains("forms of one value"));
        assert!(math_equal("x = 3", "3, \\frac{6}{2}").equal);
        // A hedge between two values equals neither.
        assert!(!math_equal("5", "5, 7").equal);
        assert!(!math_equal("7", "5 \\text{ or } 7").equal);
        // Against a list the usual set rule decides.
        assert!(math_equal("2", "2, 2").equal);
        assert!(!math_equal("(1, 1)", "1, 1").equal);
    }

    #[test]
    fn matrix_rule() {
        let m = a("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}");
        assert!(compare(&m, &a("\\begin{bmatrix} 1 \\\\ 2 \\end{bmatrix}")).equal);
        assert!(compare(&m, &a("(1,2)")).equal);
        assert!(!compare(&m, &a("\\begin{pmatrix} 1 & 2 \\end{pmatrix}")).equal);
    }
}
