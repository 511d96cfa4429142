//! `logprobs.bin`: the top-k candidates (token id, logprob) of every generated token, in an append-only
//! binary file.
//!
//! Why not safetensors: a safetensors file has its header first, so it cannot grow by appending, and a
//! run that is killed must keep what it finished. Each record here is framed by its length and a CRC-32 of
//! its payload, so a reader tells a record cut short by a kill (only ever the last one) from damage in the
//! middle of the file (an error).
//!
//! Layout, all integers little-endian:
//! ```text
//! header  : b"RPLMLOGP" | u32 format_version | u32 k
//! record  : u32 payload_len | u32 crc32(payload) | payload
//! payload : u32 sample_index | u32 n_tokens | u32 id_len | id_len bytes problem_id (UTF-8)
//!           | n_tokens*k u32 token ids | n_tokens*k f32 logprobs      (row-major: position, then rank)
//! ```
//! Ranks are in descending probability. A position with fewer than k candidates (a vocabulary smaller
//! than k, an import that kept fewer) is padded with token id `u32::MAX` and logprob `-inf`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{io_err, Error, Result, VersionFound};
use crate::run_dir::responses::{Durability, SampleKey};

/// The logprobs format this build writes and the only one it reads.
pub const LOGPROBS_FORMAT_VERSION: u32 = 1;

/// File name of the logprobs inside a run directory.
pub const LOGPROBS_FILE: &str = "logprobs.bin";

/// Number of candidates kept per token unless a run says otherwise (the paper's setting).
pub const DEFAULT_LOGPROBS_K: u32 = 5;

const MAGIC: &[u8; 8] = b"RPLMLOGP";
const HEADER_LEN: u64 = 16;
const FRAME_LEN: u64 = 8;
/// Token id used to pad a position that has fewer than k candidates.
pub const PAD_TOKEN: u32 = u32::MAX;

/// The top-k candidates of every generated token of one response.
///
/// ```
/// # use reprolm_metrics::run_dir::LogprobsRecord;
/// let mut r = LogprobsRecord::new("p1", 0, 2);
/// r.push_position(&[7, 3], &[-0.1, -2.4]);
/// r.push_position(&[5], &[-0.01]); // padded to k = 2
/// assert_eq!(r.len(), 2);
/// assert_eq!(r.position(1).0, &[5, u32::MAX]);
/// assert!((r.top1_prob(0) - (-0.1f64).exp()).abs() < 1e-7);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LogprobsRecord {
    problem_id: String,
    sample_index: u32,
    k: u32,
    token_ids: Vec<u32>,
    logprobs: Vec<f32>,
}

impl LogprobsRecord {
    /// An empty record for a response; fill it with [`push_position`](Self::push_position).
    ///
    /// # Panics
    /// If `k` is 0.
    pub fn new(problem_id: impl Into<String>, sample_index: u32, k: u32) -> Self {
        assert!(k > 0, "logprobs k must be at least 1");
        LogprobsRecord {
            problem_id: problem_id.into(),
            sample_index,
            k,
            token_ids: Vec::new(),
            logprobs: Vec::new(),
        }
    }

    /// Build a record from flat row-major arrays (`n_tokens * k` each).
    ///
    /// # Panics
    /// If `k` is 0 or the arrays' lengths differ or are not a multiple of `k`: a caller bug, not a data error.
    pub fn from_flat(
        problem_id: impl Into<String>,
        sample_index: u32,
        k: u32,
        token_ids: Vec<u32>,
        logprobs: Vec<f32>,
    ) -> Self {
        assert!(k > 0, "logprobs k must be at least 1");
        assert_eq!(
            token_ids.len(),
            logprobs.len(),
            "token ids and logprobs must have the same length"
        );
        assert_eq!(
            token_ids.len() % k as usize,
            0,
            "flat arrays must hold k = {k} entries per position"
        );
        LogprobsRecord {
            problem_id: problem_id.into(),
            sample_index,
            k,
            token_ids,
            logprobs,
        }
    }

