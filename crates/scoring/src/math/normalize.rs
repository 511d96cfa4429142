//! String normalisation of an answer before it is parsed.
//!
//! Each step removes one kind of notation that changes how an answer looks but not what it says:
//! math delimiters (and stray `$` inside an answer), `\left`/`\right`, spacing commands, degree
//! signs, currency signs, units, thousands separators (also SI spaces, `1 000`), `x \in`, ASCII
//! relations (`>=`), words and semicolons between listed answers (`6 and 8`), plain braces around a
//! set (`{2, 3}`), plain-text mixed numbers (`1 1/2`). They run in a fixed order (see
//! [`normalize`]) because some depend on others: thousands separators are recognised by their `,\!`
//! before spacing commands are dropped, and units are stripped before the remaining `\text{}`
//! wrappers are unwrapped.

use std::sync::LazyLock;

use regex::Regex;

/// Runs every normalisation step in order.
pub(crate) fn normalize(s: &str) -> String {
    // Before the wrappers are peeled, so that an escaped `\\boxed{5}` is a box.
    let mut s = strip_trailing_punctuation(&undouble_backslashes(s));
    // Wrappers can nest (`$\boxed{5}$`, `"$12$"`); peel a few layers, never loop on input.
    for _ in 0..4 {
        let next = strip_math_delimiters(&strip_boxed(&strip_quotes(&s)));
        if next == s {
            break;
        }
        s = next;
    }
    let s = strip_inner_dollars(&s);
    let s = unicode_to_latex(&s);
    let s = ascii_relations(&s);
    // Before `;` becomes a list separator.
    let s = assignment_groups(&s);
    // Before units are stripped, which would take `\text{ and }` for one.
    let s = list_connectors(&s);
    let s = plain_brace_set(&s);
    let s = strip_thousands_separators(&s);
    let s = repeating_decimals(&s);
    let s = percent_word(&s);
    let s = strip_sizing(&s);
    let s = strip_spacing(&s);
    let s = strip_degrees(&s);
    let s = strip_currency(&s);
    let s = strip_units(&s);
    let s = unwrap_text(&s);
    // `\text{5 cm}` shows its unit only once unwrapped.
    let s = strip_units(&s);
    let s = strip_thousands_separators(&s);
    let s = strip_membership(&s);
    let s = strip_label(&s);
    let s = mixed_number(&s);
    let s = strip_trailing_punctuation(&s);
    collapse_whitespace(&s)
}

/// `\\frac{1}{2}` -> `\frac{1}{2}`: a backslash doubled by escaping (a JSON or source string printed
/// raw) before a command name. Only a run of exactly two backslashes before a letter or brace is
/// undoubled: three are LaTeX's line break `\\` followed by a command (a matrix's last row ended
/// by `\\` before `\end{pmatrix}`), and stay as written.
pub(crate) fn undouble_backslashes(s: &str) -> String {
    if !s.contains(r"\\") {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            // Copy up to the next backslash (whole UTF-8 characters: `\` is ASCII).
            let next = s[i..].find('\\').map_or(b.len(), |j| i + j);
            out.push_str(&s[i..next]);
            i = next;
            continue;
        }
        let run = b[i..].iter().take_while(|&&c| c == b'\\').count();
        let before_name = b
            .get(i + run)
            .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'{' || c == b'}');
        let keep = if run == 2 && before_name { 1 } else { run };
        out.extend(std::iter::repeat_n('\\', keep));
        i += run;
    }
    out
}

/// The regex of a name that labels an answer: a letter with an optional subscript (`x`, `y_1`,
/// `a_{37}`). One pattern for the labels of `strip_label`, `assignment_groups` and the labelled
/// boxes of extraction, so they agree on what a label is.
pub(crate) const LABEL_NAME: &str = r"[A-Za-z](?:_\{?\w+\}?)?";

