//! A small LaTeX expression parser and a complex-valued evaluator.
//!
//! Answers are compared by value, not by symbolic algebra: an expression tree is evaluated in complex
//! `f64` (so `\sqrt{-4}` and `2+7i` have values) once when it has no variables, or at seeded random
//! points when it has. That decides equivalence of everything MATH-style answers contain (radicals,
//! powers, fractions, trigonometry, polynomials) in microseconds and cannot hang: parsing is one pass
//! with a depth limit, evaluation is one walk of a tree whose size is bounded by the input length, and
//! `f64` arithmetic takes the same time for `10^{10^{10}}` as for `2^3`.

use std::collections::BTreeSet;

/// Deepest nesting the parser follows; deeper input is rejected rather than risking the stack.
pub(crate) const MAX_DEPTH: usize = 200;

/// Summand evaluations one evaluation of a tree may spend on `\sum`/`\prod` with numeric bounds,
/// nested ones included; past it the value is undefined (NaN), so `\sum_{k=1}^{10^9}` cannot hang.
pub(crate) const MAX_SERIES_TERMS: usize = 100_000;

/// Where a bound of a series is not an integer at the point evaluated (`\sum_{k=0}^{n-1}` with `n`
/// at a random real), the series has no value to sum. It evaluates instead to this fingerprint: the
/// summand weighted at three fixed fractions of the way from the lower to the upper bound, plus the
/// bounds themselves. Two series agree at every point only if their bounds agree and their summands
/// agree along the range, so series are compared by bounds and summand, not summed.
const SERIES_FINGERPRINT: [(f64, f64); 3] = [(0.137, 0.71), (0.519, 1.29), (0.883, 0.93)];

/// A complex number; the only value type the evaluator knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct C {
    pub re: f64,
    pub im: f64,
}

