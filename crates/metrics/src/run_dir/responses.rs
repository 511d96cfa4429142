//! `responses.jsonl`: one JSON line per (problem, sample), appended as each problem finishes.
//!
//! Every line carries its own `format_version` rather than the file having a header line, so the file
//! stays a plain JSON-lines table that `jq` or pandas read without special-casing the first line.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_err, Error, Result};
use crate::run_dir::manifest::check_version;

/// The responses format this build writes and the only one it reads.
pub const RESPONSES_FORMAT_VERSION: u32 = 1;

/// File name of the responses inside a run directory.
pub const RESPONSES_FILE: &str = "responses.jsonl";

/// Identifies one generated response: a problem and which of its samples (0 for greedy runs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SampleKey {
    /// The task's id for the problem.
    pub problem_id: String,
    /// Index of the sample, 0-based.
    pub sample_index: u32,
}

impl SampleKey {
    /// Build a key; a convenience for callers holding a `&str`.
    ///
    /// ```
    /// # use reprolm_metrics::run_dir::SampleKey;
    /// assert_eq!(SampleKey::new("p1", 0).to_string(), "p1#0");
    /// ```
    pub fn new(problem_id: impl Into<String>, sample_index: u32) -> Self {
        SampleKey {
            problem_id: problem_id.into(),
            sample_index,
        }
    }
}

impl fmt::Display for SampleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.problem_id, self.sample_index)
    }
}

/// Why generation of a response stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence or stop token was generated.
    Stop,
    /// `max_tokens` was reached; the answer is cut off.
    Length,
    /// The prompt alone is longer than the model's context: nothing was generated, and the
    /// sample is scored as wrong.
    PromptTooLong,
}

/// One scored response.
///
/// ```
/// # use reprolm_metrics::run_dir::{ResponseRecord, FinishReason};
/// let r = ResponseRecord::new("p1", 0, 12, "x = 4", vec![87, 284, 220, 19], FinishReason::Stop);
/// assert_eq!(r.key().problem_id, "p1");
/// assert!(!r.correct);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseRecord {
    /// The task's id for the problem.
    pub problem_id: String,
    /// Index of the sample, 0-based.
    pub sample_index: u32,
    /// Length of the prompt in tokens (after the chat template).
    pub prompt_tokens: u32,
    /// The decoded response.
    pub response: String,
    /// The generated token ids; what reproducibility is measured on.
    pub token_ids: Vec<u32>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Score in 0..=1 (fraction of tests passed for code, 0/1 for answers).
    pub score: f64,
    /// Whether the response counts as solved (accuracy and pass@k count this).
    pub correct: bool,
    /// The answer the grader extracted, if any.
    pub extracted_answer: Option<String>,
    /// Grader-specific detail (per-test outcomes, an error that stopped scoring, ...).
    pub score_detail: serde_json::Value,
    /// The problem's text as the task states it, so a record reads without the dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// The reference answer the response was graded against, when the task has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_answer: Option<String>,
    /// The whole prompt text the model was given (chat template applied); `prompt_tokens` counts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

impl ResponseRecord {
    /// An unscored record (score 0, not correct, no detail); the scorer fills those in.
    pub fn new(
        problem_id: impl Into<String>,
        sample_index: u32,
        prompt_tokens: u32,
        response: impl Into<String>,
        token_ids: Vec<u32>,
        finish_reason: FinishReason,
    ) -> Self {
        ResponseRecord {
            problem_id: problem_id.into(),
            sample_index,
            prompt_tokens,
            response: response.into(),
            token_ids,
            finish_reason,
            score: 0.0,
            correct: false,
            extracted_answer: None,
            score_detail: serde_json::Value::Null,
            question: None,
            gold_answer: None,
            prompt: None,
        }
    }

    /// The record's key.
    pub fn key(&self) -> SampleKey {
        SampleKey::new(self.problem_id.clone(), self.sample_index)
    }
}

/// How hard appends push data towards the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Flush to the OS after each append: survives a killed process, which is what resume is built for.
    #[default]
    Flush,
    /// Also fsync after each append: survives a power loss too, at the cost of a disk sync per problem.
    Fsync,
}

/// The wire form: the record plus the format version on every line.
#[derive(Serialize)]
struct WireOut<'a> {
    format_version: u32,
    #[serde(flatten)]
    record: &'a ResponseRecord,
}

/// What reading a responses file found.
#[derive(Debug, Clone, Default)]
pub struct ResponsesScan {
    /// All complete records, in file order.
    pub records: Vec<ResponseRecord>,
    /// Byte offset at which each record's line starts (parallel to `records`).
    pub offsets: Vec<u64>,
    /// Byte length of the complete lines; anything after it is a torn tail.
    pub valid_len: u64,
    /// Byte length of the file.
    pub file_len: u64,
}

impl ResponsesScan {
    /// Whether the file ends in a partial line, as a process killed mid-write leaves it.
    pub fn is_torn(&self) -> bool {
        self.valid_len < self.file_len
    }
}

