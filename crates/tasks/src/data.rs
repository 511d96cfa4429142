//! Data sources and record reading: local jsonl / json / csv / parquet files, directories of them, and
//! Hub datasets through the local Hugging Face cache.
//!
//! Everything is read into plain JSON objects ([`Record`]) that remember where they came from, so a
//! task's field errors can name `file:line`. Every file read is hashed (sha256) on the way, for the
//! run manifest.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::hub;
pub use crate::hub::HubDataset;

/// Where a task's problems come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// A data file (`.jsonl`, `.json`, `.csv`, `.parquet`; some tasks also take `.zip`), or a
    /// directory whose files of those kinds are read in name order.
    Path(PathBuf),
    /// Files of a Hugging Face Hub dataset, read from the local cache (downloaded first unless
    /// `HF_HUB_OFFLINE` is set).
    Hub(HubDataset),
    /// Problems made by the task itself (no files), e.g. the seeded `arith` generator.
    Generated,
}

impl DataSource {
    /// Reads a source as a user types it: `hf:OWNER/NAME[@REVISION]:FILE[,FILE...]` is a Hub dataset,
    /// `generated` is task-made data, anything else is a local path.
    ///
    /// ```
    /// use reprolm_tasks::DataSource;
    /// let s = DataSource::parse("hf:HuggingFaceH4/MATH-500@main:test.jsonl").unwrap();
    /// assert_eq!(s.to_string(), "hf:HuggingFaceH4/MATH-500@main:test.jsonl");
    /// assert_eq!(DataSource::parse("data/test.jsonl").unwrap(), DataSource::Path("data/test.jsonl".into()));
    /// ```
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "generated" {
            return Ok(DataSource::Generated);
        }
        let Some(rest) = s.strip_prefix("hf:").or_else(|| s.strip_prefix("hf://")) else {
            return Ok(DataSource::Path(PathBuf::from(s)));
        };
        let rest = rest.trim_start_matches('/');
        let (repo_rev, files) = rest
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: name the files, e.g. hf:OWNER/NAME:test.jsonl"))?;
        let (repo, revision) = match repo_rev.split_once('@') {
            Some((r, rev)) => (r, rev),
            None => (repo_rev, "main"),
        };
        if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
            return Err(format!("`{s}`: the repository must be OWNER/NAME"));
        }
        let files: Vec<String> = files
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(String::from)
            .collect();
        if files.is_empty() {
            return Err(format!("`{s}`: no files named after `:`"));
        }
        Ok(DataSource::Hub(HubDataset {
            repo: repo.into(),
            revision: revision.into(),
            files,
        }))
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::Path(p) => write!(f, "{}", p.display()),
            DataSource::Hub(h) => write!(f, "hf:{}@{}:{}", h.repo, h.revision, h.files.join(",")),
            DataSource::Generated => f.write_str("generated"),
        }
    }
}

/// Where a record was read: file and 1-based line (jsonl, csv) or record number (json, parquet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The data file (a zip member is written `archive.zip!member`).
    pub path: PathBuf,
    /// Line or record number, from 1.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// One record of a data file as a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Where it was read.
    pub location: Location,
    /// Its fields. CSV values are strings; parquet values keep their types.
    pub fields: Map<String, Value>,
}