/// `(p, q) = (3, 2)` -> `(3, 2)`, `V_1 : V_2 = 11 : 21` -> `11 : 21`: a tuple or ratio of names before `=`
/// labels the answer after it.
pub(crate) fn strip_label(s: &str) -> String {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        let name = LABEL_NAME;
        Regex::new(&format!(
            r"^\s*(?:\(\s*{name}(?:\s*,\s*{name})+\s*\)|{name}(?:\s*:\s*{name})+)\s*=\s*"
        ))
        .expect("valid regex")
    });
    let stripped = RE.replace(s, "");
    if stripped.contains('=') {
        s.to_owned()
    } else {
        stripped.into_owned()
    }
}

/// `x >= 2` -> `x \ge 2`, `<=` -> `\le`, `!=` -> `\ne`: the ASCII spellings of relations. A stated
/// approximation is read as an equation when it gives the value (`\approx 3.14`, `x ≈ 3.14`: the
/// value must still agree with the reference to the usual tolerance, so `\approx 1.732` is not
/// `\sqrt 3`), and dropped when it follows one (`x = 1/3 \approx 0.33` is `x = 1/3`).
pub(crate) fn ascii_relations(s: &str) -> String {
    if !s.contains(['<', '>', '!', '\\', '≈']) {
        return s.to_owned();
    }
    let s = s.replace('≈', "\\approx");
    let s = match s.split_once("\\approx") {
        Some((head, _)) if head.contains('=') => head.trim_end().to_owned(),
        Some(_) => s.replace("\\approx", "="),
        None => s,
    };
    s.replace("\\neq", "\\ne")
        .replace(">=", "\\ge ")
        .replace("=>", "\\ge ")
        .replace("<=", "\\le ")
        .replace("=<", "\\le ")
        .replace("!=", "\\ne ")
}

/// `{2, 3, 5}` -> `\{2, 3, 5\}`: a whole answer in plain braces with a comma at its top level is a set
/// (a brace group of LaTeX holds one argument, never a list).
pub(crate) fn plain_brace_set(s: &str) -> String {
    let t = s.trim();
    let b = t.as_bytes();
    if b.first() != Some(&b'{') || matching_brace(b, 0) != Some(b.len() - 1) {
        return s.to_owned();
    }
    let inner = &t[1..t.len() - 1];
    let mut depth = 0i32;
    let top_comma = inner.bytes().any(|c| {
        match c {
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' => depth -= 1,
            b',' if depth == 0 => return true,
            _ => {}
        }
        false
    });
    if top_comma {
        format!("\\{{{inner}\\}}")
    } else {
        s.to_owned()
    }
}

/// `6 and 8`, `1 or -1`, `2; 3` -> `6, 8`, `1, -1`, `2, 3`: words and semicolons between listed answers.
pub(crate) fn list_connectors(s: &str) -> String {
    static WORDS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\s*(?:,\s*)?(?:\\(?:text|textrm|mbox|mathrm)\s*\{\s*(?:and|or)\s*\}|\b(?:and|or)\b)\s*")
            .expect("valid regex")
    });
    let mut out = s.to_owned();
    if out.contains(';') {
        out = out.replace(';', ",");
    }
    let lower = out.to_ascii_lowercase();
    if lower.contains("and") || lower.contains("or") {
        // Only between two answers: not at either end (`\text{or}` alone stays a word).
        let replaced = WORDS.replace_all(&out, ", ").into_owned();
        let r = replaced.trim();
        if !r.starts_with(',') && !r.ends_with(',') {
            out = replaced;
        }
    }
    out
}

/// `1 1/2` -> `(1+1/2)`, `-2 3/4` -> `-(2+3/4)`: a whole answer written as a mixed number (the space would
/// otherwise read as a product).
pub(crate) fn mixed_number(s: &str) -> String {
    static MIXED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^([-+]?)\s*(\d+)\s+(\d+)\s*/\s*(\d+)$").expect("valid regex")
    });
    MIXED.replace(s.trim(), "$1($2+$3/$4)").into_owned()
}