impl C {
    pub const fn real(re: f64) -> C {
        C { re, im: 0.0 }
    }
    fn add(self, o: C) -> C {
        C {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
    fn sub(self, o: C) -> C {
        C {
            re: self.re - o.re,
            im: self.im - o.im,
        }
    }
    fn mul(self, o: C) -> C {
        if self.im == 0.0 && o.im == 0.0 {
            return C::real(self.re * o.re);
        }
        C {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    fn div(self, o: C) -> C {
        if o.re == 0.0 && o.im == 0.0 {
            // Division by zero is an error in an answer, not infinity: `\frac{1}{0}` is no number.
            return C {
                re: f64::NAN,
                im: f64::NAN,
            };
        }
        if self.im == 0.0 && o.im == 0.0 {
            return C::real(self.re / o.re);
        }
        let d = o.re * o.re + o.im * o.im;
        C {
            re: (self.re * o.re + self.im * o.im) / d,
            im: (self.im * o.re - self.re * o.im) / d,
        }
    }
    fn neg(self) -> C {
        C {
            re: -self.re,
            im: -self.im,
        }
    }
    pub fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn arg(self) -> f64 {
        self.im.atan2(self.re)
    }
    fn ln(self) -> C {
        C {
            re: self.abs().ln(),
            im: self.arg(),
        }
    }
    fn exp(self) -> C {
        let m = self.re.exp();
        if self.im == 0.0 {
            return C::real(m);
        }
        C {
            re: m * self.im.cos(),
            im: m * self.im.sin(),
        }
    }
    fn sqrt(self) -> C {
        if self.im == 0.0 && self.re >= 0.0 {
            return C::real(self.re.sqrt());
        }
        let r = self.abs().sqrt();
        let t = self.arg() / 2.0;
        C {
            re: r * t.cos(),
            im: r * t.sin(),
        }
    }
    fn pow(self, e: C) -> C {
        if e == C::real(0.5) {
            return self.sqrt();
        }
        if e.im == 0.0 {
            if self.im == 0.0 {
                if e.re.fract() == 0.0 || self.re >= 0.0 {
                    return C::real(self.re.powf(e.re));
                }
            } else if e.re.fract() == 0.0 && e.re.abs() <= 64.0 {
                // Repeated multiplication keeps `i^2 = -1` exact.
                let mut acc = C::real(1.0);
                for _ in 0..(e.re.abs() as u32) {
                    acc = acc.mul(self);
                }
                return if e.re < 0.0 {
                    C::real(1.0).div(acc)
                } else {
                    acc
                };
            }
        }
        if self.re == 0.0 && self.im == 0.0 {
            return if e.re > 0.0 {
                C::real(0.0)
            } else {
                C {
                    re: f64::NAN,
                    im: f64::NAN,
                }
            };
        }
        e.mul(self.ln()).exp()
    }
    fn sin(self) -> C {
        if self.im == 0.0 {
            return C::real(self.re.sin());
        }
        C {
            re: self.re.sin() * self.im.cosh(),
            im: self.re.cos() * self.im.sinh(),
        }
    }
    fn cos(self) -> C {
        if self.im == 0.0 {
            return C::real(self.re.cos());
        }
        C {
            re: self.re.cos() * self.im.cosh(),
            im: -self.re.sin() * self.im.sinh(),
        }
    }
    /// True when either part is NaN: the value of an undefined expression.
    pub fn is_nan(self) -> bool {
        self.re.is_nan() || self.im.is_nan()
    }
    pub fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
}

/// Functions an answer may apply by name (`\sin x`, `\ln(2)`, `\log_2 8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Sin,
    Cos,
    Tan,
    Cot,
    Sec,
    Csc,
    Asin,
    Acos,
    Atan,
    Ln,
    Log10,
    Exp,
    Abs,
}

impl Func {
    fn from_command(name: &str) -> Option<Func> {
        Some(match name {
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "tan" | "tg" => Func::Tan,
            "cot" | "ctg" => Func::Cot,
            "sec" => Func::Sec,
            "csc" | "cosec" => Func::Csc,
            "arcsin" => Func::Asin,
            "arccos" => Func::Acos,
            "arctan" => Func::Atan,
            "ln" => Func::Ln,
            "log" | "lg" => Func::Log10,
            "exp" => Func::Exp,
            _ => return None,
        })
    }

    fn apply(self, x: C) -> C {
        let one = C::real(1.0);
        match self {
            Func::Sin => x.sin(),
            Func::Cos => x.cos(),
            Func::Tan => x.sin().div(x.cos()),
            Func::Cot => x.cos().div(x.sin()),
            Func::Sec => one.div(x.cos()),
            Func::Csc => one.div(x.sin()),
            Func::Asin if x.im == 0.0 && x.re.abs() <= 1.0 => C::real(x.re.asin()),
            Func::Acos if x.im == 0.0 && x.re.abs() <= 1.0 => C::real(x.re.acos()),
            Func::Atan if x.im == 0.0 => C::real(x.re.atan()),
            Func::Asin | Func::Acos | Func::Atan => C {
                re: f64::NAN,
                im: f64::NAN,
            },
            Func::Ln => x.ln(),
            Func::Log10 => x.ln().div(C::real(std::f64::consts::LN_10)),
            Func::Exp => x.exp(),
            Func::Abs => C::real(x.abs()),
        }
    }
}

/// An expression tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Num(f64),
    Var(String),
    Pi,
    E,
    I,
    Inf,
    Neg(Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    Mul(Box<Expr>, Box<Expr>),
    Div(Box<Expr>, Box<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    /// `log_b(x)`: base, argument.
    Log(Box<Expr>, Box<Expr>),
    Func(Func, Box<Expr>),
    Fact(Box<Expr>),
    /// `\sum_{k=lo}^{hi} body` (or `\prod`, with `product`): the index variable is bound in `body`.
    Series {
        product: bool,
        index: String,
        lo: Box<Expr>,
        hi: Box<Expr>,
        body: Box<Expr>,
    },
}

impl Expr {
    /// Value of the tree with variables bound by `env` (unbound variables are NaN).
    pub fn eval(&self, env: &[(String, C)]) -> C {
        let mut budget = MAX_SERIES_TERMS;
        self.eval_within(env, &mut budget)
    }

    /// [`Expr::eval`], spending at most `budget` summand evaluations on series.
    fn eval_within(&self, env: &[(String, C)], budget: &mut usize) -> C {
        match self {
            Expr::Num(v) => C::real(*v),
            Expr::Var(name) => env.iter().find(|(n, _)| n == name).map_or(
                C {
                    re: f64::NAN,
                    im: f64::NAN,
                },
                |(_, v)| *v,
            ),
            Expr::Pi => C::real(std::f64::consts::PI),
            Expr::E => C::real(std::f64::consts::E),
            Expr::I => C { re: 0.0, im: 1.0 },
            Expr::Inf => C::real(f64::INFINITY),
            Expr::Neg(a) => a.eval_within(env, budget).neg(),
            Expr::Add(a, b) => a.eval_within(env, budget).add(b.eval_within(env, budget)),
            Expr::Sub(a, b) => a.eval_within(env, budget).sub(b.eval_within(env, budget)),
            Expr::Mul(a, b) => a.eval_within(env, budget).mul(b.eval_within(env, budget)),
            Expr::Div(a, b) => a.eval_within(env, budget).div(b.eval_within(env, budget)),
            Expr::Pow(a, b) => a.eval_within(env, budget).pow(b.eval_within(env, budget)),
            Expr::Log(b, x) => x
                .eval_within(env, budget)
                .ln()
                .div(b.eval_within(env, budget).ln()),
            Expr::Func(f, a) => f.apply(a.eval_within(env, budget)),
            Expr::Fact(a) => factorial(a.eval_within(env, budget)),
            Expr::Series {
                product,
                index,
                lo,
                hi,
                body,
            } => series(*product, index, lo, hi, body, env, budget),
        }
    }

    /// Names of the free variables.
    pub fn vars(&self, out: &mut BTreeSet<String>) {
        match self {
            Expr::Var(n) => {
                out.insert(n.clone());
            }
            Expr::Num(_) | Expr::Pi | Expr::E | Expr::I | Expr::Inf => {}
            Expr::Neg(a) | Expr::Func(_, a) | Expr::Fact(a) => a.vars(out),
            Expr::Add(a, b)
            | Expr::Sub(a, b)
            | Expr::Mul(a, b)
            | Expr::Div(a, b)
            | Expr::Pow(a, b)
            | Expr::Log(a, b) => {
                a.vars(out);
                b.vars(out);
            }
            Expr::Series {
                index,
                lo,
                hi,
                body,
                ..
            } => {
                lo.vars(out);
                hi.vars(out);
                let mut inner = BTreeSet::new();
                body.vars(&mut inner);
                inner.remove(index);
                out.extend(inner);
            }
        }
    }

    /// Whether `\infty` is written in the tree: only then is an infinite value an answer and not an overflow.
    pub fn has_infinity(&self) -> bool {
        match self {
            Expr::Inf => true,
            Expr::Num(_) | Expr::Var(_) | Expr::Pi | Expr::E | Expr::I => false,
            Expr::Neg(a) | Expr::Func(_, a) | Expr::Fact(a) => a.has_infinity(),
            Expr::Add(a, b)
            | Expr::Sub(a, b)
            | Expr::Mul(a, b)
            | Expr::Div(a, b)
            | Expr::Pow(a, b)
            | Expr::Log(a, b) => a.has_infinity() || b.has_infinity(),
            Expr::Series { body, .. } => body.has_infinity(),
        }
    }

    /// Every `constant` (`Expr::I` or `Expr::E`) in the tree becomes the variable `name`: the index
    /// of a series named `i` or `e`.
    fn replace_constant(&mut self, constant: &Expr, name: &str) {
        if self == constant {
            *self = Expr::Var(name.to_owned());
            return;
        }
        match self {
            Expr::Num(_) | Expr::Var(_) | Expr::Pi | Expr::E | Expr::I | Expr::Inf => {}
            Expr::Neg(a) | Expr::Func(_, a) | Expr::Fact(a) => a.replace_constant(constant, name),
            Expr::Add(a, b)
            | Expr::Sub(a, b)
            | Expr::Mul(a, b)
            | Expr::Div(a, b)
            | Expr::Pow(a, b)
            | Expr::Log(a, b) => {
                a.replace_constant(constant, name);
                b.replace_constant(constant, name);
            }
            Expr::Series { lo, hi, body, .. } => {
                lo.replace_constant(constant, name);
                hi.replace_constant(constant, name);
                body.replace_constant(constant, name);
            }
        }
    }

    /// Whether a series in the tree has a bound with a free variable (`\sum_{k=0}^{n-1}`): such a
    /// series is compared by its bounds and summand (see [`SERIES_FINGERPRINT`]), so a closed form of
    /// it (`\frac{n(n+1)}{2}` for `\sum_{k=1}^{n} k`) is not recognised.
    pub fn has_symbolic_series(&self) -> bool {
        match self {
            Expr::Num(_) | Expr::Var(_) | Expr::Pi | Expr::E | Expr::I | Expr::Inf => false,
            Expr::Neg(a) | Expr::Func(_, a) | Expr::Fact(a) => a.has_symbolic_series(),
            Expr::Add(a, b)
            | Expr::Sub(a, b)
            | Expr::Mul(a, b)
            | Expr::Div(a, b)
            | Expr::Pow(a, b)
            | Expr::Log(a, b) => a.has_symbolic_series() || b.has_symbolic_series(),
            Expr::Series { lo, hi, body, .. } => {
                let mut bound_vars = BTreeSet::new();
                lo.vars(&mut bound_vars);
                hi.vars(&mut bound_vars);
                !bound_vars.is_empty() || body.has_symbolic_series()
            }
        }
    }

    /// The variable name when the tree is a single variable (the `x` of `x = 3`).
    pub fn as_var(&self) -> Option<&str> {
        match self {
            Expr::Var(n) => Some(n),
            _ => None,
        }
    }

    /// True when the tree only names something: a variable or a product of variables (`AB`, and
    /// `f(x)`, which reads as `f` times `x`), as in the labelled answers `AB = 4` or `f(x) = 1`.
    /// Also a ratio or an absolute value of labels (`\\frac{NO}{BO} = ...`, `|AB| = 1`).
    pub fn is_label(&self) -> bool {
        match self {
            Expr::Var(_) => true,
            Expr::Mul(a, b) | Expr::Div(a, b) => a.is_label() && b.is_label(),
            Expr::Func(Func::Abs, a) => a.is_label(),
            _ => false,
        }
    }

    /// True for a variable or a product of variables: a quantity named by letters (`x`, `AB`, and
    /// `f(x)`, which reads as `f` times `x`), the middle of `0 < f(x) < 1`; also the absolute value
    /// of one (`1 \le |z| \le 2`: the range of `|z|`).
    pub fn is_named_quantity(&self) -> bool {
        match self {
            Expr::Var(_) => true,
            Expr::Func(Func::Abs, a) => a.is_named_quantity(),
            Expr::Mul(a, b) => a.is_named_quantity() && b.is_named_quantity(),
            _ => false,
        }
    }
}

/// The value of `\sum`/`\prod_{index=lo}^{hi} body` at `env`: the exact sum (product) when both
/// bounds are integers, within `budget` summand evaluations; the fingerprint of
/// [`SERIES_FINGERPRINT`] when a bound is not an integer (a symbolic bound at a random point).
fn series(
    product: bool,
    index: &str,
    lo: &Expr,
    hi: &Expr,
    body: &Expr,
    env: &[(String, C)],
    budget: &mut usize,
) -> C {
    let nan = C {
        re: f64::NAN,
        im: f64::NAN,
    };
    let (l, h) = (lo.eval_within(env, budget), hi.eval_within(env, budget));
    if !l.is_finite() || !h.is_finite() || l.im != 0.0 || h.im != 0.0 {
        // An infinite series is not summed.
        return nan;
    }
    let (l, h) = (l.re, h.re);
    let mut inner = Vec::with_capacity(env.len() + 1);
    inner.push((index.to_owned(), C::real(l)));
    inner.extend_from_slice(env);
    if l.fract() == 0.0 && h.fract() == 0.0 {
        let mut acc = C::real(if product { 1.0 } else { 0.0 });
        let terms = h - l + 1.0;
        if terms <= 0.0 {
            return acc; // an empty sum is 0, an empty product 1
        }
        if terms > *budget as f64 {
            *budget = 0;
            return nan;
        }
        for j in 0..terms as usize {
            *budget = budget.saturating_sub(1);
            inner[0].1 = C::real(l + j as f64);
            let v = body.eval_within(&inner, budget);
            acc = if product { acc.mul(v) } else { acc.add(v) };
        }
        return acc;
    }
    let mut acc = C::real(0.37 * l + 0.61 * h + if product { 0.577 } else { 0.0 });
    for (at, weight) in SERIES_FINGERPRINT {
        inner[0].1 = C::real(l + (h - l) * at);
        acc = acc.add(body.eval_within(&inner, budget).mul(C::real(weight)));
    }
    acc
}

fn factorial(x: C) -> C {
    if x.im != 0.0 || x.re < 0.0 || x.re.fract() != 0.0 {
        return C {
            re: f64::NAN,
            im: f64::NAN,
        };
    }
    if x.re > 170.0 {
        return C::real(f64::INFINITY);
    }
    let mut acc = 1.0;
    let mut k = 2.0;
    while k <= x.re {
        acc *= k;
        k += 1.0;
    }
    C::real(acc)
}

/// Parses a whole string as one expression.
pub(crate) fn parse_expr(s: &str) -> Result<Expr, String> {
    let mut p = Parser {
        s: s.as_bytes(),
        pos: 0,
        depth: 0,
        abs_depth: 0,
    };
    let e = p.expr()?;
    p.ws();
    if p.pos < p.s.len() {
        return Err(format!(
            "unexpected `{}` at byte {}",
            p.rest_preview(),
            p.pos
        ));
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
    abs_depth: usize,
}

const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
];

impl Parser<'_> {
    fn rest_preview(&self) -> String {
        let end = (self.pos + 12).min(self.s.len());
        String::from_utf8_lossy(&self.s[self.pos..end]).into_owned()
    }

    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The command name at the cursor (`\frac` gives `frac`) without consuming it.
    fn peek_command(&mut self) -> Option<&str> {
        self.ws();
        if self.s.get(self.pos) != Some(&b'\\') {
            return None;
        }
        let start = self.pos + 1;
        let mut end = start;
        while end < self.s.len() && self.s[end].is_ascii_alphabetic() {
            end += 1;
        }
        if end == start {
            // A one-symbol command such as `\{` or `\%`.
            return self
                .s
                .get(start)
                .and_then(|_| std::str::from_utf8(&self.s[start..start + 1]).ok());
        }
        std::str::from_utf8(&self.s[start..end]).ok()
    }

    fn eat_command(&mut self, name: &str) -> bool {
        if self.peek_command() == Some(name) {
            self.pos += 1 + name.len();
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, String> {
        self.enter()?;
        let mut lhs = self.term()?;
        loop {
            if self.eat(b'+') {
                let rhs = self.term()?;
                lhs = Expr::Add(Box::new(lhs), Box::new(rhs));
            } else if self.eat(b'-') {
                let rhs = self.term()?;
                lhs = Expr::Sub(Box::new(lhs), Box::new(rhs));
            } else {
                break;
            }
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn term(&mut self) -> Result<Expr, String> {
        self.enter()?;
        let starts_with_integer = self.peek().is_some_and(|b| b.is_ascii_digit());
        let mut lhs = self.unary()?;
        let mut factors = 1;
        loop {
            if self.eat(b'*') || self.eat_command("cdot") || self.eat_command("times") {
                let rhs = self.unary()?;
                lhs = Expr::Mul(Box::new(lhs), Box::new(rhs));
            } else if self.eat(b'/') || self.eat_command("div") {
                let rhs = self.unary()?;
                lhs = Expr::Div(Box::new(lhs), Box::new(rhs));
            } else if self.starts_atom() {
                let rhs = self.power()?;
                lhs = if factors == 1
                    && starts_with_integer
                    && is_integer_literal(&lhs)
                    && is_simple_fraction(&rhs)
                {
                    // A mixed number: `137 \frac{1}{2}` is 137.5, not 68.5.
                    Expr::Add(Box::new(lhs), Box::new(rhs))
                } else {
                    Expr::Mul(Box::new(lhs), Box::new(rhs))
                };
            } else {
                break;
            }
            factors += 1;
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.enter()?;
        let e = if self.eat(b'-') {
            Expr::Neg(Box::new(self.unary()?))
        } else if self.eat(b'+') {
            self.unary()?
        } else {
            self.power()?
        };
        self.depth -= 1;
        Ok(e)
    }

    fn power(&mut self) -> Result<Expr, String> {
        self.enter()?;
        let mut base = self.postfix()?;
        while self.eat(b'^') {
            let exp = self.script_arg()?;
            base = Expr::Pow(Box::new(base), Box::new(exp));
            while self.eat(b'!') {
                base = Expr::Fact(Box::new(base));
            }
        }
        self.depth -= 1;
        Ok(base)
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.atom()?;
        while self.eat(b'!') {
            e = Expr::Fact(Box::new(e));
        }
        Ok(e)
    }

    /// Whether the next token can begin a factor of an implicit product (`2x`, `3\sqrt{2}`, `(a+1)(b+2)`).
    fn starts_atom(&mut self) -> bool {
        match self.peek() {
            Some(b) if b.is_ascii_alphanumeric() || b == b'(' || b == b'{' || b == b'.' => true,
            Some(b'|') => self.abs_depth == 0,
            Some(b'\\') => match self.peek_command() {
                Some(c) => {
                    matches!(
                        c,
                        "frac"
                            | "dfrac"
                            | "tfrac"
                            | "sqrt"
                            | "pi"
                            | "infty"
                            | "left"
                            | "mathrm"
                            | "operatorname"
                            | "sum"
                            | "prod"
                    ) || GREEK.contains(&c)
                        || Func::from_command(c).is_some()
                }
                None => false,
            },
            _ => false,
        }
    }

    /// The argument of `^`, `_`, `\frac` and `\sqrt`: a braced group, or one digit, letter or command.
    fn script_arg(&mut self) -> Result<Expr, String> {
        self.enter()?;
        let e = match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let e = self.expr()?;
                if !self.eat(b'}') {
                    return Err("unbalanced `{`".into());
                }
                e
            }
            Some(b) if b.is_ascii_digit() => {
                self.pos += 1;
                Expr::Num(f64::from(b - b'0'))
            }
            Some(b'-') => {
                self.pos += 1;
                Expr::Neg(Box::new(self.script_arg()?))
            }
            Some(b'(') => self.atom()?,
            Some(b) if b.is_ascii_alphabetic() => {
                self.pos += 1;
                letter_atom(b)
            }
            Some(b'\\') => self.atom()?,
            _ => return Err(format!("missing argument at byte {}", self.pos)),
        };
        self.depth -= 1;
        Ok(e)
    }

    fn number(&mut self) -> Result<Expr, String> {
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        if self.s.get(self.pos) == Some(&b'.')
            && self.s.get(self.pos + 1).is_some_and(u8::is_ascii_digit)
        {
            self.pos += 1;
            while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
                self.pos += 1;
            }
        } else if self.s.get(self.pos) == Some(&b'.') && self.pos > start {
            // `5.` is 5.
            self.pos += 1;
        }
        // Scientific notation `6.72e-5`, only when digits follow, so `2e` stays 2 times e.
        if matches!(self.s.get(self.pos), Some(b'e' | b'E')) {
            let mut k = self.pos + 1;
            if matches!(self.s.get(k), Some(b'+' | b'-')) {
                k += 1;
            }
            if self.s.get(k).is_some_and(u8::is_ascii_digit) {
                while k < self.s.len() && self.s[k].is_ascii_digit() {
                    k += 1;
                }
                self.pos = k;
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).map_err(|e| e.to_string())?;
        let text = text.trim_end_matches('.');
        text.parse::<f64>()
            .map(Expr::Num)
            .map_err(|_| format!("bad number `{text}`"))
    }

    fn group(&mut self, close: u8) -> Result<Expr, String> {
        let e = self.expr()?;
        if !self.eat(close) {
            return Err(format!("expected `{}` at byte {}", close as char, self.pos));
        }
        Ok(e)
    }

    fn atom(&mut self) -> Result<Expr, String> {
        self.enter()?;
        let e = match self.peek() {
            None => return Err("unexpected end of input".into()),
            Some(b) if b.is_ascii_digit() || b == b'.' => self.number()?,
            Some(b) if b.is_ascii_alphabetic() => {
                self.pos += 1;
                let mut e = letter_atom(b);
                if let Expr::Var(name) = &mut e {
                    if self.eat(b'_') {
                        let sub = self.subscript_text()?;
                        name.push('_');
                        name.push_str(&sub);
                    }
                }
                e
            }
            Some(b'(') => {
                self.pos += 1;
                self.group(b')')?
            }
            Some(b'[') => {
                self.pos += 1;
                self.group(b']')?
            }
            Some(b'{') => {
                self.pos += 1;
                self.group(b'}')?
            }
            Some(b'|') => {
                self.pos += 1;
                self.abs_depth += 1;
                let inner = self.expr()?;
                self.abs_depth -= 1;
                if !self.eat(b'|') {
                    return Err("unbalanced `|`".into());
                }
                Expr::Func(Func::Abs, Box::new(inner))
            }
            Some(b'\\') => self.command()?,
            Some(b) => return Err(format!("unexpected `{}` at byte {}", b as char, self.pos)),
        };
        self.depth -= 1;
        Ok(e)
    }

    /// A subscript kept as text (`x_1`, `a_{n}`), because it names a variable rather than computing anything.
    fn subscript_text(&mut self) -> Result<String, String> {
        self.ws();
        if self.eat(b'{') {
            let start = self.pos;
            while self.pos < self.s.len() && self.s[self.pos] != b'}' {
                if self.s[self.pos] == b'{' {
                    return Err("nested braces in a subscript".into());
                }
                self.pos += 1;
            }
            let text = String::from_utf8_lossy(&self.s[start..self.pos]).replace(' ', "");
            if !self.eat(b'}') {
                return Err("unbalanced `{` in a subscript".into());
            }
            Ok(text)
        } else if let Some(&b) = self.s.get(self.pos) {
            if b.is_ascii_alphanumeric() {
                self.pos += 1;
                Ok((b as char).to_string())
            } else {
                Err("bad subscript".into())
            }
        } else {
            Err("empty subscript".into())
        }
    }

    fn command(&mut self) -> Result<Expr, String> {
        let Some(name) = self.peek_command().map(str::to_owned) else {
            return Err("stray backslash".into());
        };
        self.pos += 1 + name.len();
        Ok(match name.as_str() {
            "frac" | "dfrac" | "tfrac" | "cfrac" => {
                let num = self.script_arg()?;
                let den = self.script_arg()?;
                Expr::Div(Box::new(num), Box::new(den))
            }
            "sqrt" => {
                if self.eat(b'[') {
                    let index = self.group(b']')?;
                    let radicand = self.script_arg()?;
                    Expr::Pow(
                        Box::new(radicand),
                        Box::new(Expr::Div(Box::new(Expr::Num(1.0)), Box::new(index))),
                    )
                } else {
                    let radicand = self.script_arg()?;
                    Expr::Pow(Box::new(radicand), Box::new(Expr::Num(0.5)))
                }
            }
            "pi" => Expr::Pi,
            "infty" | "infinity" => Expr::Inf,
            "sum" | "prod" => self.series(name == "prod")?,
            "left" => {
                // `\left(`: normalisation usually removed these; accept a leftover one as the bracket it wraps.
                match self.peek() {
                    Some(b'(') => {
                        self.pos += 1;
                        let e = self.expr()?;
                        self.eat_command("right");
                        if !self.eat(b')') {
                            return Err("unbalanced `\\left(`".into());
                        }
                        e
                    }
                    Some(b'|') => {
                        self.pos += 1;
                        let e = self.expr()?;
                        self.eat_command("right");
                        if !self.eat(b'|') {
                            return Err("unbalanced `\\left|`".into());
                        }
                        Expr::Func(Func::Abs, Box::new(e))
                    }
                    _ => return Err("unsupported `\\left`".into()),
                }
            }
            "mathrm" | "operatorname" => {
                // `\mathrm{e}`, `\operatorname{lcm}`: only names we can evaluate are accepted.
                if !self.eat(b'{') {
                    return Err(format!("`\\{name}` without braces"));
                }
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_alphabetic() {
                    self.pos += 1;
                }
                let inner = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                if !self.eat(b'}') {
                    return Err(format!("bad `\\{name}`"));
                }
                match (inner.as_str(), Func::from_command(&inner)) {
                    ("e", _) => Expr::E,
                    ("i", _) => Expr::I,
                    (_, Some(f)) => self.apply_func(f)?,
                    (s, None) if s.len() == 1 => Expr::Var(s.to_owned()),
                    _ => return Err(format!("unknown function `{inner}`")),
                }
            }
            n if GREEK.contains(&n) => Expr::Var(n.to_owned()),
            n => match Func::from_command(n) {
                Some(f) => self.apply_func(f)?,
                None => return Err(format!("unsupported command `\\{n}`")),
            },
        })
    }

    /// `\sum_{k=0}^{n-1} F_k F_{n-k-1}` after its command: the limits in either order (`\limits`
    /// allowed), then the summand, which is the product that follows (`\sum_{k=1}^{3} k^2 + 1` is
    /// the sum of `k^2`, plus 1), as the notation is read. Both limits are required: a bare
    /// `\sum_k` names no range to sum over.
    fn series(&mut self, product: bool) -> Result<Expr, String> {
        self.enter()?;
        self.eat_command("limits");
        let mut index_lo = None;
        let mut hi = None;
        for _ in 0..2 {
            if index_lo.is_none() && self.eat(b'_') {
                if !self.eat(b'{') {
                    return Err("a sum's lower limit needs braces: `_{k=1}`".into());
                }
                self.ws();
                let start = self.pos;
                while self.s.get(self.pos).is_some_and(u8::is_ascii_alphabetic) {
                    self.pos += 1;
                }
                let index = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                if index.is_empty() || !self.eat(b'=') {
                    return Err("a sum's lower limit is not `index = value`".into());
                }
                let lo = self.group(b'}')?;
                index_lo = Some((index, lo));
            } else if hi.is_none() && self.eat(b'^') {
                hi = Some(self.script_arg()?);
            }
        }
        let (Some((index, lo)), Some(hi)) = (index_lo, hi) else {
            return Err("a sum without both limits".into());
        };
        let mut body = self.term()?;
        // `\sum_{i=1}^{n} i`: the index is a variable, not the imaginary unit (nor `e`).
        if let Some(constant) = match index.as_str() {
            "i" => Some(Expr::I),
            "e" => Some(Expr::E),
            _ => None,
        } {
            body.replace_constant(&constant, &index);
        }
        self.depth -= 1;
        Ok(Expr::Series {
            product,
            index,
            lo: Box::new(lo),
            hi: Box::new(hi),
            body: Box::new(body),
        })
    }

    /// `\sin x`, `\sin^2 x`, `\sin(2x)`, `\log_2 8`: the argument without brackets is the tight product that
    /// follows (`\sin 2x` is sin(2x)), which is how the notation is read.
    fn apply_func(&mut self, f: Func) -> Result<Expr, String> {
        self.enter()?;
        let mut power = None;
        let mut base = None;
        loop {
            if self.eat(b'^') {
                power = Some(self.script_arg()?);
            } else if f == Func::Log10 && self.eat(b'_') {
                base = Some(self.script_arg()?);
            } else {
                break;
            }
        }
        let arg = match self.peek() {
            Some(b'(') | Some(b'{') => self.power()?,
            _ => {
                let mut e = self.power()?;
                while self.starts_atom()
                    && self
                        .peek_command()
                        .is_none_or(|c| Func::from_command(c).is_none())
                {
                    let rhs = self.power()?;
                    e = Expr::Mul(Box::new(e), Box::new(rhs));
                }
                e
            }
        };
        let mut e = match base {
            Some(b) => Expr::Log(Box::new(b), Box::new(arg)),
            None if f == Func::Log10 => {
                // Bare `\log` in competition answers is almost always the natural log.
                Expr::Func(Func::Ln, Box::new(arg))
            }
            None => Expr::Func(f, Box::new(arg)),
        };
        if let Some(p) = power {
            e = if matches!(p, Expr::Neg(_)) {
                // `\sin^{-1}` is the inverse function, not a reciprocal.
                match f {
                    Func::Sin | Func::Cos | Func::Tan => match e {
                        Expr::Func(_, a) => Expr::Func(
                            match f {
                                Func::Sin => Func::Asin,
                                Func::Cos => Func::Acos,
                                _ => Func::Atan,
                            },
                            a,
                        ),
                        other => other,
                    },
                    _ => Expr::Pow(Box::new(e), Box::new(p)),
                }
            } else {
                Expr::Pow(Box::new(e), Box::new(p))
            };
        }
        self.depth -= 1;
        Ok(e)
    }
}

fn letter_atom(b: u8) -> Expr {
    match b {
        b'e' => Expr::E,
        b'i' => Expr::I,
        _ => Expr::Var((b as char).to_string()),
    }
}

fn is_integer_literal(e: &Expr) -> bool {
    matches!(e, Expr::Num(v) if v.fract() == 0.0 && *v >= 0.0)
}

fn is_simple_fraction(e: &Expr) -> bool {
    matches!(e, Expr::Div(a, b) if is_integer_literal(a) && is_integer_literal(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(s: &str) -> C {
        parse_expr(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .eval(&[])
    }

    fn close(a: C, b: f64) -> bool {
        (a.re - b).abs() < 1e-9 * b.abs().max(1.0) && a.im.abs() < 1e-9
    }

    #[test]
    fn fractions_in_every_spelling() {
        for s in [
            "\\frac{3}{4}",
            "\\frac34",
            "\\dfrac{3}{4}",
            "3/4",
            "\\frac 34",
            "\\tfrac{3}{4}",
        ] {
            assert!(close(val(s), 0.75), "{s}");
        }
        assert!(close(val("\\frac9{19}"), 9.0 / 19.0));
        assert!(close(val("\\frac{270}7"), 270.0 / 7.0));
    }

    #[test]
    fn radicals_powers_and_implicit_products() {
        assert!(close(val("11\\sqrt2"), 11.0 * 2f64.sqrt()));
        assert!(close(val("2\\sqrt{113}"), 2.0 * 113f64.sqrt()));
        assert!(close(val("\\sqrt[3]{27}"), 3.0));
        assert!(close(val("2^{10}"), 1024.0));
        assert!(close(val("2^3^2"), 64.0));
        assert!(close(val("-3^2"), -9.0));
        assert!(close(val("(1+2)(3+4)"), 21.0));
        assert!(close(val("12\\pi"), 12.0 * std::f64::consts::PI));
        assert!(close(val("5!"), 120.0));
    }

    #[test]
    fn mixed_numbers_add() {
        assert!(close(val("137 \\frac{1}{2}"), 137.5));
        assert!(close(val("1\\frac{4}{5}"), 1.8));
        // Only an integer literal followed by a numeric fraction is a mixed number.
        assert!(close(val("\\pi\\frac{1}{2}"), std::f64::consts::PI / 2.0));
    }

    #[test]
    fn complex_numbers_and_functions() {
        let v = val("-2 + 7i");
        assert!(v.re == -2.0 && v.im == 7.0);
        assert!(close(val("i^2"), -1.0));
        assert!(close(val("\\sin\\frac{\\pi}{6}"), 0.5));
        assert!(close(val("\\log_2 8"), 3.0));
        let e = parse_expr("\\sin^2 x + \\cos^2 x").unwrap();
        assert!(close(e.eval(&[("x".into(), C::real(0.7))]), 1.0));
    }

    #[test]
    fn scientific_notation() {
        assert!(close(val("6.72e-5"), 6.72e-5));
        assert!(close(val("6.72\\times10^{-5}"), 6.72e-5));
        assert!(close(val("2e"), 2.0 * std::f64::consts::E));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for s in [
            "\\frac{1}{",
            "(((",
            "\\sqrt",
            "1+",
            "\\foo{3}",
            "|x",
            "x_{",
            "^^",
        ] {
            assert!(parse_expr(s).is_err(), "{s}");
        }
        let deep = "(".repeat(10_000) + "1" + &")".repeat(10_000);
        assert!(parse_expr(&deep).unwrap_err().contains("deeper"));
        assert!(val("\\frac{1}{0}").is_nan());
        assert!(!val("10^{10^{10}}").is_finite());
    }

    #[test]
    fn finite_series_are_summed() {
        assert!(close(val("\\sum_{k=1}^{10} k^2"), 385.0));
        assert!(close(val("\\sum^{3}_{k=1} k + 1"), 7.0));
        assert!(close(val("\\prod_{j=1}^{5} j"), 120.0));
        assert!(close(val("2\\sum_{i=1}^{3}\\sum_{j=1}^{i} j"), 20.0));
        assert!(close(val("\\sum_{k=5}^{4} k"), 0.0));
        for s in [
            "\\sum_k k",
            "\\sum_{k=1} k",
            "\\sum_{=1}^{3} k",
            "\\sum^{3}",
        ] {
            assert!(parse_expr(s).is_err(), "{s}");
        }
        let vars = |s: &str| {
            let mut v = BTreeSet::new();
            parse_expr(s).unwrap().vars(&mut v);
            v.into_iter().collect::<Vec<_>>()
        };
        assert_eq!(vars("\\sum_{k=0}^{n-1} k x"), ["n", "x"]);
    }

    #[test]
    fn long_or_infinite_series_are_undefined_and_fast() {
        let t = std::time::Instant::now();
        assert!(val("\\sum_{k=1}^{10^{12}} k").is_nan());
        assert!(val("\\sum_{k=1}^{\\infty} \\frac{1}{k^2}").is_nan());
        let nested = "\\sum_{a=1}^{400}".repeat(6) + " a";
        assert!(val(&nested).is_nan());
        assert!(t.elapsed().as_secs_f64() < 1.0);
    }
}