impl Record {
    /// The first of `names` present (and not null) as text; numbers are written as text. The error
    /// names every alternative, the task and the record's location.
    ///
    /// ```
    /// # use reprolm_tasks::data::{Record, Location};
    /// let fields = serde_json::json!({"question": "2+2?", "answer": 4}).as_object().unwrap().clone();
    /// let r = Record { location: Location { path: "t.jsonl".into(), line: 3 }, fields };
    /// assert_eq!(r.text("aime25", &["problem", "question"]).unwrap(), "2+2?");
    /// assert_eq!(r.text("aime25", &["answer"]).unwrap(), "4");
    /// let e = r.text("aime25", &["solution"]).unwrap_err().to_string();
    /// assert_eq!(e, "task `aime25`: t.jsonl:3: missing field `solution`");
    /// ```
    pub fn text(&self, task: &str, names: &[&str]) -> Result<String> {
        for name in names {
            match self.fields.get(*name) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => return Ok(s.clone()),
                Some(Value::Number(n)) => return Ok(n.to_string()),
                Some(other) => {
                    return Err(Error::BadField {
                        task: task.into(),
                        field: name.to_string(),
                        location: self.location.to_string(),
                        reason: format!("expected text or a number, got {}", kind(other)),
                    })
                }
            }
        }
        Err(self.missing(task, names))
    }

    /// The error for a field none of `names` supplies.
    pub fn missing(&self, task: &str, names: &[&str]) -> Error {
        Error::MissingField {
            task: task.into(),
            field: names.join("` or `"),
            location: self.location.to_string(),
        }
    }

    /// The error for an unusable value of `field`.
    pub fn bad(&self, task: &str, field: &str, reason: impl Into<String>) -> Error {
        Error::BadField {
            task: task.into(),
            field: field.into(),
            location: self.location.to_string(),
            reason: reason.into(),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The records read from a source, and the files they came from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawData {
    /// Records in file order, files in reading order.
    pub records: Vec<Record>,
    /// Every file read, with its digest.
    pub files: Vec<DataFile>,
}

/// The formats a data file can have, decided by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// One JSON array of objects.
    Json,
    /// Comma-separated with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The format of `path` by extension (`.jsonl`/`.ndjson`, `.json`, `.csv`, `.parquet`).
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// Reads every record of a source. [`DataSource::Generated`] has no records to read and is refused
/// (naming `task`): tasks that generate data handle it before calling this.
pub fn read_source(source: &DataSource, task: &str) -> Result<RawData> {
    match source {
        DataSource::Path(p) => read_path(p),
        DataSource::Hub(h) => {
            let mut out = RawData::default();
            for path in hub::resolve(h)? {
                let (records, file) = read_file(&path)?;
                out.records.extend(records);
                out.files.push(file);
            }
            Ok(out)
        }
        DataSource::Generated => Err(Error::Source {
            task: task.into(),
            source_desc: source.to_string(),
            reason: "this task reads files; give a path or a Hub dataset".into(),
        }),
    }
}

/// Reads a file, or every data file of a directory (not recursive) in name order.
pub fn read_path(path: &Path) -> Result<RawData> {
    let meta = fs::metadata(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    let mut out = RawData::default();
    for file in data_files(path, meta.is_dir())? {
        let (records, digest) = read_file(&file)?;
        out.records.extend(records);
        out.files.push(digest);
    }
    Ok(out)
}

/// The files a path stands for: itself, or the data files of a directory in name order.
pub fn data_files(path: &Path, is_dir: bool) -> Result<Vec<PathBuf>> {
    if !is_dir {
        return Ok(vec![path.to_path_buf()]);
    }
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(path).map_err(io)? {
        let p = entry.map_err(io)?.path();
        if p.is_file() && Format::of(&p).is_some() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::BadFile {
            path: path.into(),
            reason: "directory holds no .jsonl, .json, .csv or .parquet files".into(),
        });
    }
    Ok(files)
}

/// Reads one data file (format by extension) and hashes it.
pub fn read_file(path: &Path) -> Result<(Vec<Record>, DataFile)> {
    let format = Format::of(path).ok_or_else(|| Error::BadFile {
        path: path.into(),
        reason: "unknown extension; expected .jsonl, .json, .csv or .parquet".into(),
    })?;
    let bytes = fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    let digest = digest(path, &bytes);
    let records = match format {
        Format::Parquet => parse_parquet(path, bytes)?,
        other => parse_bytes(&bytes, path, other)?,
    };
    Ok((records, digest))
}

/// One data file a dataset was read from, with its digest for the run manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Where it was read (a Hub file: its path in the local cache).
    pub path: PathBuf,
    /// Hex sha256 of the file's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// Lower-case hex of `bytes` (digests in manifests).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The manifest entry for bytes read from `path`.
pub fn digest(path: &Path, bytes: &[u8]) -> DataFile {
    DataFile {
        path: path.into(),
        sha256: hex(&Sha256::digest(bytes)),
        bytes: bytes.len() as u64,
    }
}

/// Parses in-memory text data (jsonl, json or csv); `label` names it in errors. Used for files and
/// for archive members read without extracting them to disk.
pub fn parse_bytes(bytes: &[u8], label: &Path, format: Format) -> Result<Vec<Record>> {
    match format {
        Format::Jsonl => parse_jsonl(bytes, label),
        Format::Json => parse_json(bytes, label),
        Format::Csv => parse_csv(bytes, label),
        Format::Parquet => parse_parquet(label, bytes.to_vec()),
    }
}

fn utf8<'a>(bytes: &'a [u8], label: &Path) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Error::Malformed {
            path: label.into(),
            line,
            reason: format!("not UTF-8: {e}"),
        }
    })
}

