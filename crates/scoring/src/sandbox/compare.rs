//! LiveCodeBench's comparison of a program's stdout with the expected output.
//!
//! The reference strips the whole text, splits on `\n`, strips each line, and requires the same
//! number of lines. Lines that differ as text are compared as whitespace-separated lists of
//! Python `Decimal`s (so `1.0` equals `1` and `1e2` equals `100`, but `0.30000001` does not
//! equal `0.3`: there is no tolerance). This module reproduces that, including Python's notion of
//! whitespace and `Decimal`'s string syntax, without running Python.

/// Where actual and expected output first disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// 0-based line index of the first differing line, or `None` when the line counts differ.
    pub line: Option<usize>,
    /// The expected line (or the whole expected text when counts differ), truncated.
    pub expected: String,
    /// The produced line (or the whole produced text when counts differ), truncated.
    pub got: String,
}

/// Compares as LiveCodeBench does; `Ok(())` means the test passes.
///
/// ```
/// use reprolm_scoring::sandbox::compare_output;
/// assert!(compare_output("1.0 2\n\n", " 1 2.00").is_ok());
/// assert_eq!(compare_output("1 2\n", "1 3").unwrap_err().line, Some(0));
/// ```
pub fn compare_output(got: &str, expected: &str) -> Result<(), Mismatch> {
    let got_lines = stripped_lines(got);
    let want_lines = stripped_lines(expected);
    if got_lines.len() != want_lines.len() {
        return Err(Mismatch {
            line: None,
            expected: truncate(expected),
            got: truncate(got),
        });
    }
    for (i, (g, w)) in got_lines.iter().zip(&want_lines).enumerate() {
        if g == w {
            continue;
        }
        let same = match (decimal_line(g), decimal_line(w)) {
            (Some(a), Some(b)) => a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.equals(y)),
            _ => false,
        };
        if !same {
            return Err(Mismatch {
                line: Some(i),
                expected: truncate(w),
                got: truncate(g),
            });
        }
    }
    Ok(())
}

/// Python's `str.isspace` (Rust's `char::is_whitespace` lacks U+001C..U+001F).
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn stripped_lines(text: &str) -> Vec<&str> {
    text.trim_matches(py_space)
        .split('\n')
        .map(|l| l.trim_matches(py_space))
        .collect()
}

/// The reference's `truncatefn`: long values keep their first and last 150 characters.
pub(crate) fn truncate(s: &str) -> String {
    const LEN: usize = 300;
    let n = s.chars().count();
    if n <= LEN {
        return s.to_string();
    }
    let head: String = s.chars().take(LEN / 2).collect();
    let tail: String = s.chars().skip(n - LEN / 2).collect();
    format!("{head}...(truncated) ...{tail}")
}

fn decimal_line(line: &str) -> Option<Vec<Decimal>> {
    line.split(py_space)
        .filter(|t| !t.is_empty())
        .map(Decimal::parse)
        .collect()
}

/// A Python `Decimal` reduced to what equality needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decimal {
    /// `digits * 10^exp`, digits without leading or trailing zeros (empty for zero).
    Finite {
        negative: bool,
        digits: String,
        exp: i128,
    },
    Infinity {
        negative: bool,
    },
    /// NaN compares unequal to everything, itself included.
    NaN,
}

impl Decimal {
    fn equals(&self, other: &Decimal) -> bool {
        match (self, other) {
            (Decimal::NaN, _) | (_, Decimal::NaN) => false,
            (Decimal::Finite { digits: a, .. }, Decimal::Finite { digits: b, .. })
                if a.is_empty() && b.is_empty() =>
            {
                true
            }
            _ => self == other,
        }
    }

