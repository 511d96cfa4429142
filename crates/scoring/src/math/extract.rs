//! Extraction of the final answer from a model response.
//!
//! Reasoning models think aloud and may box intermediate results, so the answer is taken after the last
//! `</think>` when there is one, and within a region the most explicit marker wins: the last `\boxed{}`,
//! then "final answer is", "the answer is", "answer:", then a concluding sentence ("Therefore, ...")
//! with one number after the last math span, then the last math span. Every search is a
//! bounded number of linear scans, so a megabyte of garbage costs milliseconds.

use serde::{Deserialize, Serialize};

use std::sync::LazyLock;

use regex::Regex;

use super::normalize::{strip_trailing_punctuation, LABEL_NAME};
use super::options::MathOptions;

/// Boxes tried from the end before giving up (a box with unbalanced braces is skipped).
const MAX_BOX_TRIES: usize = 8;
/// Bytes scanned for the closing brace of one box.
const MAX_BOX_SCAN: usize = 100_000;
/// Longest answer taken after a phrase such as "final answer is".
const MAX_PHRASE_ANSWER: usize = 500;

/// Which marker an answer was found by, from most to least explicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtractSource {
    /// The last `\boxed{...}`, `\boxed 5` or `\fbox{...}`.
    Boxed,
    /// "The final answer is ...".
    FinalAnswerIs,
    /// "The answer is ...".
    AnswerIs,
    /// "Answer: ...".
    AnswerColon,
    /// A concluding sentence after the last math span, opened by "Therefore", "Thus", "Hence"
    /// or "So", in words with exactly one number (`Therefore, there are 12 such sequences.`).
    Conclusion,
    /// The last `$...$`, `$$...$$`, `\(...\)` or `\[...\]`.
    MathSpan,
    /// The last number in the text, taken only with [`MathOptions::last_number_fallback`]
    /// (`... so there are 12 such sequences.`).
    LastNumber,
}

/// An answer found in a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extracted {
    /// The answer as written, without its marker and delimiters.
    pub text: String,
    /// The marker it was found by.
    pub source: ExtractSource,
    /// Whether it came from the text after the last `</think>`.
    pub after_think: bool,
}

/// Finds the final answer in a response, or `None` when it states none.
///
/// ```
/// use reprolm_scoring::{extract_answer, ExtractSource};
/// let r = "<think>maybe \\boxed{4}</think> So the answer is $\\boxed{\\frac{1}{2}}$.";
/// let e = extract_answer(r).unwrap();
/// assert_eq!(e.text, "\\frac{1}{2}");
/// assert_eq!(e.source, ExtractSource::Boxed);
/// assert!(e.after_think);
/// ```
pub fn extract_answer(response: &str) -> Option<Extracted> {
    extract_answer_with(response, &MathOptions::default())
}

/// [`extract_answer`] under other [`MathOptions`].
///
/// ```
/// use reprolm_scoring::{extract_answer_with, ExtractSource, MathOptions};
/// let r = "Since $d = 90/n$ for each divisor, there are 12 such sequences.";
/// let opts = MathOptions { last_number_fallback: true, ..Default::default() };
/// let e = extract_answer_with(r, &opts).unwrap();
/// assert_eq!((e.text.as_str(), e.source), ("12", ExtractSource::LastNumber));
/// assert_eq!(reprolm_scoring::extract_answer(r).unwrap().source, ExtractSource::MathSpan);
/// ```
pub fn extract_answer_with(response: &str, opts: &MathOptions) -> Option<Extracted> {
    let extract_from = |text: &str| extract_from(text, opts);
    if let Some(i) = response.rfind("</think>") {
        let after = &response[i + "</think>".len()..];
        if let Some((text, source)) = extract_from(after) {
            return Some(Extracted {
                text,
                source,
                after_think: true,
            });
        }
        let before = &response[..i];
        return extract_from(before).map(|(text, source)| Extracted {
            text,
            source,
            after_think: false,
        });
    }
    extract_from(response).map(|(text, source)| Extracted {
        text,
        source,
        after_think: false,
    })
}