    /// Append the candidates of the next generated token, best first; fewer than k are padded.
    ///
    /// # Panics
    /// If more than k candidates are given or `ids` and `logprobs` differ in length.
    pub fn push_position(&mut self, ids: &[u32], logprobs: &[f32]) {
        assert_eq!(
            ids.len(),
            logprobs.len(),
            "candidate ids and logprobs must have the same length"
        );
        assert!(
            ids.len() <= self.k as usize,
            "{} candidates given, k = {}",
            ids.len(),
            self.k
        );
        self.token_ids.extend_from_slice(ids);
        self.logprobs.extend_from_slice(logprobs);
        for _ in ids.len()..self.k as usize {
            self.token_ids.push(PAD_TOKEN);
            self.logprobs.push(f32::NEG_INFINITY);
        }
    }

    /// The problem id.
    pub fn problem_id(&self) -> &str {
        &self.problem_id
    }

    /// The sample index.
    pub fn sample_index(&self) -> u32 {
        self.sample_index
    }

    /// The record's key.
    pub fn key(&self) -> SampleKey {
        SampleKey::new(self.problem_id.clone(), self.sample_index)
    }

    /// Candidates per position.
    pub fn k(&self) -> u32 {
        self.k
    }

    /// Number of generated tokens covered.
    pub fn len(&self) -> usize {
        self.token_ids.len() / self.k as usize
    }

    /// Whether the response had no tokens.
    pub fn is_empty(&self) -> bool {
        self.token_ids.is_empty()
    }

    /// Candidate ids and logprobs at generated position `i`, best first.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn position(&self, i: usize) -> (&[u32], &[f32]) {
        let k = self.k as usize;
        (
            &self.token_ids[i * k..(i + 1) * k],
            &self.logprobs[i * k..(i + 1) * k],
        )
    }

    /// Probability of the best candidate at position `i`, computed in f64.
    pub fn top1_prob(&self, i: usize) -> f64 {
        f64::from(self.logprobs[i * self.k as usize]).exp()
    }

    /// All candidate ids, row-major (position, rank).
    pub fn flat_token_ids(&self) -> &[u32] {
        &self.token_ids
    }

    /// All candidate logprobs, row-major (position, rank).
    pub fn flat_logprobs(&self) -> &[f32] {
        &self.logprobs
    }

    fn encode(&self) -> Vec<u8> {
        let id = self.problem_id.as_bytes();
        let n = self.len();
        let payload_len = 12 + id.len() + 8 * n * self.k as usize;
        let mut payload = Vec::with_capacity(payload_len);
        payload.extend_from_slice(&self.sample_index.to_le_bytes());
        payload.extend_from_slice(&(n as u32).to_le_bytes());
        payload.extend_from_slice(&(id.len() as u32).to_le_bytes());
        payload.extend_from_slice(id);
        for t in &self.token_ids {
            payload.extend_from_slice(&t.to_le_bytes());
        }
        for l in &self.logprobs {
            payload.extend_from_slice(&l.to_le_bytes());
        }
        let mut out = Vec::with_capacity(payload.len() + FRAME_LEN as usize);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    fn decode(path: &Path, offset: u64, k: u32, payload: &[u8]) -> Result<Self> {
        let corrupt = |reason: String| Error::Corrupt {
            path: path.into(),
            offset,
            reason,
        };
        let u32_at = |i: usize| u32::from_le_bytes(payload[i..i + 4].try_into().expect("4 bytes"));
        if payload.len() < 12 {
            return Err(corrupt(format!(
                "payload of {} bytes is shorter than its 12-byte head",
                payload.len()
            )));
        }
        let sample_index = u32_at(0);
        let n = u32_at(4) as usize;
        let id_len = u32_at(8) as usize;
        let cells = n * k as usize;
        let expected = 12 + id_len + 8 * cells;
        if payload.len() != expected {
            return Err(corrupt(format!(
                "payload is {} bytes but {n} tokens x k={k} with a {id_len}-byte id need {expected}",
                payload.len()
            )));
        }
        let problem_id = std::str::from_utf8(&payload[12..12 + id_len])
            .map_err(|e| corrupt(format!("problem id is not UTF-8: {e}")))?
            .to_owned();
        let ids_start = 12 + id_len;
        let lps_start = ids_start + 4 * cells;
        let token_ids = payload[ids_start..lps_start]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let logprobs = payload[lps_start..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        Ok(LogprobsRecord {
            problem_id,
            sample_index,
            k,
            token_ids,
            logprobs,
        })
    }
}

/// Where one record sits in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogprobsEntry {
    /// The record's key.
    pub key: SampleKey,
    /// Byte offset of its frame.
    pub offset: u64,
    /// Frame plus payload length in bytes.
    pub len: u64,
    /// Number of generated tokens it covers.
    pub n_tokens: u32,
}

