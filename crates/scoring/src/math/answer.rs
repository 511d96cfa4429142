//! The shape of an answer: a number or expression, an equation, a tuple or interval, a set, a matrix, a
//! number in another base, a word, a choice letter.
//!
//! The shape is read from the normalised string before any expression is parsed, because the same
//! characters mean different things in different shapes: the comma in `(2,4)` separates coordinates, the
//! one in `2, 4` separates solutions, and `(3,4]` is an interval although its brackets do not match.

use std::sync::LazyLock;

use regex::Regex;

use super::expr::{parse_expr, Expr, Func};

/// Most elements a list, set or matrix may have; longer ones are rejected, not compared pairwise.
pub(crate) const MAX_ELEMENTS: usize = 64;
/// Most `\pm` signs expanded in one answer (each doubles the candidates).
const MAX_PLUS_MINUS: usize = 3;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    Expr(Expr),
    /// A number written with `\%`; compared with both the number and its hundredth.
    Percent(Expr),
    /// Lower-case words with single spaces.
    Text(String),
    Choice(char),
    /// `204_5`: digits as written and the base.
    Based {
        digits: String,
        base: String,
    },
    Equation(Expr, Expr),
    /// Brackets and items of a tuple or interval: `(`, `)`, `[`, `]`.
    Ordered {
        open: u8,
        close: u8,
        items: Vec<Answer>,
    },
    /// Solutions in any order: `\{...\}`, `a, b, c`, expansions of `\pm`, unions of intervals.
    Unordered(Vec<Answer>),
    Matrix(Vec<Vec<Answer>>),
}

pub(crate) fn parse_answer(s: &str, depth: usize) -> Result<Answer, String> {
    if depth > 8 {
        return Err("answer structure nested too deeply".into());
    }
    let s = s.trim();
    if s.is_empty() {
        return Err("empty answer".into());
    }
    if let Some(m) = matrix_combination(s, depth)? {
        return Ok(m);
    }
    if let Some(m) = parse_matrix(s, depth)? {
        return Ok(m);
    }
    let unions = split_top_level(s, "\\cup");
    if unions.len() > 1 {
        return Ok(Answer::Unordered(parse_items(&unions, depth)?));
    }
    if let Some(inner) = s.strip_prefix("\\{").and_then(|t| t.strip_suffix("\\}")) {
        if is_balanced(inner) {
            let items = split_top_level(inner, ",");
            return Ok(Answer::Unordered(expand_items(parse_items(&items, depth)?)));
        }
    }
    if let Some((open, close, inner)) = bracketed(s) {
        let items = split_top_level(inner, ",");
        if items.len() > 1 {
            return Ok(Answer::Ordered {
                open,
                close,
                items: parse_items(&items, depth)?,
            });
        }
    }
    let items = split_top_level(s, ",");
    if items.len() > 1 {
        return Ok(Answer::Unordered(expand_items(parse_items(&items, depth)?)));
    }
    if let Some(interval) = parse_inequality(s) {
        return interval;
    }
    let sides = split_top_level(s, "=");
    if sides.len() == 2 {
        let lhs = parse_expr(sides[0]);
        let rhs = parse_expr(sides[1]);
        return match (lhs, rhs) {
            (Ok(l), Ok(r)) => Ok(Answer::Equation(l, r)),
            // `\text{Area} = 5`: a label on the left is not part of the answer.
            (Err(_), Ok(_)) => parse_answer(sides[1], depth + 1),
            (_, Err(e)) => Err(e),
        };
    }
    if sides.len() > 2 {
        // `x = 2 + 3 = 5`: a chain ends in the answer.
        return parse_answer(sides[sides.len() - 1], depth + 1);
    }
    if s.contains("\\pm") || s.contains("\\mp") {
        let variants = expand_plus_minus(s)?;
        let items = variants
            .iter()
            .map(|v| parse_expr(v).map(Answer::Expr))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Answer::Unordered(items));
    }
    if let Some(c) = parse_choice_letter(s) {
        return Ok(Answer::Choice(c));
    }
    if let Some((digits, base)) = parse_based(s) {
        return Ok(Answer::Based { digits, base });
    }
    if let Some(rest) = s.strip_suffix("\\%").or_else(|| s.strip_suffix('%')) {
        return parse_expr(rest).map(Answer::Percent);
    }
    if let Some(words) = parse_words(s) {
        return Ok(Answer::Text(words));
    }
    parse_expr(s).map(Answer::Expr)
}