/// `$5$`, `$$5$$`, `\(5\)`, `\[5\]` -> `5`.
pub(crate) fn strip_math_delimiters(s: &str) -> String {
    let t = s.trim();
    for (open, close) in [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")] {
        if t.len() >= open.len() + close.len() && t.starts_with(open) && t.ends_with(close) {
            return t[open.len()..t.len() - close.len()].trim().to_owned();
        }
    }
    t.to_owned()
}

/// `12 $ and $13` -> `12  and 13`: a `$` left inside an answer once its outer delimiters are gone
/// switches math mode on or off around words (`\boxed{12 $ and $13}`), or is a currency sign
/// written without its backslash (`$5`); either way it says nothing about the value. An escaped
/// `\$` stays for the currency step.
pub(crate) fn strip_inner_dollars(s: &str) -> String {
    if !s.contains('$') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if c == '$' && !escaped {
            continue;
        }
        escaped = c == '\\' && !escaped;
        out.push(c);
    }
    out
}

/// Whether the answer opens a `\boxed{` (or `\fbox{`) that is never closed; [`strip_boxed`] reads it
/// to the end of the answer, and the verdict says so. Only answer strings get here: in a whole
/// response, [`crate::extract_answer`] skips a box cut off by the end of the text.
pub(crate) fn unclosed_box(s: &str) -> bool {
    let s = undouble_backslashes(s);
    ["\\boxed", "\\fbox"].iter().any(|cmd| {
        s.match_indices(cmd).any(|(i, _)| {
            let rest = s[i + cmd.len()..].trim_start();
            rest.starts_with('{') && matching_brace(rest.as_bytes(), 0).is_none()
        })
    })
}

/// `"12"`, `\"12\"`, `“12”` -> `12`: quotation marks around a whole answer (`The final answer is
/// "$12$ and $13$"`) only set it apart from the sentence.
pub(crate) fn strip_quotes(s: &str) -> String {
    let t = s.trim();
    for (open, close) in [("\\\"", "\\\""), ("\"", "\""), ("“", "”"), ("``", "''")] {
        if let Some(inner) = t
            .strip_prefix(open)
            .and_then(|rest| rest.strip_suffix(close))
        {
            if !inner.trim().is_empty() && !inner.contains(open) {
                return inner.trim().to_owned();
            }
        }
    }
    t.to_owned()
}

/// `\boxed{5}` or `\fbox{5}` around the whole answer -> `5`.
pub(crate) fn strip_boxed(s: &str) -> String {
    let t = s.trim();
    for cmd in ["\\boxed", "\\fbox"] {
        if let Some(rest) = t.strip_prefix(cmd) {
            let rest = rest.trim_start();
            if !rest.starts_with('{')
                && rest.len() < t.len() - cmd.len()
                && !rest.contains(char::is_whitespace)
            {
                // `\boxed 5`.
                return rest.to_owned();
            }
            if let Some(inner) = rest.strip_prefix('{') {
                match matching_brace(rest.as_bytes(), 0) {
                    Some(end) if end == rest.len() - 1 => return rest[1..end].trim().to_owned(),
                    Some(_) => {}
                    // A box whose brace is never closed holds the rest of the answer: a gold
                    // string that lost its last `}` still says what it says (see
                    // [`unclosed_box`]).
                    None => return inner.trim().to_owned(),
                }
            }
        }
    }
    t.to_owned()
}

/// Removes `\left`, `\right`, `\big` and friends and `\displaystyle`, which only size brackets.
pub(crate) fn strip_sizing(s: &str) -> String {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\\(left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg|displaystyle)\b")
            .expect("valid regex")
    });
    let t = RE.replace_all(s, "");
    // `\left.` / `\right.` leave a lone dot that only balanced an empty side.
    t.into_owned()
}