/// A scanned logprobs file: its index, and where its valid part ends.
///
/// ```no_run
/// # use reprolm_metrics::run_dir::{LogprobsFile, SampleKey};
/// let file = LogprobsFile::open("run/logprobs.bin".as_ref())?;
/// if file.is_torn() {
///     eprintln!("last record was cut short by a kill; a resume will drop it");
/// }
/// let rec = file.read(&SampleKey::new("p1", 0))?.expect("recorded");
/// println!("{} tokens, top-1 p at 0: {}", rec.len(), rec.top1_prob(0));
/// # Ok::<(), reprolm_metrics::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LogprobsFile {
    path: PathBuf,
    k: u32,
    entries: Vec<LogprobsEntry>,
    index: HashMap<SampleKey, usize>,
    valid_len: u64,
    file_len: u64,
}

impl LogprobsFile {
    /// Scan the file, checking every record's checksum. A short or failing last record is a torn tail
    /// (see [`is_torn`](Self::is_torn)); a failing record with data after it is [`Error::Corrupt`]. A file
    /// shorter than its header (killed while being created) scans as empty and torn.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(io_err(path))?;
        let file_len = file.metadata().map_err(io_err(path))?.len();
        let mut r = BufReader::new(file);
        let mut header = [0u8; HEADER_LEN as usize];
        if file_len < HEADER_LEN {
            return Ok(LogprobsFile {
                path: path.into(),
                k: 0,
                entries: Vec::new(),
                index: HashMap::new(),
                valid_len: 0,
                file_len,
            });
        }
        r.read_exact(&mut header).map_err(io_err(path))?;
        if &header[..8] != MAGIC {
            return Err(Error::Corrupt {
                path: path.into(),
                offset: 0,
                reason: "not a reprolm logprobs file (bad magic bytes)".into(),
            });
        }
        let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if version != LOGPROBS_FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.into(),
                found: VersionFound::Version(version.into()),
                supported: LOGPROBS_FORMAT_VERSION,
                hint: if version > LOGPROBS_FORMAT_VERSION {
                    "it was written by a newer reprolm; upgrade to read it"
                } else {
                    "it was not written by a reprolm this build can read"
                },
            });
        }
        let k = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
        if k == 0 {
            return Err(Error::BadRecord {
                path: path.into(),
                record: "header".into(),
                field: "k",
                reason: "k is 0".into(),
            });
        }
        let mut entries = Vec::new();
        let mut index = HashMap::new();
        let mut offset = HEADER_LEN;
        let mut payload = Vec::new();
        while offset < file_len {
            let rest = file_len - offset;
            if rest < FRAME_LEN {
                break;
            }
            let mut frame = [0u8; FRAME_LEN as usize];
            r.read_exact(&mut frame).map_err(io_err(path))?;
            let len = u64::from(u32::from_le_bytes(frame[..4].try_into().expect("4 bytes")));
            let crc = u32::from_le_bytes(frame[4..].try_into().expect("4 bytes"));
            if FRAME_LEN + len > rest {
                break; // payload runs past the end: cut short by a kill
            }
            payload.resize(len as usize, 0);
            r.read_exact(&mut payload).map_err(io_err(path))?;
            let end = offset + FRAME_LEN + len;
            if crc32fast::hash(&payload) != crc {
                if end == file_len {
                    break; // the last record, written only in part
                }
                return Err(Error::Corrupt {
                    path: path.into(),
                    offset,
                    reason: "checksum mismatch in a record that is not the last one".into(),
                });
            }
            let rec = LogprobsRecord::decode(path, offset, k, &payload)?;
            let key = rec.key();
            if index.insert(key.clone(), entries.len()).is_some() {
                return Err(Error::Corrupt {
                    path: path.into(),
                    offset,
                    reason: format!("{key} is recorded twice"),
                });
            }
            entries.push(LogprobsEntry {
                key,
                offset,
                len: FRAME_LEN + len,
                n_tokens: rec.len() as u32,
            });
            offset = end;
        }
        Ok(LogprobsFile {
            path: path.into(),
            k,
            entries,
            index,
            valid_len: offset,
            file_len,
        })
    }

    /// Candidates per position, from the header (0 if the header itself is torn).
    pub fn k(&self) -> u32 {
        self.k
    }

    /// The complete records, in file order.
    pub fn entries(&self) -> &[LogprobsEntry] {
        &self.entries
    }

    /// Byte length of the header and complete records.
    pub fn valid_len(&self) -> u64 {
        self.valid_len
    }

    /// Whether the file ends in a partial record (or partial header).
    pub fn is_torn(&self) -> bool {
        self.valid_len < self.file_len
    }

    /// Read one record by key; `None` if it is not in the file.
    pub fn read(&self, key: &SampleKey) -> Result<Option<LogprobsRecord>> {
        let Some(entry) = self.index.get(key).map(|&i| &self.entries[i]) else {
            return Ok(None);
        };
        let mut f = File::open(&self.path).map_err(io_err(&self.path))?;
        f.seek(SeekFrom::Start(entry.offset + FRAME_LEN))
            .map_err(io_err(&self.path))?;
        let mut payload = vec![0u8; (entry.len - FRAME_LEN) as usize];
        f.read_exact(&mut payload).map_err(io_err(&self.path))?;
        LogprobsRecord::decode(&self.path, entry.offset, self.k, &payload).map(Some)
    }

    /// Stream all complete records in file order, holding one at a time (a long run's logprobs do not
    /// need to fit in memory).
    pub fn records(&self) -> Result<impl Iterator<Item = Result<LogprobsRecord>> + '_> {
        let mut r = BufReader::new(File::open(&self.path).map_err(io_err(&self.path))?);
        r.seek(SeekFrom::Start(HEADER_LEN))
            .map_err(io_err(&self.path))?;
        let mut i = 0;
        Ok(std::iter::from_fn(move || {
            let entry = self.entries.get(i)?;
            i += 1;
            let mut buf = vec![0u8; entry.len as usize];
            if let Err(e) = r.read_exact(&mut buf) {
                return Some(Err(Error::Io {
                    path: self.path.clone(),
                    source: e,
                }));
            }
            Some(LogprobsRecord::decode(
                &self.path,
                entry.offset,
                self.k,
                &buf[FRAME_LEN as usize..],
            ))
        }))
    }
}