/// `x \le 0` -> `(-\infty, 0]`, `3 < x \le 4` -> `(3, 4]`: an inequality in one variable is the interval
/// of its solutions. `None` when `s` has no comparison at the top level.
pub(crate) fn parse_inequality(s: &str) -> Option<Result<Answer, String>> {
    let (parts, ops) = split_comparisons(s);
    if ops.is_empty() {
        return None;
    }
    let inf = || Expr::Inf;
    let neg_inf = || Expr::Neg(Box::new(Expr::Inf));
    // The side that names what is bounded: `x`, or a quantity such as `f(x)` (the range of f).
    let is_var = |t: &str| parse_expr(t).is_ok_and(|e| e.is_named_quantity());
    let bound = |t: &str| parse_expr(t);
    let interval = |lo: Expr, lo_closed: bool, hi: Expr, hi_closed: bool| Answer::Ordered {
        open: if lo_closed { b'[' } else { b'(' },
        close: if hi_closed { b']' } else { b')' },
        items: vec![Answer::Expr(lo), Answer::Expr(hi)],
    };
    Some((|| match (parts.as_slice(), ops.as_slice()) {
        ([a, b], [op]) if is_var(a) => Ok(match op {
            Cmp::Less(closed) => interval(neg_inf(), false, bound(b)?, *closed),
            Cmp::Greater(closed) => interval(bound(b)?, *closed, inf(), false),
        }),
        ([a, b], [op]) if is_var(b) => Ok(match op {
            Cmp::Less(closed) => interval(bound(a)?, *closed, inf(), false),
            Cmp::Greater(closed) => interval(neg_inf(), false, bound(a)?, *closed),
        }),
        ([a, x, b], [Cmp::Less(c1), Cmp::Less(c2)]) if is_var(x) => {
            Ok(interval(bound(a)?, *c1, bound(b)?, *c2))
        }
        ([a, x, b], [Cmp::Greater(c1), Cmp::Greater(c2)]) if is_var(x) => {
            Ok(interval(bound(b)?, *c2, bound(a)?, *c1))
        }
        // `-x > -1`, `2x + 1 \le 5`: linear in one variable, solved for it.
        ([a, b], [op]) => {
            match linear_in_one_variable(&Expr::Sub(Box::new(bound(a)?), Box::new(bound(b)?))) {
                // a - b = slope * v + at_zero compared with 0.
                Some((slope, at_zero)) => {
                    let root = Expr::Num(-at_zero / slope);
                    let below = matches!(op, Cmp::Less(_)) == (slope > 0.0);
                    let closed = matches!(op, Cmp::Less(true) | Cmp::Greater(true));
                    Ok(if below {
                        interval(neg_inf(), false, root, closed)
                    } else {
                        interval(root, closed, inf(), false)
                    })
                }
                None => Err(NOT_AN_INTERVAL.to_owned()),
            }
        }
        _ => Err(NOT_AN_INTERVAL.to_owned()),
    })())
}

/// `1 \le |z| \le 2` -> `[-2, -1] \cup [1, 2]`: a chain around the absolute value of one variable,
/// with constant bounds, solved for that variable (a real one). `None` when `s` is no such chain or
/// its lower bound is not positive (then the solutions are one interval, no union).
/// [`parse_inequality`] reads the same chain as the range `[1, 2]` of `|z|`; the caller picks.
pub(crate) fn solve_abs_range(s: &str) -> Option<Answer> {
    let (parts, ops) = split_comparisons(s);
    let ([lo, middle, hi], [c1, c2]) = (parts.as_slice(), ops.as_slice()) else {
        return None;
    };
    let (lo, hi, lo_closed, hi_closed) = match (c1, c2) {
        (Cmp::Less(a), Cmp::Less(b)) => (lo, hi, *a, *b),
        (Cmp::Greater(a), Cmp::Greater(b)) => (hi, lo, *b, *a),
        _ => return None,
    };
    match parse_expr(middle).ok()? {
        Expr::Func(Func::Abs, inner) if matches!(*inner, Expr::Var(_)) => {}
        _ => return None,
    }
    let (lo, hi) = (parse_expr(lo).ok()?, parse_expr(hi).ok()?);
    let constant = |e: &Expr| {
        let mut vars = std::collections::BTreeSet::new();
        e.vars(&mut vars);
        vars.is_empty()
    };
    if !constant(&lo) || !constant(&hi) {
        return None;
    }
    let low = lo.eval(&[]);
    if !low.is_finite() || low.im != 0.0 || low.re <= 0.0 {
        return None;
    }
    let neg = |e: &Expr| Expr::Neg(Box::new(e.clone()));
    let interval = |a: Expr, a_closed: bool, b: Expr, b_closed: bool| Answer::Ordered {
        open: if a_closed { b'[' } else { b'(' },
        close: if b_closed { b']' } else { b')' },
        items: vec![Answer::Expr(a), Answer::Expr(b)],
    };
    Some(Answer::Unordered(vec![
        interval(neg(&hi), hi_closed, neg(&lo), lo_closed),
        interval(lo, lo_closed, hi, hi_closed),
    ]))
}

