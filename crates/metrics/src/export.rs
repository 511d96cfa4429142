//! A run directory as one file for analysis outside reprolm, one record per sample with its response
//! record and, position by position, the top-k token ids and log-probabilities that `logprobs.bin`
//! holds: JSON Lines ([`export_jsonl`], pandas: `pd.read_json(path, lines=True)`) or Parquet
//! ([`export_parquet`], pandas: `pd.read_parquet(path)`).
//!
//! A record: `problem_id`, `sample_index`, `response`, `token_ids`, `finish_reason`, `correct`,
//! `score`, `extracted_answer`, `prompt_tokens`, `question`, `gold_answer`, `prompt`, then `top_ids`
//! and `top_logprobs`, two lists with one list of k entries per generated token (ranks in
//! descending probability). A position with fewer than k candidates has `null` in the missing ranks
//! (the binary file's padding, token id `u32::MAX` and `-inf`, has no JSON form).

use std::io::Write;

use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde_json::{json, Value};

use crate::run_dir::{LoadedRun, LogprobsRecord, ResponseRecord, PAD_TOKEN};
use crate::{Error, Result};

/// Writes every sample of `run` as one JSON line to `out`; returns how many.
pub fn export_jsonl(run: &LoadedRun, out: &mut impl Write) -> Result<usize> {
    let mut n = 0;
    let path = run.path.join("export");
    for pair in run.samples()? {
        let (r, lp) = pair?;
        let (mut ids, mut lps) = (Vec::with_capacity(lp.len()), Vec::with_capacity(lp.len()));
        for i in 0..lp.len() {
            let (ti, tl) = lp.position(i);
            let real = |t: &u32| *t != PAD_TOKEN;
            ids.push(Value::from(
                ti.iter()
                    .map(|t| real(t).then_some(*t))
                    .collect::<Vec<Option<u32>>>(),
            ));
            lps.push(Value::from(
                ti.iter()
                    .zip(tl)
                    .map(|(t, l)| (real(t) && l.is_finite()).then_some(f64::from(*l)))
                    .collect::<Vec<Option<f64>>>(),
            ));
        }
        let line = json!({
            "problem_id": r.problem_id,
            "sample_index": r.sample_index,
            "response": r.response,
            "token_ids": r.token_ids,
            "finish_reason": r.finish_reason,
            "correct": r.correct,
            "score": r.score,
            "extracted_answer": r.extracted_answer,
            "prompt_tokens": r.prompt_tokens,
            "question": r.question,
            "gold_answer": r.gold_answer,
            "prompt": r.prompt,
            "top_ids": ids,
            "top_logprobs": lps,
        });
        writeln!(out, "{line}").map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        n += 1;
    }
    Ok(n)
}

/// The Parquet export's columns, in file order: the JSON export's keys (which a JSON line holds in
/// alphabetical order), in the order the module doc lists them.
pub const PARQUET_COLUMNS: [&str; 14] = [
    "problem_id",
    "sample_index",
    "response",
    "token_ids",
    "finish_reason",
    "correct",
    "score",
    "extracted_answer",
    "prompt_tokens",
    "question",
    "gold_answer",
    "prompt",
    "top_ids",
    "top_logprobs",
];

/// Lists are the standard three-level LIST groups, so pyarrow reads `token_ids` as a list of
/// uint32 and `top_ids`/`top_logprobs` as lists of lists (uint32, float32; the padding is null).
/// Logprobs stay f32, as `logprobs.bin` holds them; the JSON export widens them to f64.
const SCHEMA: &str = "
message reprolm_export {
  required binary problem_id (STRING);
  required int32 sample_index (INTEGER(32,false));
  required binary response (STRING);
  required group token_ids (LIST) {
    repeated group list { required int32 element (INTEGER(32,false)); }
  }
  required binary finish_reason (STRING);
  required boolean correct;
  required double score;
  optional binary extracted_answer (STRING);
  required int32 prompt_tokens (INTEGER(32,false));
  optional binary question (STRING);
  optional binary gold_answer (STRING);
  optional binary prompt (STRING);
  required group top_ids (LIST) {
    repeated group list {
      required group element (LIST) {
        repeated group list { optional int32 element (INTEGER(32,false)); }
      }
    }
  }
  required group top_logprobs (LIST) {
    repeated group list {
      required group element (LIST) {
        repeated group list { optional float element; }
      }
    }
  }
}";