/// Appends records to a logprobs file; each append is one `write` of a whole frame, then a flush.
#[derive(Debug)]
pub struct LogprobsWriter {
    path: PathBuf,
    file: File,
    k: u32,
    durability: Durability,
}

impl LogprobsWriter {
    /// Create (or overwrite) a file with its header.
    pub fn create(path: &Path, k: u32, durability: Durability) -> Result<Self> {
        let mut file = File::create(path).map_err(io_err(path))?;
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&LOGPROBS_FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&k.to_le_bytes());
        file.write_all(&header).map_err(io_err(path))?;
        let w = LogprobsWriter {
            path: path.into(),
            file,
            k,
            durability,
        };
        w.sync()?;
        Ok(w)
    }

    /// Open a scanned file for appending, cutting it back to its valid part first (a torn header is
    /// rewritten). `k` must match the file's.
    pub fn resume(scan: &LogprobsFile, k: u32, durability: Durability) -> Result<Self> {
        if scan.valid_len < HEADER_LEN {
            return Self::create(&scan.path, k, durability);
        }
        if scan.k != k {
            return Err(Error::BadRecord {
                path: scan.path.clone(),
                record: "header".into(),
                field: "k",
                reason: format!("file has k = {}, run asks for {k}", scan.k),
            });
        }
        Self::open_truncated(&scan.path, k, scan.valid_len, durability)
    }

    pub(crate) fn open_truncated(
        path: &Path,
        k: u32,
        len: u64,
        durability: Durability,
    ) -> Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        file.set_len(len).map_err(io_err(path))?;
        let w = LogprobsWriter {
            path: path.into(),
            file,
            k,
            durability,
        };
        w.sync()?;
        Ok(w)
    }

    /// Append one record.
    pub fn append(&mut self, record: &LogprobsRecord) -> Result<()> {
        if record.k != self.k {
            return Err(Error::BadRecord {
                path: self.path.clone(),
                record: record.key().to_string(),
                field: "k",
                reason: format!("record has k = {}, file has k = {}", record.k, self.k),
            });
        }
        self.file
            .write_all(&record.encode())
            .map_err(io_err(&self.path))?;
        self.file.flush().map_err(io_err(&self.path))?;
        if self.durability == Durability::Fsync {
            self.file.sync_data().map_err(io_err(&self.path))?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        if self.durability == Durability::Fsync {
            self.file.sync_all().map_err(io_err(&self.path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, i: u32, n: usize) -> LogprobsRecord {
        let mut r = LogprobsRecord::new(id, i, 3);
        for p in 0..n {
            let p = p as u32;
            r.push_position(&[p, p + 1, p + 2], &[-0.5 - p as f32, -1.5, -3.0]);
        }
        r
    }

    #[test]
    fn round_trip_by_key_and_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOGPROBS_FILE);
        let recs = [rec("a", 0, 4), rec("ü", 1, 0), rec("b", 0, 2)];
        let mut w = LogprobsWriter::create(&path, 3, Durability::Fsync).unwrap();
        for r in &recs {
            w.append(r).unwrap();
        }
        let f = LogprobsFile::open(&path).unwrap();
        assert!(!f.is_torn());
        assert_eq!(f.k(), 3);
        assert_eq!(
            f.entries().iter().map(|e| e.n_tokens).collect::<Vec<_>>(),
            [4, 0, 2]
        );
        assert_eq!(f.read(&SampleKey::new("b", 0)).unwrap().unwrap(), recs[2]);
        assert_eq!(f.read(&SampleKey::new("ü", 1)).unwrap().unwrap(), recs[1]);
        assert!(f.read(&SampleKey::new("b", 1)).unwrap().is_none());
        let streamed: Vec<_> = f.records().unwrap().collect::<Result<_>>().unwrap();
        assert_eq!(streamed, recs);
        let mut w = LogprobsWriter::create(&path, 2, Durability::Flush).unwrap();
        assert!(w
            .append(&recs[0])
            .unwrap_err()
            .to_string()
            .contains("record has k = 3, file has k = 2"));
    }

    #[test]
    fn every_cut_inside_the_last_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOGPROBS_FILE);
        let mut w = LogprobsWriter::create(&path, 3, Durability::Flush).unwrap();
        w.append(&rec("a", 0, 3)).unwrap();
        let good_len = std::fs::metadata(&path).unwrap().len();
        w.append(&rec("b", 0, 3)).unwrap();
        let full = std::fs::read(&path).unwrap();
        for cut in good_len as usize..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let f = LogprobsFile::open(&path).unwrap();
            assert_eq!(f.entries().len(), 1, "cut at {cut}");
            assert_eq!(f.valid_len(), good_len);
            assert_eq!(f.is_torn(), cut as u64 > good_len);
            // Resuming cuts the tail off and appends after the good record.
            let mut w = LogprobsWriter::resume(&f, 3, Durability::Flush).unwrap();
            w.append(&rec("b", 0, 3)).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), full, "cut at {cut}");
        }
        // A header cut short scans as empty; resuming rewrites it.
        std::fs::write(&path, &full[..5]).unwrap();
        let f = LogprobsFile::open(&path).unwrap();
        assert!(f.is_torn() && f.entries().is_empty());
        LogprobsWriter::resume(&f, 3, Durability::Flush).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), HEADER_LEN);
    }

    #[test]
    fn damage_before_the_last_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOGPROBS_FILE);
        let mut w = LogprobsWriter::create(&path, 3, Durability::Flush).unwrap();
        w.append(&rec("a", 0, 3)).unwrap();
        w.append(&rec("b", 0, 3)).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_LEN as usize + 20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let msg = LogprobsFile::open(&path).unwrap_err().to_string();
        assert!(
            msg.contains("corrupt at byte 16: checksum mismatch"),
            "{msg}"
        );

        bytes[8] = 9; // format version
        std::fs::write(&path, &bytes).unwrap();
        let msg = LogprobsFile::open(&path).unwrap_err().to_string();
        assert!(msg.contains("format_version 9 is not supported"), "{msg}");
        bytes[0] = b'X';
        std::fs::write(&path, &bytes).unwrap();
        let msg = LogprobsFile::open(&path).unwrap_err().to_string();
        assert!(msg.contains("bad magic"), "{msg}");
    }
}
