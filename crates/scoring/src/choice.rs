//! Multiple-choice extraction and grading (GPQA: letters A to D).
//!
//! Like math extraction, the text after `</think>` is preferred and explicit markers beat incidental
//! ones: a boxed letter, then "the answer is (C)" / "Answer: C", then the last "(C)", then the last "C)".
//! Letters must be upper case, so the article "a" is never read as choice A.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::math::extract::last_boxed;

/// Which marker a choice was found by, from most to least explicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChoiceSource {
    /// `\boxed{C}`, `\boxed{\text{(C)}}`.
    Boxed,
    /// "The answer is (C)", "Answer: C", "answer is **C**".
    AnswerPhrase,
    /// The last "(C)".
    Parenthesized,
    /// The last "C)".
    LetterParen,
}

/// A choice letter found in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractedChoice {
    /// The letter, `A` to `D`.
    pub letter: char,
    /// The marker it was found by.
    pub source: ChoiceSource,
    /// Whether it came from the text after the last `</think>`.
    pub after_think: bool,
}

/// The grade of one multiple-choice response; stored as the score detail of a run record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChoiceGrade {
    /// Whether the extracted letter is the gold one.
    pub correct: bool,
    /// The gold letter.
    pub gold: char,
    /// The letter found in the response, if any.
    pub extracted: Option<ExtractedChoice>,
}

/// Finds the chosen letter (A to D) in a response.
///
/// ```
/// use reprolm_scoring::{extract_choice, ChoiceSource};
/// let c = extract_choice("<think>(A) fails.</think>The answer is (C).").unwrap();
/// assert_eq!((c.letter, c.source), ('C', ChoiceSource::AnswerPhrase));
/// ```
pub fn extract_choice(response: &str) -> Option<ExtractedChoice> {
    if let Some(i) = response.rfind("</think>") {
        if let Some((letter, source)) = choice_in(&response[i + "</think>".len()..]) {
            return Some(ExtractedChoice {
                letter,
                source,
                after_think: true,
            });
        }
        return choice_in(&response[..i]).map(|(letter, source)| ExtractedChoice {
            letter,
            source,
            after_think: false,
        });
    }
    choice_in(response).map(|(letter, source)| ExtractedChoice {
        letter,
        source,
        after_think: false,
    })
}

/// Grades a response against the gold letter (case-insensitive).
///
/// ```
/// use reprolm_scoring::grade_choice;
/// assert!(grade_choice('b', "Answer: B").correct);
/// assert!(!grade_choice('B', "\\boxed{D}").correct);
/// ```
pub fn grade_choice(gold: char, response: &str) -> ChoiceGrade {
    let gold = gold.to_ascii_uppercase();
    let extracted = extract_choice(response);
    ChoiceGrade {
        correct: extracted.is_some_and(|c| c.letter == gold),
        gold,
        extracted,
    }
}

fn choice_in(text: &str) -> Option<(char, ChoiceSource)> {
    static BOXED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:\\(?:text|textbf|mathrm|mathbf)\s*\{)?\s*\(?\s*([A-D])\s*\)?\s*\}?(?:[\s.:)].*)?$").expect("valid regex")
    });
    static PHRASE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i:answer)(?:\s+(?i:is))?\s*(?::)?\s*(?:\*\*)?\s*(?i:(?:option|choice)\s+)?(?:\$?\\boxed\{)?(?:\\text\{)?\s*\(?([A-D])\)?(?:[^A-Za-z0-9]|$)",
        )
        .expect("valid regex")
    });
    static PARENS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\(([A-D])\)").expect("valid regex"));
    static LETTER_PAREN: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?:^|[^A-Za-z0-9])([A-D])\)").expect("valid regex"));

    if let Some(b) = last_boxed(text) {
        if let Some(c) = BOXED.captures(b.trim()) {
            return Some((letter(&c), ChoiceSource::Boxed));
        }
    }
    for (re, source) in [
        (&*PHRASE, ChoiceSource::AnswerPhrase),
        (&*PARENS, ChoiceSource::Parenthesized),
        (&*LETTER_PAREN, ChoiceSource::LetterParen),
    ] {
        if let Some(c) = re.captures_iter(text).last() {
            return Some((letter(&c), source));
        }
    }
    None
}

fn letter(c: &regex::Captures<'_>) -> char {
    c.get(1)
        .and_then(|m| m.as_str().chars().next())
        .unwrap_or('?')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter_of(s: &str) -> Option<(char, ChoiceSource)> {
        extract_choice(s).map(|c| (c.letter, c.source))
    }

    #[test]
    fn boxed_letters() {
        assert_eq!(letter_of("\\boxed{C}"), Some(('C', ChoiceSource::Boxed)));
        assert_eq!(
            letter_of("$\\boxed{\\text{(B)}}$"),
            Some(('B', ChoiceSource::Boxed))
        );
        assert_eq!(
            letter_of("\\boxed{(D) 42 kJ}"),
            Some(('D', ChoiceSource::Boxed))
        );
        assert_eq!(
            letter_of("\\boxed{\\textbf{A}}"),
            Some(('A', ChoiceSource::Boxed))
        );
    }

    #[test]
    fn answer_phrases() {
        assert_eq!(
            letter_of("so the answer is (C)."),
            Some(('C', ChoiceSource::AnswerPhrase))
        );
        assert_eq!(
            letter_of("Answer: B"),
            Some(('B', ChoiceSource::AnswerPhrase))
        );
        assert_eq!(
            letter_of("The correct answer is **D**"),
            Some(('D', ChoiceSource::AnswerPhrase))
        );
        // "Answer: a" is the article, not choice A; "Acetone" is a word.
        assert_eq!(letter_of("answer is Acetone"), None);
    }

    #[test]
    fn fallbacks() {
        assert_eq!(
            letter_of("I pick (B), not (A)... final: (D)"),
            Some(('D', ChoiceSource::Parenthesized))
        );
        assert_eq!(
            letter_of("Options considered.\nC) is right"),
            Some(('C', ChoiceSource::LetterParen))
        );
        assert_eq!(letter_of("no letter here"), None);
        assert_eq!(letter_of("(E)"), None);
    }

    #[test]
    fn think_tag_preferred() {
        let c = extract_choice("<think>answer is A</think>Answer: B").unwrap();
        assert_eq!((c.letter, c.after_think), ('B', true));
        let c = extract_choice("<think>answer is A</think>").unwrap();
        assert_eq!((c.letter, c.after_think), ('A', false));
    }

    #[test]
    fn grade_serialises_for_run_records() {
        let g = grade_choice('C', "\\boxed{C}");
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(
            json,
            r#"{"correct":true,"gold":"C","extracted":{"letter":"C","source":"boxed","after_think":false}}"#
        );
    }

    #[test]
    fn grading() {
        assert!(grade_choice('C', "answer is (C)").correct);
        assert!(!grade_choice('C', "nothing").correct);
        assert_eq!(grade_choice('c', "x").gold, 'C');
    }
}