const NOT_AN_INTERVAL: &str =
    "inequality is not `x < a`, `a < x`, `a < x < b` or linear in one variable";

/// `(slope, value at 0)` of `e` when it is a linear function of its one free variable (checked
/// at four points, exactly up to rounding), with a non-zero slope; `None` otherwise.
fn linear_in_one_variable(e: &Expr) -> Option<(f64, f64)> {
    let mut vars = std::collections::BTreeSet::new();
    e.vars(&mut vars);
    let [v] = <[String; 1]>::try_from(vars.into_iter().collect::<Vec<_>>()).ok()?;
    if e.has_infinity() {
        return None;
    }
    let at = |t: f64| {
        let c = e.eval(&[(v.clone(), super::expr::C::real(t))]);
        (c.im == 0.0 && c.re.is_finite()).then_some(c.re)
    };
    let (f0, f1) = (at(0.0)?, at(1.0)?);
    let slope = f1 - f0;
    let scale = f0.abs().max(slope.abs()).max(1.0);
    let linear = [2.0, -3.0]
        .iter()
        .all(|&t| at(t).is_some_and(|y| (y - (f0 + slope * t)).abs() <= 1e-9 * scale * t.abs()));
    (linear && slope.abs() > 1e-12 * scale).then_some((slope, f0))
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    /// `<` (false) or `\le` (true).
    Less(bool),
    /// `>` (false) or `\ge` (true).
    Greater(bool),
}

/// Splits at top-level `<`, `>`, `\le`, `\leq`, `\ge`, `\geq`, `\lt`, `\gt`, `≤`, `≥`.
fn split_comparisons(s: &str) -> (Vec<&str>, Vec<Cmp>) {
    const OPS: &[(&str, Cmp)] = &[
        ("\\leqslant", Cmp::Less(true)),
        ("\\geqslant", Cmp::Greater(true)),
        ("\\leq", Cmp::Less(true)),
        ("\\geq", Cmp::Greater(true)),
        ("\\le", Cmp::Less(true)),
        ("\\ge", Cmp::Greater(true)),
        ("\\lt", Cmp::Less(false)),
        ("\\gt", Cmp::Greater(false)),
        ("≤", Cmp::Less(true)),
        ("≥", Cmp::Greater(true)),
        ("<", Cmp::Less(false)),
        (">", Cmp::Greater(false)),
    ];
    let b = s.as_bytes();
    let (mut parts, mut ops) = (Vec::new(), Vec::new());
    let (mut depth, mut start, mut i) = (0i64, 0, 0);
    'scan: while i < b.len() {
        match b[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            for (tok, cmp) in OPS {
                let t = tok.as_bytes();
                if b[i..].starts_with(t)
                    && !(t[0] == b'\\' && b.get(i + t.len()).is_some_and(u8::is_ascii_alphabetic))
                {
                    parts.push(s[start..i].trim());
                    ops.push(*cmp);
                    i += t.len();
                    start = i;
                    continue 'scan;
                }
            }
        }
        i += 1;
    }
    parts.push(s[start..].trim());
    (parts, ops)
}

fn parse_items(items: &[&str], depth: usize) -> Result<Vec<Answer>, String> {
    if items.len() > MAX_ELEMENTS {
        return Err(format!("more than {MAX_ELEMENTS} elements"));
    }
    items.iter().map(|t| parse_answer(t, depth + 1)).collect()
}