fn extract_from(text: &str, opts: &MathOptions) -> Option<(String, ExtractSource)> {
    let lower = text.to_ascii_lowercase();
    if let Some((b, box_end)) = boxed_answer(text) {
        // "The final answer is $10,455$" after the last box states the answer the box was a step
        // towards (`... = \boxed{255}$ So ... Final Answer: The final answer is $10,455$.`).
        if let Some(i) = lower.rfind("final answer is").filter(|&i| i >= box_end) {
            if let Some(a) = after_phrase(&text[i + "final answer is".len()..]) {
                return Some((a, ExtractSource::FinalAnswerIs));
            }
        }
        return Some((b, ExtractSource::Boxed));
    }
    for (phrase, source) in [
        ("final answer is", ExtractSource::FinalAnswerIs),
        ("the answer is", ExtractSource::AnswerIs),
        ("answer:", ExtractSource::AnswerColon),
    ] {
        if let Some(i) = lower.rfind(phrase) {
            if let Some(a) = after_phrase(&text[i + phrase.len()..]) {
                return Some((a, source));
            }
        }
    }
    let span = last_math_span(text);
    let span_end = span.as_ref().map_or(0, |(end, _)| *end);
    if let Some(n) = concluding_number(&text[span_end..]) {
        return Some((n, ExtractSource::Conclusion));
    }
    if opts.last_number_fallback {
        let span_end = span.as_ref().map_or(0, |(end, _)| *end);
        if let Some(n) = last_number(&text[span_end..]) {
            return Some((n, ExtractSource::LastNumber));
        }
    }
    span.map(|(_, s)| (s, ExtractSource::MathSpan))
}

/// The last number in `text` (`-3`, `2/3`, `10,455`, `1 000`, `.5`) standing as a word of a
/// sentence, without a sentence's final period. A number inside LaTeX (`\frac{10}{9}`, `x^2`,
/// `a_1`) or glued to other digits is part of an expression, not a stated number, and is skipped;
/// `1,22` is one token (read later as the list `1, 22`, since a decimal comma is not read).
fn last_number(text: &str) -> Option<String> {
    static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"-?(?:\d{1,3}(?: \d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)*|\.\d+)(?:\s*/\s*\d+)?")
            .expect("valid regex")
    });
    // Bounded: only the text's last few kilobytes can hold its last number worth grading.
    let start = text.len().saturating_sub(4096);
    let start = (start..=text.len()).find(|&i| text.is_char_boundary(i))?;
    let window = &text[start..];
    let stands_alone = |m: &regex::Match| {
        let before = window[..m.start()].chars().next_back();
        let after = window[m.end()..].chars().next();
        before.is_none_or(|c| c.is_whitespace() || "(:=$\"'*".contains(c))
            && after.is_none_or(|c| !c.is_ascii_digit() && !"{}^_\\/".contains(c))
    };
    NUMBER
        .find_iter(window)
        .filter(stands_alone)
        .last()
        .map(|m| m.as_str().to_string())
}

/// `Therefore, the probability that Alice wins is 2/3.`: the last sentence of `text` that opens
/// with "Therefore", "Thus", "Hence" or "So" (capitalised, so a sentence start even where the
/// formula before it has no period: `P(A) = 2/3 Therefore, ...`) and is in words with exactly one number (see
/// [`sole_number_of_sentence`]) states that number, when no digit follows it (`I hope it is
/// correct.` may). A sentence with math, with two numbers, or followed by another number states
/// nothing here; that is what keeps this apart from the last-number fallback.
fn concluding_number(text: &str) -> Option<String> {
    static OPENER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?:^|\s)(?:\*\*)?(?:Therefore|Thus|Hence|So)\b[,:]?\s").expect("valid regex")
    });
    // Bounded like `last_number`: a concluding sentence sits in the last few kilobytes.
    let start = text.len().saturating_sub(4096);
    let start = (start..=text.len()).find(|&i| text.is_char_boundary(i))?;
    let window = &text[start..];
    let m = OPENER.find_iter(window).last()?;
    let sentence = &window[m.start()..];
    let sentence = sentence.trim_start_matches(|c: char| ".!?*".contains(c) || c.is_whitespace());
    let end = [sentence.find(". "), sentence.find('\n')]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(sentence.len());
    let (sentence, after) = sentence.split_at(end);
    if after.contains(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let sentence = strip_trailing_punctuation(sentence);
    sole_number_of_sentence(&sentence).map(str::to_owned)
}

