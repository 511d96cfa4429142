//! Labelled answer pairs: the file format of the equivalence corpus that checks the grader.
//!
//! One pair per line, tab-separated, so LaTeX needs no escaping: `Y` or `N`, the gold answer, the
//! prediction, and optionally a note. Blank lines and lines starting with `#` are comments.
//!
//! ```text
//! Y<TAB>\frac{1}{2}<TAB>0.5<TAB>decimal
//! N<TAB>(3,4]<TAB>(3,4)<TAB>bracket
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A gold answer, a prediction and whether a person judged them equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledPair {
    /// 1-based line in the file, for reports.
    pub line: usize,
    /// The gold answer.
    pub gold: String,
    /// The predicted answer.
    pub pred: String,
    /// The human label.
    pub equal: bool,
    /// Free text after the third field.
    pub note: String,
}

/// Reads a labelled-pairs file.
///
/// ```no_run
/// let pairs = reprolm_scoring::read_labelled_pairs("crates/scoring/tests/data/math_equivalence.tsv")?;
/// # Ok::<(), reprolm_scoring::Error>(())
/// ```
pub fn read_labelled_pairs(path: impl AsRef<Path>) -> Result<Vec<LabelledPair>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_labelled_pairs(&text, path)
}

fn parse_labelled_pairs(text: &str, path: &Path) -> Result<Vec<LabelledPair>> {
    let bad = |line: usize, field: &'static str, reason: String| Error::BadRecord {
        path: PathBuf::from(path),
        line,
        field,
        reason,
    };
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let mut fields = raw.split('\t');
        let label = fields.next().unwrap_or("");
        let equal = match label {
            "Y" => true,
            "N" => false,
            other => {
                return Err(bad(
                    line,
                    "label",
                    format!("expected Y or N, got `{other}`"),
                ))
            }
        };
        let gold = fields
            .next()
            .ok_or_else(|| bad(line, "gold", "missing".into()))?;
        let pred = fields
            .next()
            .ok_or_else(|| bad(line, "prediction", "missing".into()))?;
        let note = fields.collect::<Vec<_>>().join(" ");
        out.push(LabelledPair {
            line,
            gold: gold.to_owned(),
            pred: pred.to_owned(),
            equal,
            note,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pairs_and_names_bad_lines() {
        let p = Path::new("pairs.tsv");
        let ok = parse_labelled_pairs("# c\n\nY\t1\t1.0\tnote\nN\t(1,2]\t(1,2)\n", p).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(
            (ok[0].line, ok[0].equal, ok[0].note.as_str()),
            (3, true, "note")
        );
        let err = parse_labelled_pairs("y\t1\t1\n", p)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "pairs.tsv:1: field `label`: expected Y or N, got `y`");
        let err = parse_labelled_pairs("Y\t1\n", p).unwrap_err().to_string();
        assert!(err.contains("field `prediction`"), "{err}");
    }
}