fn parse_jsonl(bytes: &[u8], label: &Path) -> Result<Vec<Record>> {
    let text = utf8(bytes, label)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |reason: String| Error::Malformed {
            path: label.into(),
            line: line_no,
            reason,
        };
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(fields)) => out.push(Record {
                location: Location {
                    path: label.into(),
                    line: line_no,
                },
                fields,
            }),
            Ok(other) => {
                return Err(malformed(format!(
                    "expected a JSON object, got {}",
                    kind(&other)
                )))
            }
            Err(e) => return Err(malformed(format!("invalid JSON: {e}"))),
        }
    }
    Ok(out)
}

fn parse_json(bytes: &[u8], label: &Path) -> Result<Vec<Record>> {
    let text = utf8(bytes, label)?;
    let value: Value = serde_json::from_str(text).map_err(|e| Error::Malformed {
        path: label.into(),
        line: e.line(),
        reason: format!("invalid JSON: {e}"),
    })?;
    let Value::Array(items) = value else {
        return Err(Error::BadFile {
            path: label.into(),
            reason: format!("expected a JSON array of objects, got {}", kind(&value)),
        });
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(fields) => Ok(Record {
                location: Location {
                    path: label.into(),
                    line: i + 1,
                },
                fields,
            }),
            other => Err(Error::Malformed {
                path: label.into(),
                line: i + 1,
                reason: format!(
                    "record {} of the array: expected an object, got {}",
                    i + 1,
                    kind(&other)
                ),
            }),
        })
        .collect()
}

fn parse_csv(bytes: &[u8], label: &Path) -> Result<Vec<Record>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| Error::Malformed {
            path: label.into(),
            line: 1,
            reason: format!("bad CSV header: {e}"),
        })?
        .clone();
    let mut out = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| Error::Malformed {
            path: label.into(),
            line: e.position().map(|p| p.line() as usize).unwrap_or(0),
            reason: format!("bad CSV row: {e}"),
        })?;
        let line = row.position().map(|p| p.line() as usize).unwrap_or(0);
        let fields = headers
            .iter()
            .zip(row.iter())
            .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
            .collect();
        out.push(Record {
            location: Location {
                path: label.into(),
                line,
            },
            fields,
        });
    }
    Ok(out)
}

fn parse_parquet(label: &Path, bytes: Vec<u8>) -> Result<Vec<Record>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let bad = |e: parquet::errors::ParquetError| Error::BadFile {
        path: label.into(),
        reason: format!("parquet: {e}"),
    };
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).map_err(bad)?;
    let rows = reader.get_row_iter(None).map_err(bad)?;
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| Error::Malformed {
            path: label.into(),
            line: i + 1,
            reason: format!("parquet row: {e}"),
        })?;
        match row.to_json_value() {
            Value::Object(fields) => out.push(Record {
                location: Location {
                    path: label.into(),
                    line: i + 1,
                },
                fields,
            }),
            other => {
                return Err(Error::Malformed {
                    path: label.into(),
                    line: i + 1,
                    reason: format!("row is {}, not a record", kind(&other)),
                })
            }
        }
    }
    Ok(out)
}