/// A list element `1 \pm \sqrt 5` stands for two solutions.
fn expand_items(items: Vec<Answer>) -> Vec<Answer> {
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        match it {
            Answer::Unordered(inner) => out.extend(inner),
            other => out.push(other),
        }
    }
    out
}

/// `a \pm b` -> [`a + b`, `a - b`]; `\mp` the other way round.
pub(crate) fn expand_plus_minus(s: &str) -> Result<Vec<String>, String> {
    let count = s.matches("\\pm").count() + s.matches("\\mp").count();
    if count > MAX_PLUS_MINUS {
        return Err(format!("more than {MAX_PLUS_MINUS} `\\pm` signs"));
    }
    let mut out = vec![s.to_owned()];
    for _ in 0..count {
        let mut next = Vec::with_capacity(out.len() * 2);
        for v in &out {
            let (i, len, plus_first) = match (v.find("\\pm"), v.find("\\mp")) {
                (Some(a), Some(b)) if b < a => (b, 3, false),
                (Some(a), _) => (a, 3, true),
                (None, Some(b)) => (b, 3, false),
                (None, None) => {
                    next.push(v.clone());
                    continue;
                }
            };
            let (first, second) = if plus_first { ("+", "-") } else { ("-", "+") };
            next.push(format!("{}{}{}", &v[..i], first, &v[i + len..]));
            next.push(format!("{}{}{}", &v[..i], second, &v[i + len..]));
        }
        out = next;
    }
    Ok(out)
}

/// `(B)`, `B`: a multiple-choice letter given as a math answer.
pub(crate) fn parse_choice_letter(s: &str) -> Option<char> {
    let t = s.trim();
    let t = t
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .unwrap_or(t)
        .trim();
    let mut chars = t.chars();
    match (chars.next(), chars.next()) {
        (Some(c @ 'A'..='J'), None) => Some(c),
        _ => None,
    }
}

/// `204_5`, `4210_{5}`, `2516_8`, `1A_{16}`.
pub(crate) fn parse_based(s: &str) -> Option<(String, String)> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^([0-9A-Za-z]+)\s*_\s*\{?\s*(\d{1,2})\s*\}?$").expect("valid regex")
    });
    let caps = RE.captures(s.trim())?;
    let digits = caps[1].to_ascii_uppercase();
    // `x_1` is a variable, not a number: the digits must start with a digit.
    if !digits.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    Some((digits, caps[2].trim_start_matches('0').to_owned()))
}

/// Words (`Evelyn`, `east`, `no solution`): letters and spaces only, with a run of three letters so that
/// `ab` stays a product.
pub(crate) fn parse_words(s: &str) -> Option<String> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphabetic() || b == b' ') {
        return None;
    }
    let has_word = t.split(' ').any(|w| w.len() >= 3);
    has_word.then(|| {
        t.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase()
    })
}

/// The environment regex of a matrix: `\begin{pmatrix} ... \end{pmatrix}` (any bracket kind, or
/// an `array` with its column spec).
static MATRIX_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)^\\begin\{([pbvBV]?matrix|array)\}(?:\{[lcr|]*\})?(.*)\\end\{([pbvBV]?matrix|array)\}$")
        .expect("valid regex")
});

/// The cells of one matrix environment as written, row by row.
fn matrix_cells(s: &str) -> Option<Vec<Vec<String>>> {
    let caps = MATRIX_RE.captures(s.trim())?;
    let body = caps.get(2).map_or("", |m| m.as_str());
    let rows: Vec<Vec<String>> = body
        .split("\\\\")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.split('&').map(|c| c.trim().to_string()).collect())
        .collect();
    (!rows.is_empty()).then_some(rows)
}

/// The most matrices multiplied in one term, and the most bytes their product's cells may take:
/// each factor multiplies the cells' length by about the inner dimension.
const MAX_PRODUCT: usize = 4;
const MAX_PRODUCT_BYTES: usize = 1 << 14;