/// Read a responses file. A last line without its newline is a torn write and is left out (reported
/// through [`ResponsesScan::is_torn`]); any other unreadable line is an error naming its line number.
///
/// ```no_run
/// # use reprolm_metrics::run_dir::read_responses;
/// let scan = read_responses("run/responses.jsonl".as_ref())?;
/// println!("{} records", scan.records.len());
/// # Ok::<(), reprolm_metrics::Error>(())
/// ```
pub fn read_responses(path: &Path) -> Result<ResponsesScan> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let mut reader = BufReader::new(file);
    let mut scan = ResponsesScan {
        file_len,
        ..Default::default()
    };
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.last() != Some(&b'\n') {
            break; // torn tail: valid_len stays before it
        }
        if buf.iter().all(|b| b.is_ascii_whitespace()) {
            scan.valid_len += n as u64;
            continue;
        }
        scan.records.push(parse_line(path, line_no, &buf)?);
        scan.offsets.push(scan.valid_len);
        scan.valid_len += n as u64;
    }
    Ok(scan)
}

fn parse_line(path: &Path, line: usize, bytes: &[u8]) -> Result<ResponseRecord> {
    let json_err = |source| Error::Json {
        path: path.into(),
        line: Some(line),
        source,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(json_err)?;
    check_version(path, &value, RESPONSES_FORMAT_VERSION).map_err(|e| match e {
        Error::UnsupportedVersion {
            path,
            found,
            supported,
            hint,
        } => Error::UnsupportedVersion {
            path: PathBuf::from(format!("{}:{line}", path.display())),
            found,
            supported,
            hint,
        },
        other => other,
    })?;
    let record: ResponseRecord = serde_json::from_value(value).map_err(json_err)?;
    if !(0.0..=1.0).contains(&record.score) {
        return Err(Error::BadRecord {
            path: path.into(),
            record: format!("line {line}"),
            field: "score",
            reason: format!("{} is outside 0..=1", record.score),
        });
    }
    Ok(record)
}

/// Serialize one record as its JSON line, newline included.
pub(crate) fn encode_line(path: &Path, record: &ResponseRecord) -> Result<Vec<u8>> {
    let mut line = serde_json::to_vec(&WireOut {
        format_version: RESPONSES_FORMAT_VERSION,
        record,
    })
    .map_err(|source| Error::Json {
        path: path.into(),
        line: None,
        source,
    })?;
    line.push(b'\n');
    Ok(line)
}

/// Replace a responses file with `records` atomically (temporary file + rename); for re-scoring a run
/// without generating again.
pub fn write_responses(path: &Path, records: &[ResponseRecord]) -> Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io_err(&tmp))?);
        for r in records {
            f.write_all(&encode_line(path, r)?).map_err(io_err(&tmp))?;
        }
        let f = f.into_inner().map_err(|e| Error::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, i: u32) -> ResponseRecord {
        let mut r = ResponseRecord::new(
            id,
            i,
            3,
            "héllo \"q\"\nline",
            vec![1, 2, 3],
            FinishReason::Length,
        );
        r.score = 0.5;
        r.extracted_answer = Some("4".into());
        r.score_detail = serde_json::json!({"tests": [true, false]});
        r
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RESPONSES_FILE);
        let records = vec![rec("a", 0), rec("a", 1), rec("b", 0)];
        write_responses(&path, &records).unwrap();
        let scan = read_responses(&path).unwrap();
        assert_eq!(scan.records, records);
        assert!(!scan.is_torn());
        let full = std::fs::read(&path).unwrap();
        assert!(full.starts_with(b"{\"format_version\":1,"));

        // Cut the last line in the middle: the first two records survive, the tail is reported.
        let cut = full.len() - 10;
        std::fs::write(&path, &full[..cut]).unwrap();
        let scan = read_responses(&path).unwrap();
        assert_eq!(scan.records, records[..2]);
        assert!(scan.is_torn());
        let second_end = full
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(1)
            .unwrap()
            .0
            + 1;
        assert_eq!(scan.valid_len, second_end as u64);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RESPONSES_FILE);
        let good = encode_line(&path, &rec("a", 0)).unwrap();
        let mut text = good.clone();
        text.extend_from_slice(b"{\"format_version\":2}\n");
        std::fs::write(&path, &text).unwrap();
        let msg = read_responses(&path).unwrap_err().to_string();
        assert!(
            msg.contains("responses.jsonl:2: format_version 2 is not supported"),
            "{msg}"
        );

        let mut text = good.clone();
        text.extend_from_slice(b"{not json\n");
        text.extend_from_slice(&good);
        std::fs::write(&path, &text).unwrap();
        let msg = read_responses(&path).unwrap_err().to_string();
        assert!(msg.contains("responses.jsonl:2:"), "{msg}");

        let mut bad = rec("a", 0);
        bad.score = 1.5;
        std::fs::write(&path, encode_line(&path, &bad).unwrap()).unwrap();
        let msg = read_responses(&path).unwrap_err().to_string();
        assert!(
            msg.contains("line 1: field `score`: 1.5 is outside 0..=1"),
            "{msg}"
        );
    }
}