/// Top-k entries buffered before a row group is written: bounds memory on runs of long responses
/// (about 40 MB of buffers) while keeping row groups large enough to read fast.
const ROW_GROUP_TOP_ENTRIES: usize = 1 << 21;

/// Writes every sample of `run` as one row of a Parquet file to `out` (Snappy-compressed); returns
/// how many. Rows are buffered and written a row group at a time; `out` gets the footer last, so a
/// write cut short leaves no readable file (the caller writes to a temporary file and renames it).
///
/// ```
/// # use reprolm_metrics::run_dir::{Durability, FinishReason, LogprobsRecord, Manifest, ResponseRecord, RunDir};
/// # use reprolm_metrics::LoadedRun;
/// # let dir = tempfile::tempdir()?;
/// # let mut run = RunDir::create(dir.path(), Manifest::example(), Durability::Flush)?;
/// # let mut lp = LogprobsRecord::new("p1", 0, 5); // the example manifest's top-k
/// # lp.push_position(&[3, 9], &[-0.1, -2.5]);
/// # run.append(&ResponseRecord::new("p1", 0, 4, "x", vec![3], FinishReason::Stop), &lp)?;
/// let run = LoadedRun::load(dir.path())?;
/// let mut bytes = Vec::new();
/// assert_eq!(reprolm_metrics::export::export_parquet(&run, &mut bytes)?, 1);
/// assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn export_parquet<W: Write + Send>(run: &LoadedRun, out: W) -> Result<usize> {
    let err = |source| Error::Parquet {
        path: run.path.clone(),
        source,
    };
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(err)?);
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut w = SerializedFileWriter::new(out, schema, Arc::new(props)).map_err(err)?;
    let mut cols = Columns::default();
    let mut n = 0;
    for pair in run.samples()? {
        let (r, lp) = pair?;
        cols.push(r, &lp);
        n += 1;
        if cols.top_ids.values.len() >= ROW_GROUP_TOP_ENTRIES {
            cols.write_row_group(&mut w).map_err(err)?;
        }
    }
    if cols.rows > 0 {
        cols.write_row_group(&mut w).map_err(err)?;
    }
    w.close().map_err(err)?;
    Ok(n)
}

/// One leaf column's values with its definition and repetition levels (Dremel encoding): a null or
/// an empty list is a level with no value.
#[derive(Default)]
struct Leaf<T> {
    values: Vec<T>,
    def: Vec<i16>,
    rep: Vec<i16>,
}

impl<T> Leaf<T> {
    fn optional(&mut self, v: Option<T>) {
        self.def.push(i16::from(v.is_some()));
        self.values.extend(v);
    }

    /// A `list<T>` of required items: level 1 is "the list has an item".
    fn list(&mut self, items: impl IntoIterator<Item = T>) {
        let start = self.def.len();
        for (j, v) in items.into_iter().enumerate() {
            self.rep.push(i16::from(j > 0));
            self.def.push(1);
            self.values.push(v);
        }
        if self.def.len() == start {
            self.rep.push(0);
            self.def.push(0);
        }
    }

    /// A `list<list<T?>>`, one inner list per position: definition 1 is an outer item (an empty
    /// inner list), 2 an inner item that is null, 3 a value; repetition 1 starts an outer item,
    /// 2 an inner one.
    fn nested(&mut self, rows: impl IntoIterator<Item = Vec<Option<T>>>) {
        let start = self.def.len();
        for (i, row) in rows.into_iter().enumerate() {
            let outer_rep = i16::from(i > 0);
            if row.is_empty() {
                self.rep.push(outer_rep);
                self.def.push(1);
            }
            for (j, v) in row.into_iter().enumerate() {
                self.rep.push(if j > 0 { 2 } else { outer_rep });
                self.def.push(if v.is_some() { 3 } else { 2 });
                self.values.extend(v);
            }
        }
        if self.def.len() == start {
            self.rep.push(0);
            self.def.push(0);
        }
    }

    /// The levels to pass: none for a column that has no level of that kind.
    fn levels(&self) -> (Option<&[i16]>, Option<&[i16]>) {
        fn some(l: &[i16]) -> Option<&[i16]> {
            (!l.is_empty()).then_some(l)
        }
        (some(&self.def), some(&self.rep))
    }
}