/// The cells of one matrix environment, or of several written side by side (`AB`, `A \cdot B`,
/// `A \times B`): their product, each cell the sum of row-times-column terms as an expression.
/// `Ok(None)` when `s` is not such a sequence; an error when the shapes do not conform.
fn matrix_product(s: &str) -> Result<Option<Vec<Vec<String>>>, String> {
    let mut rest = s.trim();
    let mut product: Option<Vec<Vec<String>>> = None;
    let mut count = 0;
    while !rest.is_empty() {
        let Some(name_end) = rest.strip_prefix("\\begin{").and_then(|r| r.find('}')) else {
            return Ok(None);
        };
        let end_tag = format!("\\end{{{}}}", &rest[7..7 + name_end]);
        let Some(end) = rest.find(&end_tag) else {
            return Ok(None);
        };
        let (env, after) = rest.split_at(end + end_tag.len());
        let Some(cells) = matrix_cells(env) else {
            return Ok(None);
        };
        count += 1;
        if count > MAX_PRODUCT {
            return Err(format!("a product of more than {MAX_PRODUCT} matrices"));
        }
        product = Some(match product {
            None => cells,
            Some(left) => {
                let inner = left.first().map_or(0, Vec::len);
                if left.iter().any(|r| r.len() != inner) || inner != cells.len() {
                    return Err("a product of matrices whose shapes do not conform".into());
                }
                let width = cells.first().map_or(0, Vec::len);
                if cells.iter().any(|r| r.len() != width) {
                    return Err("a matrix with rows of different lengths".into());
                }
                let out: Vec<Vec<String>> = left
                    .iter()
                    .map(|row| {
                        (0..width)
                            .map(|j| {
                                let terms: Vec<String> = (0..inner)
                                    .map(|k| format!("({})*({})", row[k], cells[k][j]))
                                    .collect();
                                format!("({})", terms.join("+"))
                            })
                            .collect()
                    })
                    .collect();
                if out.iter().flatten().map(String::len).sum::<usize>() > MAX_PRODUCT_BYTES {
                    return Err("a product of matrices too long to compare".into());
                }
                out
            }
        });
        rest = after.trim_start();
        for op in ["\\cdot", "\\times", "*"] {
            if let Some(r) = rest.strip_prefix(op) {
                rest = r.trim_start();
                break;
            }
        }
    }
    Ok(product)
}

/// A sum or difference of matrices, each with an optional numeric factor
/// (`\begin{pmatrix}1\\2\end{pmatrix} + 2\begin{pmatrix}3\\4\end{pmatrix}`) and each possibly a
/// product of matrices written side by side ([`matrix_product`]), as the one matrix it equals: each cell becomes the same combination of the terms' cells, which the expression
/// comparison then evaluates. `None` when `s` is not such a combination (one bare matrix
/// included: [`parse_matrix`] reads that).
fn matrix_combination(s: &str, depth: usize) -> Result<Option<Answer>, String> {
    static FACTOR: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:\d+(?:\.\d+)?|\d+/\d+|\\[dt]?frac\{\d+\}\{\d+\})$").expect("valid regex")
    });
    let single = s.trim_start().starts_with("\\begin{") && s.matches("\\begin{").count() < 2;
    if !s.contains("\\begin{") || single {
        return Ok(None);
    }
    let mut combined: Option<Vec<Vec<String>>> = None;
    for (sign, term) in split_signed_terms(s) {
        let Some(at) = term.find("\\begin{") else {
            return Ok(None);
        };
        let factor = term[..at].trim();
        let factor = factor
            .strip_suffix("\\cdot")
            .or_else(|| factor.strip_suffix("\\times"))
            .or_else(|| factor.strip_suffix('*'))
            .unwrap_or(factor)
            .trim();
        if !(factor.is_empty() || FACTOR.is_match(factor)) {
            return Ok(None);
        }
        let Some(cells) = matrix_product(&term[at..])? else {
            return Ok(None);
        };
        let scale = |c: &str| {
            let f = if factor.is_empty() { "1" } else { factor };
            format!("{sign}({f})*({c})")
        };
        combined = Some(match combined {
            None => cells
                .iter()
                .map(|r| r.iter().map(|c| scale(c)).collect())
                .collect(),
            Some(acc) => {
                let same_shape = acc.len() == cells.len()
                    && acc.iter().zip(&cells).all(|(a, b)| a.len() == b.len());
                if !same_shape {
                    return Err("a sum of matrices of different shapes".into());
                }
                acc.into_iter()
                    .zip(&cells)
                    .map(|(a, b)| {
                        a.into_iter()
                            .zip(b)
                            .map(|(x, y)| format!("{x}{}", scale(y)))
                            .collect()
                    })
                    .collect()
            }
        });
    }
    let Some(rows) = combined else {
        return Ok(None);
    };
    if rows.len() > MAX_ELEMENTS {
        return Err("matrix with no rows or too many".into());
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        out.push(parse_items(&cells, depth)?);
    }
    Ok(Some(Answer::Matrix(out)))
}