/// The content of the last `\boxed{}`/`\fbox{}` with balanced braces, or of `\boxed 5`. Boxes listed
/// together (`\boxed{3}, \boxed{5} and \boxed{7}`: nothing but commas, `and`/`or`, spacing and math
/// delimiters between them) are one answer, `3, 5, 7`; a box earlier in the text is an intermediate
/// result and is not taken.
pub(crate) fn last_boxed(text: &str) -> Option<String> {
    boxed_answer(text).map(|(answer, _)| answer)
}

/// [`last_boxed`], and where the last box ends in `text`.
fn boxed_answer(text: &str) -> Option<(String, usize)> {
    let mut end = text.len();
    // (start of the box command, end of the box) of the boxes taken, last first.
    let mut taken: Vec<(usize, usize, &str)> = Vec::new();
    for _ in 0..MAX_BOX_TRIES {
        let hay = &text[..end];
        let (i, len) = match (hay.rfind("\\boxed"), hay.rfind("\\fbox")) {
            (Some(a), Some(b)) if b > a => (b, "\\fbox".len()),
            (Some(a), _) => (a, "\\boxed".len()),
            (None, Some(b)) => (b, "\\fbox".len()),
            (None, None) => break,
        };
        end = i;
        let Some((content, box_end)) = box_content(&text[i + len..]) else {
            continue;
        };
        let t = content.trim();
        if t.is_empty() {
            continue;
        }
        let box_end = i + len + box_end;
        match taken.last() {
            None => taken.push((i, box_end, t)),
            Some(&(next_start, _, _))
                if box_end <= next_start && only_separators(&text[box_end..next_start]) =>
            {
                taken.push((i, box_end, t))
            }
            Some(&(next_start, _, _))
                if box_end <= next_start && joined_by_and(&text[box_end..next_start]) =>
            {
                taken.push((i, box_end, t))
            }
            Some(&(next_start, _, _))
                if box_end <= next_start
                    && trailing_label(&text[box_end..next_start])
                        .is_some_and(|(at, _)| only_separators(&text[box_end..box_end + at])) =>
            {
                taken.push((i, box_end, t))
            }
            Some(_) => break,
        }
    }
    if taken.is_empty() {
        return None;
    }
    // `y_1 = \boxed{a}` and `y_2 = \boxed{b}`: boxes that each follow their own `name =` are one
    // labelled answer, `y_1 = a, y_2 = b`, when every box taken has a label (one box alone keeps
    // only its content, as before).
    let labels: Vec<Option<&str>> = taken
        .iter()
        .map(|&(start, _, _)| {
            let from = (start.saturating_sub(24)..start)
                .find(|&j| text.is_char_boundary(j))
                .unwrap_or(start);
            trailing_label(&text[from..start]).map(|(_, l)| l)
        })
        .collect();
    let labelled = taken.len() > 1 && labels.iter().all(Option::is_some);
    let items: Vec<String> = taken
        .iter()
        .zip(&labels)
        .rev()
        .map(|(&(_, _, t), label)| match label {
            Some(name) if labelled => format!("{name} = {t}"),
            _ => t.to_owned(),
        })
        .collect();
    // A label between boxes joined them; if not every box has one, the words between are not
    // just a listing: the last box alone, as for any box after other text.
    let joined_by_label = labels[..labels.len() - 1].iter().any(Option::is_some);
    if joined_by_label && !labelled {
        return Some((taken[0].2.to_owned(), taken[0].1));
    }
    Some((items.join(", "), taken[0].1))
}

/// A label `name =` (a letter with an optional subscript: `y_1`, `x_{2}`) at the end of `before`,
/// possibly inside an opening math delimiter (`\( y_2 = `, `$y_1 = `): where it starts, and the name.
fn trailing_label(before: &str) -> Option<(usize, &str)> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(&format!(
            r"(?:^|[^A-Za-z\\])({LABEL_NAME})\s*=\s*(?:\\[(\[]|\$)?\s*$"
        ))
        .expect("valid regex")
    });
    let caps = RE.captures(before)?;
    let name = caps.get(1)?;
    Some((name.start(), name.as_str()))
}

/// Whether the text between two boxes only lists them: `, `, ` and `, ` or `, `$, $`, `\quad`. Two
/// boxes joined by "or" may restate one answer in two forms (`\boxed{15\frac{39}{40}}, or
/// \boxed{\frac{639}{40}}` in a MATH reference solution) or hedge between two; both are listed,
/// and the comparison decides: a list of one value equals that value, a hedge equals neither.
fn only_separators(between: &str) -> bool {
    if between.len() > 40 {
        return false;
    }
    let mut rest = between.to_ascii_lowercase();
    for sep in [
        "\\qquad", "\\quad", "\\text", "\\mbox", "\\(", "\\)", "and", "or",
    ] {
        rest = rest.replace(sep, "");
    }
    rest.chars()
        .all(|c| c.is_whitespace() || matches!(c, ',' | ';' | '$' | '{' | '}'))
}