/// The rows of one row group, column by column.
#[derive(Default)]
struct Columns {
    rows: usize,
    problem_id: Leaf<ByteArray>,
    sample_index: Leaf<i32>,
    response: Leaf<ByteArray>,
    token_ids: Leaf<i32>,
    finish_reason: Leaf<ByteArray>,
    correct: Leaf<bool>,
    score: Leaf<f64>,
    extracted_answer: Leaf<ByteArray>,
    prompt_tokens: Leaf<i32>,
    question: Leaf<ByteArray>,
    gold_answer: Leaf<ByteArray>,
    prompt: Leaf<ByteArray>,
    top_ids: Leaf<i32>,
    top_logprobs: Leaf<f32>,
}

/// A u32 in an `INTEGER(32,false)` column: Parquet stores the same 32 bits as int32.
fn u32_bits(v: u32) -> i32 {
    v as i32
}

fn text(s: &str) -> ByteArray {
    ByteArray::from(s)
}

impl Columns {
    fn push(&mut self, r: &ResponseRecord, lp: &LogprobsRecord) {
        self.rows += 1;
        self.problem_id.values.push(text(&r.problem_id));
        self.sample_index.values.push(u32_bits(r.sample_index));
        self.response.values.push(text(&r.response));
        self.token_ids
            .list(r.token_ids.iter().map(|&t| u32_bits(t)));
        let finish = serde_json::to_value(r.finish_reason).unwrap_or_default();
        self.finish_reason
            .values
            .push(text(finish.as_str().unwrap_or_default()));
        self.correct.values.push(r.correct);
        self.score.values.push(r.score);
        self.extracted_answer
            .optional(r.extracted_answer.as_deref().map(text));
        self.prompt_tokens.values.push(u32_bits(r.prompt_tokens));
        self.question.optional(r.question.as_deref().map(text));
        self.gold_answer
            .optional(r.gold_answer.as_deref().map(text));
        self.prompt.optional(r.prompt.as_deref().map(text));
        let positions = || (0..lp.len()).map(|i| lp.position(i));
        self.top_ids.nested(positions().map(|(ti, _)| {
            ti.iter()
                .map(|&t| (t != PAD_TOKEN).then_some(u32_bits(t)))
                .collect()
        }));
        self.top_logprobs.nested(positions().map(|(ti, tl)| {
            ti.iter()
                .zip(tl)
                .map(|(&t, &l)| (t != PAD_TOKEN && l.is_finite()).then_some(l))
                .collect()
        }));
    }

    /// Writes the buffered rows as one row group, leaf columns in schema order, and empties the
    /// buffers.
    fn write_row_group<W: Write + Send>(
        &mut self,
        w: &mut SerializedFileWriter<W>,
    ) -> parquet::errors::Result<()> {
        let c = std::mem::take(self);
        let mut rg = w.next_row_group()?;
        let mut leaf = 0;
        while let Some(mut col) = rg.next_column()? {
            macro_rules! put {
                ($ty:ty, $leaf:expr) => {{
                    let (def, rep) = $leaf.levels();
                    col.typed::<$ty>().write_batch(&$leaf.values, def, rep)?;
                }};
            }
            match leaf {
                0 => put!(ByteArrayType, c.problem_id),
                1 => put!(Int32Type, c.sample_index),
                2 => put!(ByteArrayType, c.response),
                3 => put!(Int32Type, c.token_ids),
                4 => put!(ByteArrayType, c.finish_reason),
                5 => put!(BoolType, c.correct),
                6 => put!(DoubleType, c.score),
                7 => put!(ByteArrayType, c.extracted_answer),
                8 => put!(Int32Type, c.prompt_tokens),
                9 => put!(ByteArrayType, c.question),
                10 => put!(ByteArrayType, c.gold_answer),
                11 => put!(ByteArrayType, c.prompt),
                12 => put!(Int32Type, c.top_ids),
                13 => put!(FloatType, c.top_logprobs),
                _ => unreachable!("the schema has 14 leaf columns"),
            }
            col.close()?;
            leaf += 1;
        }
        rg.close()?;
        Ok(())
    }
}