/// `s` cut at the `+` and `-` outside braces and environments, each piece with its sign (`+` for
/// the first when it has none).
fn split_signed_terms(s: &str) -> Vec<(char, &str)> {
    let b = s.as_bytes();
    let (mut braces, mut envs) = (0i64, 0i64);
    let mut out = Vec::new();
    let (mut start, mut sign) = (0usize, '+');
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"\\begin{") {
            envs += 1;
        } else if b[i..].starts_with(b"\\end{") {
            envs -= 1;
        }
        match b[i] {
            b'{' => braces += 1,
            b'}' => braces -= 1,
            b'+' | b'-' if braces == 0 && envs == 0 => {
                let piece = s[start..i].trim();
                if !piece.is_empty() {
                    out.push((sign, piece));
                } else if b[i] == b'-' {
                    // A leading minus, or `+ -`: the sign of what follows.
                    sign = if sign == '-' { '+' } else { '-' };
                    start = i + 1;
                    i += 1;
                    continue;
                }
                sign = b[i] as char;
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    let piece = s[start..].trim();
    if !piece.is_empty() {
        out.push((sign, piece));
    }
    out
}

fn parse_matrix(s: &str, depth: usize) -> Result<Option<Answer>, String> {
    let re = &*MATRIX_RE;
    // `\left[\begin{array}{cc} ... \end{array}\right]` (an array given its brackets by hand, as
    // matrices are written without the amsmath environments) reaches here with the brackets.
    let inner = match bracketed(s) {
        Some((b'[' | b'(', b']' | b')', inside)) if inside.trim_start().starts_with("\\begin{") => {
            inside.trim()
        }
        _ => s,
    };
    let Some(caps) = re.captures(inner) else {
        return Ok(None);
    };
    let body = caps.get(2).map_or("", |m| m.as_str());
    let rows: Vec<&str> = body
        .split("\\\\")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    if rows.is_empty() || rows.len() > MAX_ELEMENTS {
        return Err("matrix with no rows or too many".into());
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let cells: Vec<&str> = row.split('&').collect();
        out.push(parse_items(&cells, depth)?);
    }
    Ok(Some(Answer::Matrix(out)))
}

/// `(a, b]` -> (`(`, `]`, `a, b`) when the first bracket closes only at the end.
fn bracketed(s: &str) -> Option<(u8, u8, &str)> {
    let b = s.as_bytes();
    let open = *b.first()?;
    let close = *b.last()?;
    if !matches!(open, b'(' | b'[') || !matches!(close, b')' | b']') || b.len() < 2 {
        return None;
    }
    let mut depth = 0i64;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 && i != b.len() - 1 {
                    return None;
                }
            }
            _ => {}
        }
    }
    (depth == 0).then(|| (open, close, &s[1..s.len() - 1]))
}