/// Removes LaTeX spacing: `\!`, `\,`, `\;`, `\:`, `\ `, `~`, `\quad`, `\qquad`.
pub(crate) fn strip_spacing(s: &str) -> String {
    static RE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\\[!,;: ]|\\q?quad\b|~").expect("valid regex"));
    // `\\` (a matrix row break) must survive: hide it while the spacing commands go.
    let hidden = s.replace("\\\\", "\u{1}");
    RE.replace_all(&hidden, " ").replace('\u{1}', "\\\\")
}

/// `30^\circ`, `30^{\circ}`, `30°`, `30\degree` -> `30`.
pub(crate) fn strip_degrees(s: &str) -> String {
    const DEGREE: &str =
        r"(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree\b|\^\s*\{\s*\\degree\s*\})";
    static RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(DEGREE).expect("valid regex"));
    static NUMBER_IN_DEGREES: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(&format!(r"(\d+(?:\.\d+)?)\s*{DEGREE}")).expect("valid regex"));
    // Inside a trigonometric function a degree is a unit of the argument: `\sin(90^\circ - x)` is
    // `\cos x`, so the number becomes radians. Elsewhere (`30^\circ` as an answer) it is dropped.
    if ["\\sin", "\\cos", "\\tan", "\\cot", "\\sec", "\\csc"]
        .iter()
        .any(|f| s.contains(f))
    {
        let radians = NUMBER_IN_DEGREES.replace_all(s, r"(${1}\pi/180)");
        return RE.replace_all(&radians, "").into_owned();
    }
    RE.replace_all(s, "").into_owned()
}

/// `p=5, q=2; p=7, q=2` -> `(5, 2), (7, 2)`: groups of assignments to the same distinct names, in
/// the same order, separated by `;`, are points (`x = -2, x = 1` stays two solutions).
pub(crate) fn assignment_groups(s: &str) -> String {
    static ASSIGN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(&format!(r"^\s*({LABEL_NAME})\s*=\s*([^=]+?)\s*$")).expect("valid regex")
    });
    // One group stays a list of equations (compared as a set, so `a_3 = 2, a_{37} = 19` equals
    // its reordering); only several groups make a list of points.
    if !s.contains('=') || !s.contains(',') || !s.contains(';') {
        return s.to_owned();
    }
    let mut names: Option<Vec<String>> = None;
    let mut points = Vec::new();
    for group in s.split(';') {
        let mut these = Vec::new();
        let mut values = Vec::new();
        for item in top_level_split(group, b',') {
            let Some(c) = ASSIGN.captures(item) else {
                return s.to_owned();
            };
            these.push(c[1].to_owned());
            values.push(c[2].to_owned());
        }
        // `x = -2, x = 1` names two solutions for one variable, not a point.
        let distinct = these
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == these.len();
        if these.len() < 2 || !distinct || names.as_ref().is_some_and(|n| *n != these) {
            return s.to_owned();
        }
        names = Some(these);
        points.push(format!("({})", values.join(", ")));
    }
    points.join(", ")
}

/// `s` split at `sep` where no bracket is open.
fn top_level_split(s: &str, sep: u8) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.bytes().enumerate() {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// `−3`, `12π`, `√5`, `2×3`, `∞` -> LaTeX: models write plain-text answers with Unicode symbols.
pub(crate) fn unicode_to_latex(s: &str) -> String {
    if s.is_ascii() {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // `√19` is the root of 19, while LaTeX's `\sqrt19` would be `\sqrt{1}9`: brace the number.
            '√' if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push_str("\\sqrt{");
                while let Some(d) = chars.next_if(|d| d.is_ascii_digit() || *d == '.') {
                    out.push(d);
                }
                out.push('}');
            }
            '−' | '–' | '—' => out.push('-'),
            '×' => out.push_str("\\times "),
            '·' | '⋅' => out.push_str("\\cdot "),
            '÷' => out.push_str("\\div "),
            'π' => out.push_str("\\pi "),
            '√' => out.push_str("\\sqrt"),
            '∞' => out.push_str("\\infty "),
            '≤' => out.push_str("\\le "),
            '≥' => out.push_str("\\ge "),
            '∪' => out.push_str("\\cup "),
            '±' => out.push_str("\\pm "),
            '\u{a0}' | '\u{2009}' | '\u{202f}' => out.push(' '),
            other => out.push(other),
        }
    }
    out
}