/// Whether the text between two boxes is a few words ending in "and" (` papers and `, `\text{ for
/// part (a) and }`): a unit or a part's name after one box, then the next, lists them as a bare
/// "and" does. Longer text, text ending otherwise (`, so adding two we get`) or a judgement of the
/// first box (`is too small and`) leaves it an intermediate result.
fn joined_by_and(between: &str) -> bool {
    const JUDGEMENT: [&str; 9] = [
        "is", "was", "not", "but", "wrong", "then", "so", "too", "no",
    ];
    if between.len() > 40 {
        return false;
    }
    let mut rest = between.to_ascii_lowercase();
    for cmd in ["\\qquad", "\\quad", "\\text", "\\mbox", "\\(", "\\)"] {
        rest = rest.replace(cmd, " ");
    }
    let rest = rest.replace(['{', '}', '$', ','], " ");
    let words: Vec<&str> = rest.split_whitespace().collect();
    words.len() >= 2
        && words.len() <= 4
        && words.last() == Some(&"and")
        && words.iter().all(|w| {
            !JUDGEMENT.contains(w) && w.chars().all(|c| c.is_alphanumeric() || "()'.".contains(c))
        })
}

/// The content of the box whose command ends where `rest` begins, and where the box ends in `rest`.
fn box_content(rest: &str) -> Option<(&str, usize)> {
    let b = rest.as_bytes();
    let mut j = 0;
    while j < b.len() && b[j] == b' ' {
        j += 1;
    }
    match b.get(j) {
        Some(b'{') => {
            let mut depth = 0usize;
            let mut k = j;
            let limit = b.len().min(j + MAX_BOX_SCAN);
            while k < limit {
                match b[k] {
                    b'\\' => k += 1,
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return rest.get(j + 1..k).map(|c| (c, k + 1));
                        }
                    }
                    _ => {}
                }
                k += 1;
            }
            None
        }
        // `\boxed 5`: a space, then everything up to whitespace or a closing `$`.
        Some(_) if j > 0 => {
            let start = j;
            let mut k = j;
            while k < b.len() && !b[k].is_ascii_whitespace() && b[k] != b'$' {
                k += 1;
            }
            rest.get(start..k).map(|c| (c, k))
        }
        _ => None,
    }
}

/// What follows "final answer is": a quoted answer, a math span (or spans listed together) if it
/// starts with one, else the rest of the sentence.
fn after_phrase(rest: &str) -> Option<String> {
    let t = rest.trim_start_matches(|c: char| c == ':' || c == '*' || c.is_whitespace());
    if let Some(quoted) = quoted_answer(t) {
        let cleaned = strip_trailing_punctuation(quoted);
        return (!cleaned.is_empty() && cleaned.len() <= MAX_PHRASE_ANSWER).then_some(cleaned);
    }
    if let Some(listed) = spans_listed_from_start(t) {
        return (listed.len() <= MAX_PHRASE_ANSWER).then_some(listed);
    }
    let candidate = if let Some(inner) = t.strip_prefix("$$") {
        inner.find("$$").map(|k| &inner[..k])
    } else if let Some(inner) = t.strip_prefix('$') {
        inner.find('$').map(|k| &inner[..k])
    } else if let Some(inner) = t.strip_prefix("\\(") {
        inner.find("\\)").map(|k| &inner[..k])
    } else if let Some(inner) = t.strip_prefix("\\[") {
        inner.find("\\]").map(|k| &inner[..k])
    } else {
        let line = t.split('\n').next().unwrap_or("");
        // A sentence ends at ". " or at a trailing period; `3.5` has no space after its point.
        let line = line.find(". ").map_or(line, |k| &line[..k]);
        // `Answer: The largest $n$ is 34.`: a sentence that states the answer ends with it.
        let line = line
            .rfind(" is ")
            .map_or(line, |k| &line[k + " is ".len()..]);
        let line = sole_number_of_sentence(line).unwrap_or(line).trim();
        let line = match (line.strip_prefix('$'), line.strip_prefix("\\(")) {
            (Some(inner), _) => inner.find('$').map_or(line, |k| &inner[..k]),
            (None, Some(inner)) => inner.find("\\)").map_or(line, |k| &inner[..k]),
            _ => line,
        };
        Some(line)
    }?;
    let cleaned = strip_trailing_punctuation(candidate.trim().trim_matches('*'));
    let cleaned = last_boxed(&cleaned).unwrap_or(cleaned);
    (!cleaned.is_empty() && cleaned.len() <= MAX_PHRASE_ANSWER).then_some(cleaned)
}