fn is_balanced(s: &str) -> bool {
    let mut depth = 0i64;
    for c in s.bytes() {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0
}

/// Splits at `sep` outside brackets and braces. A half-open interval `(3,4]` counts as one level.
pub(crate) fn split_top_level<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    let b = s.as_bytes();
    let sep_b = sep.as_bytes();
    let mut parts = Vec::new();
    let mut depth = 0i64;
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if b[i..].starts_with(b"\\{") || b[i..].starts_with(b"\\}") => {
                depth += if b[i + 1] == b'{' { 1 } else { -1 };
                i += 2;
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && b[i..].starts_with(sep_b) {
            // `\cup` must not match inside `\cupcake`-like commands; `,` and `=` need no such care,
            // except `\le=` style that we do not parse anyway.
            let word_end = i + sep_b.len();
            let is_word = sep_b[0] == b'\\' && b.get(word_end).is_some_and(u8::is_ascii_alphabetic);
            if !is_word {
                parts.push(s[start..i].trim());
                start = word_end;
                i = word_end;
                continue;
            }
        }
        i += 1;
    }
    parts.push(s[start..].trim());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(s: &str) -> String {
        match parse_answer(s, 0) {
            Ok(Answer::Expr(_)) => "expr".into(),
            Ok(Answer::Percent(_)) => "percent".into(),
            Ok(Answer::Text(t)) => format!("text:{t}"),
            Ok(Answer::Choice(c)) => format!("choice:{c}"),
            Ok(Answer::Based { digits, base }) => format!("based:{digits}_{base}"),
            Ok(Answer::Equation(..)) => "equation".into(),
            Ok(Answer::Ordered { open, close, items }) => {
                format!("ordered:{}{}{}", open as char, items.len(), close as char)
            }
            Ok(Answer::Unordered(items)) => format!("unordered:{}", items.len()),
            Ok(Answer::Matrix(rows)) => format!("matrix:{}x{}", rows.len(), rows[0].len()),
            Err(e) => format!("error:{e}"),
        }
    }

    #[test]
    fn shapes() {
        assert_eq!(shape("(2,4)"), "ordered:(2)");
        assert_eq!(shape("(3,4]"), "ordered:(2]");
        assert_eq!(shape("(a+5)(b+2)"), "expr");
        assert_eq!(shape("(-\\infty, 2) \\cup (3, \\infty)"), "unordered:2");
        assert_eq!(shape("3, 5, 7"), "unordered:3");
        assert_eq!(shape("\\{1\\pm\\sqrt{5},-2\\}"), "unordered:3");
        assert_eq!(shape("1 \\pm \\sqrt{19}"), "unordered:2");
        assert_eq!(shape("y = 2x + 3"), "equation");
        assert_eq!(shape("x = 2 + 3 = 5"), "expr");
        assert_eq!(shape("204_5"), "based:204_5");
        assert_eq!(shape("4210_{5}"), "based:4210_5");
        assert_eq!(shape("x_1"), "expr");
        assert_eq!(shape("(B)"), "choice:B");
        assert_eq!(shape("x \\le 0"), "ordered:(2]");
        assert_eq!(shape("3 < x \\leq 4"), "ordered:(2]");
        assert_eq!(shape("5 \\ge x"), "ordered:(2]");
        assert_eq!(shape("x > 2"), "ordered:(2)");
        assert!(shape("x + y < 2").starts_with("error"));
        assert_eq!(shape("Evelyn"), "text:evelyn");
        assert_eq!(shape("ab"), "expr");
        assert_eq!(shape("50\\%"), "percent");
        assert_eq!(
            shape("\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}"),
            "matrix:2x2"
        );
        assert_eq!(
            shape("\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}"),
            "matrix:2x1"
        );
        assert_eq!(
            shape("2\\begin{pmatrix} 1 & 0 \\end{pmatrix} - \\begin{pmatrix} 3 & 4 \\end{pmatrix}"),
            "matrix:1x2"
        );
        assert_eq!(
            shape("\\begin{pmatrix} 1 \\end{pmatrix} + \\begin{pmatrix} 1 & 2 \\end{pmatrix}"),
            "error:a sum of matrices of different shapes"
        );
        assert_eq!(
            split_signed_terms("-a + b - \\begin{pmatrix} 1 & -2 \\end{pmatrix}"),
            [
                ('-', "a"),
                ('+', "b"),
                ('-', "\\begin{pmatrix} 1 & -2 \\end{pmatrix}")
            ]
        );
    }

    #[test]
    fn plus_minus_expansion() {
        assert_eq!(expand_plus_minus("1\\pm2").unwrap(), vec!["1+2", "1-2"]);
        assert_eq!(expand_plus_minus("\\mp 2").unwrap(), vec!["- 2", "+ 2"]);
        assert_eq!(expand_plus_minus("\\pm a \\pm b").unwrap().len(), 4);
        assert!(expand_plus_minus(&"\\pm1".repeat(10)).is_err());
    }

    #[test]
    fn top_level_split() {
        assert_eq!(split_top_level("(1,2),3", ","), vec!["(1,2)", "3"]);
        assert_eq!(split_top_level("\\{1,2\\},3", ","), vec!["\\{1,2\\}", "3"]);
        assert_eq!(split_top_level("a\\cup b", "\\cup"), vec!["a", "b"]);
    }
}