/// A content-derived id for records without one: the first 16 hex digits of the sha256 of the
/// record's fields as canonical JSON (keys sorted), so it does not depend on file order.
///
/// ```
/// let a = serde_json::json!({"q": "x", "a": 1}).as_object().unwrap().clone();
/// let b = serde_json::json!({"a": 1, "q": "x"}).as_object().unwrap().clone();
/// assert_eq!(reprolm_tasks::data::content_id(&a), reprolm_tasks::data::content_id(&b));
/// assert_eq!(reprolm_tasks::data::content_id(&a).len(), 16);
/// ```
pub fn content_id(fields: &Map<String, Value>) -> String {
    let sorted: std::collections::BTreeMap<&String, &Value> = fields.iter().collect();
    let text = serde_json::to_string(&sorted).unwrap_or_default();
    hex(&Sha256::digest(text.as_bytes()))[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn malformed_jsonl_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "d.jsonl",
            b"{\"a\": 1}\n\n{\"a\": 2\n{\"a\": 3}\n",
        );
        let e = read_path(&p).unwrap_err();
        match &e {
            Error::Malformed { path, line, .. } => {
                assert_eq!((path.as_path(), *line), (p.as_path(), 3))
            }
            other => panic!("wrong error {other:?}"),
        }
        assert!(
            e.to_string()
                .starts_with(&format!("{}:3: invalid JSON", p.display())),
            "{e}"
        );
    }

    #[test]
    fn non_object_line_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.jsonl", b"{\"a\": 1}\n[1, 2]\n");
        assert!(matches!(
            read_path(&p),
            Err(Error::Malformed { line: 2, .. })
        ));
    }

    #[test]
    fn csv_rows_keep_their_line_numbers_across_quoted_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "d.csv",
            b"Question,Answer\n\"two\nlines\",1\nplain,2\n",
        );
        let (records, file) = read_file(&p).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].fields["Question"], "two\nlines");
        assert_eq!((records[0].location.line, records[1].location.line), (2, 4));
        assert_eq!(file.bytes, 38);
    }

    #[test]
    fn bad_csv_row_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.csv", b"a,b\n1,2\n3\n");
        let e = read_path(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:3:", p.display())), "{e}");
    }

    #[test]
    fn json_array_and_directory_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.json", br#"[{"x": "b1"}, {"x": "b2"}]"#);
        write(dir.path(), "a.jsonl", b"{\"x\": \"a1\"}\n");
        write(dir.path(), "notes.txt", b"ignored");
        let raw = read_path(dir.path()).unwrap();
        let xs: Vec<_> = raw
            .records
            .iter()
            .map(|r| r.fields["x"].as_str().unwrap())
            .collect();
        assert_eq!(xs, ["a1", "b1", "b2"]);
        assert_eq!(raw.files.len(), 2);
        assert_eq!(
            raw.records[2].location.to_string(),
            format!("{}:2", dir.path().join("b.json").display())
        );
    }

    #[test]
    fn sha256_is_of_the_file_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.jsonl", b"{}\n");
        let (_, f) = read_file(&p).unwrap();
        // sha256 of "{}\n"
        assert_eq!(
            f.sha256,
            "ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356"
        );
    }

    #[test]
    fn parquet_rows_become_records() {
        use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use parquet::schema::parser::parse_message_type;
        use std::sync::Arc;

        let schema = Arc::new(
            parse_message_type(
                "message m { REQUIRED BYTE_ARRAY problem (UTF8); REQUIRED INT64 answer; }",
            )
            .unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.parquet");
        let file = fs::File::create(&p).unwrap();
        let mut w =
            SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))
                .unwrap();
        let mut rg = w.next_row_group().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>()
            .write_batch(
                &[ByteArray::from("1+1?"), ByteArray::from("2+3?")],
                None,
                None,
            )
            .unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<Int64Type>()
            .write_batch(&[2, 5], None, None)
            .unwrap();
        col.close().unwrap();
        rg.close().unwrap();
        w.close().unwrap();

        let raw = read_path(&p).unwrap();
        assert_eq!(raw.records.len(), 2);
        assert_eq!(raw.records[1].fields["problem"], "2+3?");
        assert_eq!(raw.records[1].text("t", &["answer"]).unwrap(), "5");
        assert_eq!(raw.records[1].location.line, 2);
    }

    #[test]
    fn not_parquet_is_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.parquet", b"not parquet at all");
        assert!(matches!(read_path(&p), Err(Error::BadFile { .. })));
    }

    #[test]
    fn hub_source_strings_round_trip() {
        let s = DataSource::parse("hf:livecodebench/code_generation_lite:test.jsonl,test2.jsonl")
            .unwrap();
        let DataSource::Hub(h) = &s else { panic!() };
        assert_eq!((h.revision.as_str(), h.files.len()), ("main", 2));
        assert_eq!(DataSource::parse(&s.to_string()).unwrap(), s);
        assert!(DataSource::parse("hf:justname:test.jsonl").is_err());
        assert!(DataSource::parse("hf:a/b").is_err());
    }
}