/// `\$18.90` -> `18.90`; a currency sign is never part of the value.
pub(crate) fn strip_currency(s: &str) -> String {
    s.replace("\\$", "").replace("\\textdollar", "")
}

/// Units after a number: `15\mbox{ cm}^2` -> `15`, `5.4 \text{ cents}` -> `5.4`, `12 inches` -> `12`.
/// Only when something numeric remains, so `\text{east}` stays an answer.
pub(crate) fn strip_units(s: &str) -> String {
    static TEXT_GROUP: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\\(?:text|textrm|textnormal|mbox|mathrm)\s*\{\s*[A-Za-z][A-Za-z .]*\}(?:\s*\^\s*\{?\s*[23]\s*\}?)?")
            .expect("valid regex")
    });
    static UNIT_WORDS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)(?:\s+(?:square|sq\.?|cubic)?\s*(?:units?|cm|centimeters?|mm|millimeters?|m|meters?|km|kilometers?|inch(?:es)?|in|feet|foot|ft|yards?|yd|miles?|mi|cents?|dollars?|degrees?|deg|radians?|hours?|hrs?|minutes?|mins?|seconds?|secs?|s|days?|weeks?|months?|years?|mph|pounds?|lbs?|ounces?|oz|grams?|g|kg|liters?|litres?|ml|gallons?|people|students|ways)|(?:cm|mm|km|inches|feet|ft|units|cents|dollars|degrees|mph))(?:\s*\^\s*\{?\s*[23]\s*\}?)?\s*\.?$",
        )
        .expect("valid regex")
    });
    // A unit word of four letters or more glued to the number before it (`10weeks`, `3hours`):
    // the short ones (`2m`, `5s`) could be a product with a variable, so only the list above
    // takes those.
    static GLUED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)(\d)(?:days?|weeks?|hours?|minutes?|seconds?|months?|years?|meters?|metres?|miles?|yards?|pounds?|ounces?|grams?|liters?|litres?|gallons?|centimeters?|millimeters?|kilometers?|inch(?:es)?|people|students|ways)(?:\s*\^\s*\{?\s*[23]\s*\}?)?\s*\.?$",
        )
        .expect("valid regex")
    });
    let has_digit = |t: &str| t.bytes().any(|b| b.is_ascii_digit());
    let mut out = s.to_owned();
    // `\mathrm{e}` and `\mathrm{i}` are Euler's number and the imaginary unit, never units.
    let stripped = TEXT_GROUP
        .replace_all(&out, |c: &regex::Captures| {
            let m = &c[0];
            let inner = m[m.find('{').map_or(0, |i| i + 1)..].trim_start();
            if inner.starts_with("e}") || inner.starts_with("i}") {
                m.to_owned()
            } else {
                String::new()
            }
        })
        .into_owned();
    if has_digit(&stripped) && stripped.trim() != out.trim() {
        out = stripped;
    }
    let stripped = UNIT_WORDS.replace(&out, "").into_owned();
    // `\prod_{m=1}^{4} m`: after a sum's limits a bare letter is its summand, not a unit.
    let series = out.contains("\\sum") || out.contains("\\prod");
    if !series
        && has_digit(&stripped)
        && stripped
            .trim()
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'}')
    {
        out = stripped;
    }
    GLUED.replace(&out, "$1").into_owned()
}