/// `"$12$ and $13$"` (or `\"...\"`, `“...”`) right after an answer phrase: the answer is what the
/// quotation marks enclose, on the same line; `None` when `t` does not start with a quote or the
/// quote is not closed there.
fn quoted_answer(t: &str) -> Option<&str> {
    let line = t.split('\n').next().unwrap_or("");
    for (open, close) in [("\\\"", "\\\""), ("\"", "\""), ("“", "”")] {
        if let Some(inner) = line.strip_prefix(open) {
            // `\"` closes a `\"`; a plain `"` may close either.
            let end = inner.find(close).or_else(|| inner.find('"'))?;
            let inner = inner[..end].trim_end_matches('\\');
            return (!inner.trim().is_empty()).then_some(inner.trim());
        }
    }
    None
}

/// `$12$ and $13$` right after an answer phrase: two or more `$...$` spans listed together (only
/// separators between them, as for boxes) are one answer, `12, 13`; `None` for fewer than two.
fn spans_listed_from_start(t: &str) -> Option<String> {
    let line = t.split('\n').next().unwrap_or("");
    let mut items = Vec::new();
    let mut rest = line;
    while items.len() < MAX_BOX_TRIES {
        let Some(inner) = rest.strip_prefix('$').filter(|r| !r.starts_with('$')) else {
            break;
        };
        let Some(close) = inner.find('$') else {
            break;
        };
        let item = inner[..close].trim();
        if item.is_empty() {
            break;
        }
        items.push(item);
        let after = &inner[close + 1..];
        match after.find('$') {
            Some(next) if only_separators(&after[..next]) => rest = &after[next..],
            _ => break,
        }
    }
    (items.len() >= 2).then(|| items.join(", "))
}

/// `Jane started growing Sphere 3 hours ago`: a sentence in words (three or more, no math) that
/// holds exactly one number (`3`, `2/3`, `100%`) states that number. Two numbers, or none, and the sentence stays as it
/// is (and will not parse as an answer).
fn sole_number_of_sentence(line: &str) -> Option<&str> {
    if line.contains(['$', '\\']) {
        return None;
    }
    fn bare(w: &str) -> &str {
        w.trim_matches(|c: char| matches!(c, ',' | '.' | ';' | ':' | '!' | '?'))
    }
    let words = line
        .split_whitespace()
        .filter(|w| {
            let w = bare(w);
            w.len() >= 2 && w.chars().all(|c| c.is_ascii_alphabetic() || c == '\'')
        })
        .count();
    // `3`, `-1,000.5`, `2/3`, `100%`.
    let mut numbers = line.split_whitespace().map(bare).filter(|w| {
        let digits = w.strip_prefix('-').unwrap_or(w);
        let digits = digits.strip_suffix('%').unwrap_or(digits);
        digits.starts_with(|c: char| c.is_ascii_digit())
            && digits.ends_with(|c: char| c.is_ascii_digit())
            && digits
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, ',' | '.' | '/'))
    });
    let first = numbers.next()?;
    (words >= 3 && numbers.next().is_none()).then_some(first)
}

