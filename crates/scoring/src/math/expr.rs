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
}

impl Expr {
    /// Value of the tree with variables bound by `env` (unbound variables are NaN).
    pub fn eval(&self, env: &[(String, C)]) -> C {
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
            Expr::Neg(a) => a.eval(env).neg(),
            Expr::Add(a, b) => a.eval(env).add(b.eval(env)),
            Expr::Sub(a, b) => a.eval(env).sub(b.eval(env)),
            Expr::Mul(a, b) => a.eval(env).mul(b.eval(env)),
            Expr::Div(a, b) => a.eval(env).div(b.eval(env)),
            Expr::Pow(a, b) => a.eval(env).pow(b.eval(env)),
            Expr::Log(b, x) => x.eval(env).ln().div(b.eval(env).ln()),
            Expr::Func(f, a) => f.apply(a.eval(env)),
            Expr::Fact(a) => factorial(a.eval(env)),
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
}