/// `\text{Evelyn}` -> `Evelyn`: what remains in a text wrapper after unit stripping is the answer itself.
pub(crate) fn unwrap_text(s: &str) -> String {
    let mut out = s.to_owned();
    for cmd in [
        "\\textbf",
        "\\textit",
        "\\textrm",
        "\\textnormal",
        "\\text",
        "\\mbox",
        "\\mathrm",
        "\\mathbf",
    ] {
        // Each pass removes one wrapper, so the loop ends after at most one pass per occurrence.
        while let Some(i) = out.find(cmd) {
            let after = i + cmd.len();
            let bytes = out.as_bytes();
            let mut j = after;
            while j < bytes.len() && bytes[j] == b' ' {
                j += 1;
            }
            if bytes.get(j) != Some(&b'{') {
                // `\textbackslash` or a bare `\text`: leave it, and stop looking for this command.
                break;
            }
            let Some(end) = matching_brace(bytes, j) else {
                break;
            };
            // `\mathrm{e}` is Euler's number to the expression parser; keep single letters wrapped there.
            if cmd == "\\mathrm" && end == j + 2 {
                break;
            }
            let inner = out[j + 1..end].to_owned();
            out = format!("{}{}{}", &out[..i], inner, &out[end + 1..]);
        }
    }
    out
}

/// `10,\!080`, `58,500`, `11,111,111,100`, `14{,}916` -> digits only. A comma followed by three digits is
/// taken as a separator only with `\!`, in braces (`{,}`, also `{, }`) or when the whole answer is one
/// grouped number, so `2,12` stays a list. A first group of `0` groups nothing: `0,111` is not 111.
pub(crate) fn strip_thousands_separators(s: &str) -> String {
    static THIN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(\d)(?:\s*,\s*\\!|\s*\{\s*,\s*\}|\\,)\s*(\d{3})").expect("valid regex")
    });
    static WHOLE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^[-+]?[1-9]\d{0,2}(,\d{3})+(\.\d+)?$").expect("valid regex"));
    // `1 000 000`: groups of three digits set apart by spaces (SI style), again only as the whole answer.
    static SPACED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^[-+]?\d{1,3}( \d{3})+(\.\d+)?$").expect("valid regex"));
    let mut out = s.to_owned();
    // Each replacement removes a separator; groups overlap (`11,\!111,\!100`), so repeat a bounded number of times.
    for _ in 0..8 {
        let next = THIN.replace_all(&out, "$1$2").into_owned();
        if next == out {
            break;
        }
        out = next;
    }
    if WHOLE.is_match(out.trim()) {
        out = out.replace(',', "");
    }
    if SPACED.is_match(out.trim()) {
        out = out.replace(' ', "");
    }
    out
}

/// `0.1\overline{6}` -> `\frac{1}{6}`: a repeating decimal is an exact rational, written as one.
pub(crate) fn repeating_decimals(s: &str) -> String {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(\d*)\.(\d*)\\overline\s*\{\s*(\d+)\s*\}").expect("valid regex")
    });
    RE.replace_all(s, |c: &regex::Captures<'_>| {
        let (int, fixed, rep) = (&c[1], &c[2], &c[3]);
        // Digits beyond what u128 holds exactly are left for the parser to reject.
        if int.len() + fixed.len() + rep.len() > 30 {
            return c[0].to_owned();
        }
        let num = |d: &str| {
            if d.is_empty() {
                0
            } else {
                d.parse::<u128>().unwrap_or(0)
            }
        };
        let p = |n: usize| 10u128.pow(n as u32);
        // x = int + (fixed rep - fixed) / (10^|fixed| (10^|rep| - 1))
        let den = p(fixed.len()) * (p(rep.len()) - 1);
        let frac = num(&format!("{fixed}{rep}")) - num(fixed);
        format!("\\frac{{{}}}{{{den}}}", num(int) * den + frac)
    })
    .into_owned()
}

/// `10 percent` -> `10\%`.
pub(crate) fn percent_word(s: &str) -> String {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)(\d)\s*(?:percentage|percent|per cent|pct)\b").expect("valid regex")
    });
    RE.replace_all(s, "$1\\%").into_owned()
}