/// Where the last math span (`$...$`, `$$...$$`, `\(...\)` or `\[...\]`) closes, and its content.
pub(crate) fn last_math_span(text: &str) -> Option<(usize, String)> {
    let b = text.as_bytes();
    let mut best: Option<(usize, &str)> = None;
    fn consider<'a>(best: &mut Option<(usize, &'a str)>, close_at: usize, content: &'a str) {
        if !content.trim().is_empty() && best.is_none_or(|(c, _)| close_at > c) {
            *best = Some((close_at, content));
        }
    }
    // Dollar spans: the last two unescaped `$` (or `$$` pairs).
    let mut dollars = Vec::with_capacity(4);
    let mut k = b.len();
    while k > 0 && dollars.len() < 4 {
        k -= 1;
        if b[k] == b'$' && (k == 0 || b[k - 1] != b'\\') {
            dollars.push(k);
        }
    }
    if dollars.len() >= 4 && dollars[0] == dollars[1] + 1 && dollars[2] == dollars[3] + 1 {
        consider(&mut best, dollars[0], &text[dollars[2] + 1..dollars[1]]);
    } else if dollars.len() >= 2 && dollars[0] != dollars[1] + 1 {
        consider(&mut best, dollars[0], &text[dollars[1] + 1..dollars[0]]);
    }
    let listed = listed_dollar_spans(text);
    for (open, close) in [("\\(", "\\)"), ("\\[", "\\]")] {
        if let Some(c) = text.rfind(close) {
            if let Some(o) = text[..c].rfind(open) {
                consider(&mut best, c, &text[o + open.len()..c]);
            }
        }
    }
    best.map(|(close, s)| {
        let text = match &listed {
            // `$1$ and $2$ and $3$`: spans listed together are one answer, as boxes are.
            Some((last_close, joined)) if *last_close == close => {
                strip_trailing_punctuation(joined)
            }
            _ => strip_trailing_punctuation(s),
        };
        (close + 1, text)
    })
}