    /// Parses Python's `Decimal(str)` syntax: sign, digits with optional `_` separators, a
    /// fraction, an exponent; `Inf`, `Infinity`, `NaN`, `sNaN` in any case. Only ASCII digits
    /// (Python also takes other Unicode decimal digits; a program printing those is rare enough).
    fn parse(token: &str) -> Option<Decimal> {
        let (negative, body) = match token.as_bytes().first()? {
            b'-' => (true, &token[1..]),
            b'+' => (false, &token[1..]),
            _ => (false, token),
        };
        let lower = body.to_ascii_lowercase();
        if lower == "inf" || lower == "infinity" {
            return Some(Decimal::Infinity { negative });
        }
        for nan in ["nan", "snan"] {
            if let Some(payload) = lower.strip_prefix(nan) {
                return (payload.is_empty() || digits_ok(payload)).then_some(Decimal::NaN);
            }
        }
        let (mantissa, exp) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let exp: i128 = match exp {
            None => 0,
            Some(e) => {
                let (neg, digits) = match e.as_bytes().first()? {
                    b'-' => (true, &e[1..]),
                    b'+' => (false, &e[1..]),
                    _ => (false, e),
                };
                if !digits_ok(digits) {
                    return None;
                }
                let v = digits
                    .replace('_', "")
                    .parse::<i128>()
                    .unwrap_or(i128::MAX / 4);
                if neg {
                    -v
                } else {
                    v
                }
            }
        };
        let (int, frac) = match mantissa.find('.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if (!int.is_empty() && !digits_ok(int)) || (!frac.is_empty() && !digits_ok(frac)) {
            return None;
        }
        let mut digits: String = int
            .chars()
            .chain(frac.chars())
            .filter(|c| *c != '_')
            .collect();
        let mut exp = exp - frac.chars().filter(|c| *c != '_').count() as i128;
        let trimmed = digits.trim_start_matches('0').len();
        digits.drain(..digits.len() - trimmed);
        while digits.ends_with('0') {
            digits.pop();
            exp += 1;
        }
        if digits.is_empty() {
            exp = 0;
        }
        Some(Decimal::Finite {
            negative,
            digits,
            exp,
        })
    }
}

/// ASCII digits, with single underscores only between digits (Python's numeric literal rule).
fn digits_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_digit()
        && b[b.len() - 1].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_digit() || *c == b'_')
        && !s.contains("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(a: &str, b: &str) -> bool {
        Decimal::parse(a)
            .unwrap()
            .equals(&Decimal::parse(b).unwrap())
    }

    #[test]
    fn decimals_compare_by_value_like_python() {
        assert!(eq("1", "1.0"));
        assert!(eq("1e2", "100"));
        assert!(eq("-0", "0.000"));
        assert!(eq("1_000", "1000"));
        assert!(eq(".5", "0.50"));
        assert!(eq("5.", "5"));
        assert!(eq("-Infinity", "-inf"));
        assert!(!eq("Infinity", "-inf"));
        assert!(!eq("NaN", "NaN"));
        assert!(!eq("0.30000001", "0.3"));
        assert!(!eq("50000000000000000", "50000000000000001"));
        for bad in [
            "", ".", "1..2", "1e", "abc", "1__0", "_1", "0x10", "1e2.5", "--1",
        ] {
            assert!(Decimal::parse(bad).is_none(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn output_comparison_follows_the_reference() {
        assert!(compare_output("YES\nNO\n", "YES\nNO").is_ok());
        assert!(compare_output("  3 4 \r\n5\n\n\n", "3 4\n5").is_ok());
        assert!(
            compare_output("3   4", "3 4").is_ok(),
            "numeric lines compare token-wise"
        );
        assert!(
            compare_output("a   b", "a b").is_err(),
            "text lines compare exactly"
        );
        assert!(compare_output("yes", "YES").is_err(), "no case folding");
        let m = compare_output("1\n2\n", "1\n2\n3\n").unwrap_err();
        assert_eq!(m.line, None);
        let m = compare_output("1\n2.5\n", "1\n2.4\n").unwrap_err();
        assert_eq!(
            (m.line, m.expected.as_str(), m.got.as_str()),
            (Some(1), "2.4", "2.5")
        );
        assert!(compare_output("", "").is_ok());
        assert!(
            compare_output("\u{1f}1\u{1f}", "1").is_ok(),
            "python strips U+001F"
        );
    }

    #[test]
    fn truncation_keeps_both_ends() {
        let long = "x".repeat(200) + &"y".repeat(200);
        let t = truncate(&long);
        assert!(t.starts_with(&"x".repeat(150)) && t.ends_with(&"y".repeat(150)));
        assert!(t.contains("...(truncated) ..."));
    }
}