/// `x \in [-2,7]` -> `[-2,7]`: naming the variable does not change the answer.
pub(crate) fn strip_membership(s: &str) -> String {
    static RE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\s*[A-Za-z]\s*\\in\s*").expect("valid regex"));
    RE.replace(s, "").into_owned()
}

/// Trailing `.` or `,` of a sentence, and surrounding whitespace.
pub(crate) fn strip_trailing_punctuation(s: &str) -> String {
    let mut t = s.trim();
    while let Some(rest) = t.strip_suffix('.').or_else(|| t.strip_suffix(',')) {
        t = rest.trim_end();
    }
    t.to_owned()
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Index of the `}` closing the `{` at `open`, skipping escaped `\{` and `\}`.
pub(crate) fn matching_brace(s: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_and_boxes() {
        assert_eq!(strip_math_delimiters("$\\frac12$"), "\\frac12");
        assert_eq!(strip_math_delimiters("\\[ 5 \\]"), "5");
        assert_eq!(strip_boxed("\\boxed{\\{1,2\\}}"), "\\{1,2\\}");
        assert_eq!(
            strip_boxed("\\boxed{1} and \\boxed{2}"),
            "\\boxed{1} and \\boxed{2}"
        );
        assert_eq!(normalize("$\\boxed{7}$."), "7");
        assert_eq!(strip_boxed("\\boxed 5"), "5");
        // A box never closed holds the rest of the answer, escaped or not.
        assert_eq!(strip_boxed("\\boxed{x+1"), "x+1");
        assert_eq!(normalize("\\\\boxed{x+1"), "x+1");
        assert!(unclosed_box("\\\\boxed{W(n) = 1"));
        assert!(!unclosed_box("\\boxed{1} and \\boxed{2}"));
    }

    #[test]
    fn quotes_around_an_answer() {
        assert_eq!(strip_quotes("\"12\""), "12");
        assert_eq!(strip_quotes("\\\"$12$\\\""), "$12$");
        assert_eq!(strip_quotes("“7”"), "7");
        assert_eq!(strip_quotes("\"a\" and \"b\""), "\"a\" and \"b\"");
        assert_eq!(normalize("\"$12 $ and $13 $\""), "12, 13");
    }

    #[test]
    fn sizing_and_spacing() {
        assert_eq!(
            strip_sizing("\\left( 3, \\frac{\\pi}{2} \\right)"),
            "( 3, \\frac{\\pi}{2} )"
        );
        assert_eq!(strip_sizing("\\leftarrow"), "\\leftarrow");
        assert_eq!(
            strip_spacing("a\\,b\\!c\\quad d~e")
                .split_whitespace()
                .count(),
            5
        );
        assert_eq!(strip_spacing("1 \\\\ 2"), "1 \\\\ 2");
    }

    #[test]
    fn unicode_symbols() {
        assert_eq!(unicode_to_latex("−3"), "-3");
        assert_eq!(unicode_to_latex("12π"), "12\\pi ");
        assert_eq!(unicode_to_latex("√5"), "\\sqrt{5}");
        assert_eq!(unicode_to_latex("2√19x"), "2\\sqrt{19}x");
        assert_eq!(unicode_to_latex("√(x+1)"), "\\sqrt(x+1)");
        assert_eq!(normalize("(−∞, 2]"), "(-\\infty , 2]");
    }

    #[test]
    fn degrees_and_currency() {
        assert_eq!(strip_degrees("106^\\circ"), "106");
        assert_eq!(strip_degrees("30^{\\circ}"), "30");
        assert_eq!(strip_degrees("45°"), "45");
        assert_eq!(strip_currency("\\$32,348"), "32,348");
    }

    #[test]
    fn units_after_numbers_only() {
        assert_eq!(strip_units("15\\mbox{ cm}^2").trim(), "15");
        assert_eq!(strip_units("5.4 \\text{ cents}").trim(), "5.4");
        assert_eq!(
            strip_units("\\frac{270}7\\text{ degrees}").trim(),
            "\\frac{270}7"
        );
        assert_eq!(strip_units("12 inches").trim(), "12");
        assert_eq!(strip_units("864 square inches").trim(), "864");
        assert_eq!(strip_units("\\text{east}"), "\\text{east}");
        assert_eq!(strip_units("2m"), "2m");
        assert_eq!(strip_units("10weeks"), "10");
        assert_eq!(strip_units("3 hours"), "3");
        assert_eq!(strip_units("1.5hours."), "1.5");
        assert_eq!(strip_units("5s"), "5s");
        assert_eq!(strip_units("xdays"), "xdays");
    }

    #[test]
    fn dollars_inside_an_answer() {
        assert_eq!(strip_inner_dollars("12 $ and $13"), "12  and 13");
        assert_eq!(strip_inner_dollars("$5"), "5");
        assert_eq!(strip_inner_dollars(r"\$5"), r"\$5");
        assert_eq!(strip_inner_dollars(r"a \\$b$"), r"a \\b");
    }

    #[test]
    fn doubled_backslashes_and_line_breaks() {
        // Escaped twice: undoubled. A line break before a command, or before anything else: kept.
        assert_eq!(
            undouble_backslashes(r"\\frac{1}{\\sqrt 2}"),
            r"\frac{1}{\sqrt 2}"
        );
        assert_eq!(undouble_backslashes(r"\\{1, 2\\}"), r"\{1, 2\}");
        assert_eq!(
            undouble_backslashes(r"1 & 2 \\\end{pmatrix}"),
            r"1 & 2 \\\end{pmatrix}"
        );
        assert_eq!(undouble_backslashes(r"1 \\ 2 \\3"), r"1 \\ 2 \\3");
        assert_eq!(undouble_backslashes("√2 \\\\pi"), "√2 \\pi");
    }

    #[test]
    fn text_unwrapped() {
        assert_eq!(unwrap_text("\\text{(B)}"), "(B)");
        assert_eq!(unwrap_text("\\textbf{Evelyn}"), "Evelyn");
        assert_eq!(unwrap_text("\\text{"), "\\text{");
        assert_eq!(unwrap_text("\\mathrm{e}"), "\\mathrm{e}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(strip_thousands_separators("10,\\!080"), "10080");
        assert_eq!(
            strip_thousands_separators("11,\\! 111,\\! 111,\\! 100"),
            "11111111100"
        );
        assert_eq!(strip_thousands_separators("58,500"), "58500");
        assert_eq!(strip_thousands_separators("28{,}800"), "28800");
        assert_eq!(strip_thousands_separators("14 {, }916"), "14916");
        assert_eq!(strip_thousands_separators("2,12"), "2,12");
        assert_eq!(strip_thousands_separators("0,111"), "0,111");
        assert_eq!(strip_thousands_separators("1, 234"), "1, 234");
    }

    #[test]
    fn repeating_decimals_and_percent_words() {
        assert_eq!(repeating_decimals("0.\\overline{3}"), "\\frac{3}{9}");
        assert_eq!(repeating_decimals("2.1\\overline{6}"), "\\frac{195}{90}");
        assert_eq!(repeating_decimals(".\\overline{12}"), "\\frac{12}{99}");
        assert_eq!(percent_word("10 percent"), "10\\%");
        assert_eq!(percent_word("percentile"), "percentile");
    }

    #[test]
    fn membership_and_punctuation() {
        assert_eq!(strip_membership("x \\in [-2,7]"), "[-2,7]");
        assert_eq!(strip_trailing_punctuation("5. "), "5");
        assert_eq!(normalize("x \\in [-2,7]."), "[-2,7]");
        assert_eq!(normalize("\\text{5 cm}"), "5");
    }

    #[test]
    fn braces_match() {
        assert_eq!(matching_brace(b"{a{b}c}", 0), Some(6));
        assert_eq!(matching_brace(b"{a\\}b}", 0), Some(5));
        assert_eq!(matching_brace(b"{a{b}", 0), None);
    }
}