/// The last `$...$` spans of `text` when more than one of them are listed together (only separators
/// between them): where the last one closes, and their contents joined by `, `.
fn listed_dollar_spans(text: &str) -> Option<(usize, String)> {
    let b = text.as_bytes();
    let mut dollars = Vec::with_capacity(2 * MAX_BOX_TRIES);
    let mut k = b.len();
    while k > 0 && dollars.len() < 2 * MAX_BOX_TRIES {
        k -= 1;
        if b[k] == b'$' && (k == 0 || b[k - 1] != b'\\') {
            if k > 0 && b[k - 1] == b'$' {
                break; // a display span: not part of a list of inline ones
            }
            dollars.push(k);
        }
    }
    let spans: Vec<(usize, usize)> = dollars.chunks_exact(2).map(|p| (p[1], p[0])).collect();
    let mut taken = vec![*spans.first()?];
    for pair in spans.windows(2) {
        let ((_, close), (open, _)) = (pair[1], pair[0]);
        if !only_separators(&text[close + 1..open]) {
            break;
        }
        taken.push(pair[1]);
    }
    if taken.len() < 2 {
        return None;
    }
    let items: Vec<&str> = taken
        .iter()
        .rev()
        .map(|&(o, c)| text[o + 1..c].trim())
        .collect();
    if items.iter().any(|i| i.is_empty()) {
        return None;
    }
    Some((taken[0].1, items.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(s: &str) -> Option<(String, ExtractSource)> {
        extract_answer(s).map(|e| (e.text, e.source))
    }

    #[test]
    fn last_box_with_nested_braces() {
        assert_eq!(
            last_boxed("\\boxed{1} then \\boxed{\\frac{1}{2}}").as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(last_boxed("\\fbox{7}").as_deref(), Some("7"));
        assert_eq!(last_boxed("\\boxed 5 done").as_deref(), Some("5"));
        assert_eq!(last_boxed("$\\boxed 5$").as_deref(), Some("5"));
        assert_eq!(
            last_boxed("\\boxed{\\{1,2\\}}").as_deref(),
            Some("\\{1,2\\}")
        );
        // An unbalanced last box falls back to the one before it.
        assert_eq!(last_boxed("\\boxed{3} \\boxed{4").as_deref(), Some("3"));
        assert_eq!(last_boxed("\\boxed{}"), None);
        assert_eq!(last_boxed("\\boxedx"), None);
    }

    #[test]
    fn boxes_listed_together_are_one_answer() {
        assert_eq!(
            last_boxed("so $\\boxed{3}$, $\\boxed{5}$, and $\\boxed{7}$.").as_deref(),
            Some("3, 5, 7")
        );
        assert_eq!(
            last_boxed("\\boxed{1} \\text{ and } \\boxed{-1}").as_deref(),
            Some("1, -1")
        );
        // "or" between boxes lists them (the comparison tells a restatement from a hedge).
        assert_eq!(
            last_boxed("\\boxed{1.5}, or \\boxed{\\frac32}").as_deref(),
            Some("1.5, \\frac32")
        );
        assert_eq!(
            ex("the roots are $21, 16$ or $11$."),
            Some(("21, 16, 11".into(), ExtractSource::MathSpan))
        );
        // Boxes that each follow their own label are one labelled answer; a label before only
        // the last is words between them.
        assert_eq!(
            last_boxed("\\($y_1 = \\boxed{x+1}\\) and \\( y_2 = \\boxed{2x}\\)").as_deref(),
            Some("y_1 = x+1, y_2 = 2x")
        );
        assert_eq!(
            last_boxed("so \\boxed{4} and then y = \\boxed{6}").as_deref(),
            Some("6")
        );
        assert_eq!(
            last_boxed("x = \\boxed{3}, \\boxed{5}").as_deref(),
            Some("3, 5")
        );
        assert_eq!(
            last_boxed("\\boxed{4} and y = \\boxed{6}").as_deref(),
            Some("6")
        );
        // A unit or a part's name, then "and": the boxes are listed.
        assert_eq!(
            last_boxed("\\boxed{1} papers and \\boxed{2} bins").as_deref(),
            Some("1, 2")
        );
        assert_eq!(
            last_boxed("$$\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 1)}$$").as_deref(),
            Some("(3, 3), (1, 1)")
        );
        assert_eq!(
            last_boxed("\\boxed{3} is too small and \\boxed{5}").as_deref(),
            Some("5")
        );
        // An earlier box with words in between is an intermediate result.
        assert_eq!(
            last_boxed("first \\boxed{4}, so adding two we get \\boxed{6}").as_deref(),
            Some("6")
        );
    }

    #[test]
    fn math_spans_listed_together_are_one_answer() {
        assert_eq!(
            ex("the roots are $1$, $2$ and $3$."),
            Some(("1, 2, 3".into(), ExtractSource::MathSpan))
        );
        assert_eq!(
            ex("first $x$ and then $y=3$."),
            Some(("y=3".into(), ExtractSource::MathSpan))
        );
    }

    #[test]
    fn a_final_answer_after_the_last_box_wins() {
        assert_eq!(
            ex("so $0.05 \\cdot 10200 / 2 = \\boxed{255}$ and the total is 10455. Final Answer: The final answer is $10,455$. I hope it is correct."),
            Some(("10,455".into(), ExtractSource::FinalAnswerIs))
        );
        // Before the box it is not the last word.
        assert_eq!(
            ex("The final answer is $3$, wait, no: \\boxed{4}"),
            Some(("4".into(), ExtractSource::Boxed))
        );
    }

    #[test]
    fn a_stated_answer_ends_its_sentence() {
        assert_eq!(
            ex("Final Answer: The largest $n$ is 34."),
            Some(("34".into(), ExtractSource::AnswerColon))
        );
        assert_eq!(
            ex("Answer: the area is $12\\pi$ square units."),
            Some(("12\\pi".into(), ExtractSource::AnswerColon))
        );
    }

    #[test]
    fn phrases() {
        assert_eq!(
            ex("Final Answer: The final answer is $5$. I hope it is correct."),
            Some(("5".into(), ExtractSource::FinalAnswerIs))
        );
        assert_eq!(
            ex("so the answer is 3.5."),
            Some(("3.5".into(), ExtractSource::AnswerIs))
        );
        assert_eq!(
            ex("Answer: **12**\n"),
            Some(("12".into(), ExtractSource::AnswerColon))
        );
        assert_eq!(
            ex("Answer: \\(x=2\\)"),
            Some(("x=2".into(), ExtractSource::AnswerColon))
        );
        // A sentence in words with one number in it states that number; with two it stays prose.
        assert_eq!(
            ex("Final Answer: Jane started growing Sphere 3 hours ago. I hope it is correct."),
            Some(("3".into(), ExtractSource::AnswerColon))
        );
        assert_eq!(
            ex("Final Answer: Jane started 3 hours ago and Rod 8 hours ago."),
            Some((
                "Jane started 3 hours ago and Rod 8 hours ago".into(),
                ExtractSource::AnswerColon
            ))
        );
    }

    #[test]
    fn a_quoted_answer_after_a_phrase() {
        assert_eq!(
            ex("Final Answer: The final answer is \\\"$12 $ and $13 $\\\". I hope it is correct."),
            Some(("$12 $ and $13 $".into(), ExtractSource::FinalAnswerIs))
        );
        assert_eq!(
            ex("The answer is \"x = 4\", since the rest fails."),
            Some(("x = 4".into(), ExtractSource::AnswerIs))
        );
        // An unclosed quote is not a quoted answer: the sentence is taken as before.
        assert_eq!(
            ex("The answer is \"5"),
            Some(("\"5".into(), ExtractSource::AnswerIs))
        );
        // Spans listed together after a phrase are one answer; a span followed by words is alone.
        assert_eq!(
            ex("The final answer is $3$ and $-3$."),
            Some(("3, -3".into(), ExtractSource::FinalAnswerIs))
        );
        assert_eq!(
            ex("The final answer is $3$ since $x = 3$."),
            Some(("3".into(), ExtractSource::FinalAnswerIs))
        );
    }

    #[test]
    fn a_concluding_sentence_states_its_one_number() {
        assert_eq!(
            ex("So P(A) = (1/2) / (3/4). Therefore, the probability that Alice wins is 2/3. <|im_start|>user"),
            Some(("2/3".into(), ExtractSource::Conclusion))
        );
        assert_eq!(
            ex("each divisor gives $d = \\frac{90}{n}$. Thus there are 12 such sequences. I hope it is correct."),
            Some(("12".into(), ExtractSource::Conclusion))
        );
        assert_eq!(
            ex("P(A) = (1/2) * (4/3) P(A) = 2/3 Therefore, Alice wins with probability 2/3."),
            Some(("2/3".into(), ExtractSource::Conclusion))
        );
        assert_eq!(
            ex("$$x' \\geq 2x$$ Hence the error grows by 100%."),
            Some(("100%".into(), ExtractSource::Conclusion))
        );
        // Two numbers, a number after it, math in it, or a math span after it: not a conclusion.
        assert_eq!(ex("Therefore 3 cats and 4 dogs."), None);
        assert_eq!(ex("Therefore there are 3 cats. Then 4 more came."), None);
        assert_eq!(
            ex("Therefore there are 3 cats and $x = 4$."),
            Some(("x = 4".into(), ExtractSource::MathSpan))
        );
        assert_eq!(
            ex("So there are 3 of them, as $3 = 1 + 2$"),
            Some(("3 = 1 + 2".into(), ExtractSource::MathSpan))
        );
        // A box or an answer phrase still wins.
        assert_eq!(
            ex("The answer is 5. Therefore there are 6 of them."),
            Some(("5".into(), ExtractSource::AnswerIs))
        );
        // "So" inside a word or mid-sentence opens nothing.
        assert_eq!(ex("Sometimes 5 are left over and also so 7 remain"), None);
    }

    #[test]
    fn the_last_number_stands_alone() {
        for (text, number) in [
            ("so there are 1 000 of them", Some("1 000")),
            ("the probability is 2/3.", Some("2/3")),
            ("it is .4 of the total", Some(".4")),
            ("which is 1,000.99€", Some("1,000.99")),
            ("Soucis : 2,74 a..", Some("2,74")),
            ("\\frac{10}{9}", None),
            ("x^2 + a_1", None),
        ] {
            assert_eq!(last_number(text).as_deref(), number, "{text}");
        }
    }

    #[test]
    fn math_spans() {
        assert_eq!(
            ex("we get $x$ and then $y=3$."),
            Some(("y=3".into(), ExtractSource::MathSpan))
        );
        assert_eq!(
            ex("so $$\\frac12$$"),
            Some(("\\frac12".into(), ExtractSource::MathSpan))
        );
        assert_eq!(
            ex("it is \\[ 7 \\] then $x$"),
            Some(("x".into(), ExtractSource::MathSpan))
        );
        assert_eq!(ex("costs \\$5"), None);
        assert_eq!(ex("no answer here"), None);
    }

    #[test]
    fn think_tag_preferred() {
        let e = extract_answer("<think>\\boxed{1}</think>The answer is \\boxed{2}").unwrap();
        assert_eq!((e.text.as_str(), e.after_think), ("2", true));
        let e = extract_answer("<think>\\boxed{1}</think>").unwrap();
        assert_eq!((e.text.as_str(), e.after_think), ("1", false));
    }

    #[test]
    fn hostile_inputs_are_fast() {
        let many = "\\boxed{".repeat(200_000);
        let t = std::time::Instant::now();
        assert_eq!(extract_answer(&many), None);
        let dollars = "$".repeat(1_000_000);
        assert_eq!(extract_answer(&dollars), None);
        assert!(t.elapsed().as_secs_f64() < 2.0);
    }
}
