//! `RunDir`: one run's directory, written by a run and read by everything downstream.
//!
//! A finished sample goes to two files, logprobs first and its response line second; a sample counts as
//! done only once both are on disk. A kill can therefore leave at most a torn tail in either file and one
//! logprobs record without its response line. Opening the directory for writing cuts exactly those off,
//! so the resumed run appends the same bytes an uninterrupted run would have written.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Error, Result};
use crate::run_dir::logprobs::{LogprobsFile, LogprobsRecord, LogprobsWriter, LOGPROBS_FILE};
use crate::run_dir::manifest::{Manifest, MANIFEST_FILE};
use crate::run_dir::responses::{
    encode_line, read_responses, Durability, ResponseRecord, ResponsesScan, SampleKey,
    RESPONSES_FILE,
};

/// An open run directory that a run appends to.
///
/// ```
/// # use reprolm_metrics::run_dir::*;
/// let dir = tempfile::tempdir()?;
/// let mut run = RunDir::create(dir.path(), Manifest::example(), Durability::Flush)?;
/// let rec = ResponseRecord::new("p1", 0, 10, "4", vec![19], FinishReason::Stop);
/// let mut lp = LogprobsRecord::new("p1", 0, 5);
/// lp.push_position(&[19, 20, 21, 22, 23], &[-0.01, -5.0, -6.0, -7.0, -8.0]);
/// run.append(&rec, &lp)?;
/// run.finish(Finish { finished_at: "2025-01-01T00:01:00Z".into(), throughput_tok_s: Some(10.0) })?;
///
/// let (again, recovery) = RunDir::open(dir.path(), Durability::Flush)?;
/// assert!(recovery.is_clean());
/// assert!(again.completed_keys().contains(&SampleKey::new("p1", 0)));
/// assert_eq!(again.manifest().tokens_generated, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    manifest: Manifest,
    responses: File,
    logprobs: LogprobsWriter,
    completed: BTreeSet<SampleKey>,
    tokens: u64,
    durability: Durability,
}

/// What opening a run directory had to repair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of a partial last line cut from responses.jsonl.
    pub responses_torn_bytes: u64,
    /// Bytes of a partial last record (or header) cut from logprobs.bin.
    pub logprobs_torn_bytes: u64,
    /// Complete logprobs records dropped because their response line was never written.
    pub dropped_logprobs: Vec<SampleKey>,
    /// Response lines dropped because their logprobs were never written.
    pub dropped_responses: Vec<SampleKey>,
}

impl Recovery {
    /// Whether nothing needed repair (the last session ended cleanly).
    pub fn is_clean(&self) -> bool {
        *self == Recovery::default()
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return f.write_str("nothing to repair");
        }
        let mut parts = Vec::new();
        if self.responses_torn_bytes > 0 {
            parts.push(format!(
                "cut {} bytes of a partial line from {RESPONSES_FILE}",
                self.responses_torn_bytes
            ));
        }
        if self.logprobs_torn_bytes > 0 {
            parts.push(format!(
                "cut {} bytes of a partial record from {LOGPROBS_FILE}",
                self.logprobs_torn_bytes
            ));
        }
        let keys = |v: &[SampleKey]| {
            v.iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.dropped_logprobs.is_empty() {
            parts.push(format!(
                "dropped logprobs without a response: {}",
                keys(&self.dropped_logprobs)
            ));
        }
        if !self.dropped_responses.is_empty() {
            parts.push(format!(
                "dropped responses without logprobs: {}",
                keys(&self.dropped_responses)
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// What `finish` records in the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// End time, RFC 3339 UTC.
    pub finished_at: String,
    /// Generation throughput of the run, if measured.
    pub throughput_tok_s: Option<f64>,
}

/// The two files' states, checked against each other.
struct Scanned {
    responses: ResponsesScan,
    logprobs: Option<LogprobsFile>,
    /// Number of leading records the two files agree on.
    agreed: usize,
}

fn scan(path: &Path, manifest: &Manifest) -> Result<Scanned> {
    let rpath = path.join(RESPONSES_FILE);
    let lpath = path.join(LOGPROBS_FILE);
    let responses = if rpath.exists() {
        read_responses(&rpath)?
    } else {
        ResponsesScan::default()
    };
    let logprobs = if lpath.exists() {
        Some(LogprobsFile::open(&lpath)?)
    } else {
        None
    };
    let entries = logprobs.as_ref().map_or(&[][..], |l| l.entries());
    if let Some(l) = &logprobs {
        if l.valid_len() > 0 && l.k() != manifest.logprobs_k {
            return Err(Error::BadRecord {
                path: lpath,
                record: "header".into(),
                field: "k",
                reason: format!(
                    "file has k = {}, manifest.json says logprobs_k = {}",
                    l.k(),
                    manifest.logprobs_k
                ),
            });
        }
    }
    let agreed = responses
        .records
        .iter()
        .zip(entries)
        .take_while(|(r, e)| r.key() == e.key)
        .count();
    if agreed < responses.records.len().min(entries.len()) {
        let (r, e) = (&responses.records[agreed], &entries[agreed]);
        return Err(Error::Inconsistent {
            path: path.into(),
            reason: format!(
                "record {} is {} in {RESPONSES_FILE} but {} in {LOGPROBS_FILE}",
                agreed + 1,
                r.key(),
                e.key
            ),
        });
    }
    for (r, e) in responses.records.iter().zip(entries).take(agreed) {
        if r.token_ids.len() != e.n_tokens as usize {
            return Err(Error::Inconsistent {
                path: path.into(),
                reason: format!(
                    "{} has {} tokens in {RESPONSES_FILE} but {} positions in {LOGPROBS_FILE}",
                    e.key,
                    r.token_ids.len(),
                    e.n_tokens
                ),
            });
        }
    }
    Ok(Scanned {
        responses,
        logprobs,
        agreed,
    })
}

impl RunDir {
    /// Start a new run in `path` (created if missing), writing its manifest and empty data files. Refuses a
    /// directory that already holds a manifest: resuming goes through [`open`](Self::open).
    pub fn create(path: &Path, manifest: Manifest, durability: Durability) -> Result<RunDir> {
        std::fs::create_dir_all(path).map_err(io_err(path))?;
        let mpath = path.join(MANIFEST_FILE);
        if mpath.exists() {
            return Err(Error::AlreadyExists { path: path.into() });
        }
        manifest.write(&mpath)?;
        let rpath = path.join(RESPONSES_FILE);
        let responses = File::create(&rpath).map_err(io_err(&rpath))?;
        let logprobs =
            LogprobsWriter::create(&path.join(LOGPROBS_FILE), manifest.logprobs_k, durability)?;
        Ok(RunDir {
            path: path.into(),
            manifest,
            responses,
            logprobs,
            completed: BTreeSet::new(),
            tokens: 0,
            durability,
        })
    }

    /// Open an existing run to continue it, repairing what a kill left behind (see [`Recovery`]).
    pub fn open(path: &Path, durability: Durability) -> Result<(RunDir, Recovery)> {
        let manifest = Manifest::read(&path.join(MANIFEST_FILE))?;
        let s = scan(path, &manifest)?;
        let rpath = path.join(RESPONSES_FILE);
        let lpath = path.join(LOGPROBS_FILE);
        let mut recovery = Recovery {
            responses_torn_bytes: s.responses.file_len - s.responses.valid_len,
            dropped_responses: s.responses.records[s.agreed..]
                .iter()
                .map(|r| r.key())
                .collect(),
            ..Default::default()
        };
        let responses_len = s
            .responses
            .offsets
            .get(s.agreed)
            .copied()
            .unwrap_or(s.responses.valid_len);
        let responses = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&rpath)
            .map_err(io_err(&rpath))?;
        responses.set_len(responses_len).map_err(io_err(&rpath))?;
        let logprobs = match &s.logprobs {
            None => LogprobsWriter::create(&lpath, manifest.logprobs_k, durability)?,
            Some(l) => {
                recovery.logprobs_torn_bytes =
                    std::fs::metadata(&lpath).map_err(io_err(&lpath))?.len() - l.valid_len();
                recovery.dropped_logprobs = l.entries()[s.agreed..]
                    .iter()
                    .map(|e| e.key.clone())
                    .collect();
                match l.entries().get(s.agreed) {
                    Some(first_dropped) => LogprobsWriter::open_truncated(
                        &lpath,
                        manifest.logprobs_k,
                        first_dropped.offset,
                        durability,
                    )?,
                    None => LogprobsWriter::resume(l, manifest.logprobs_k, durability)?,
                }
            }
        };
        if durability == Durability::Fsync {
            responses.sync_all().map_err(io_err(&rpath))?;
        }
        let kept = &s.responses.records[..s.agreed];
        let run = RunDir {
            path: path.into(),
            completed: kept.iter().map(|r| r.key()).collect(),
            tokens: kept.iter().map(|r| r.token_ids.len() as u64).sum(),
            manifest,
            responses,
            logprobs,
            durability,
        };
        Ok((run, recovery))
    }

    /// Open `path` if it holds a run with the same configuration as `manifest` (see
    /// [`Manifest::diff_config`]), else create it. A different configuration is refused with
    /// [`Error::ConfigMismatch`], which names every differing field.
    pub fn open_or_create(
        path: &Path,
        manifest: Manifest,
        durability: Durability,
    ) -> Result<(RunDir, Recovery)> {
        Self::open_or_start(path, manifest, durability, false)
    }

    /// [`open_or_create`](Self::open_or_create), and a run that `manifest` extends
    /// ([`Manifest::is_extended_by`]: the same configuration with more problems) grows: its
    /// manifest takes the requested problem list and is no longer finished, and the samples of the
    /// new problems are what is missing. Only sound where a sample's numbers do not depend on the
    /// other samples of the run (batch-invariant kernels): the caller decides.
    pub fn open_or_extend(
        path: &Path,
        manifest: Manifest,
        durability: Durability,
    ) -> Result<(RunDir, Recovery)> {
        Self::open_or_start(path, manifest, durability, true)
    }

    fn open_or_start(
        path: &Path,
        manifest: Manifest,
        durability: Durability,
        may_extend: bool,
    ) -> Result<(RunDir, Recovery)> {
        let mpath = path.join(MANIFEST_FILE);
        if !mpath.exists() {
            return Ok((
                RunDir::create(path, manifest, durability)?,
                Recovery::default(),
            ));
        }
        let mut existing = Manifest::read(&mpath)?;
        if may_extend && existing.is_extended_by(&manifest) {
            existing.task.n_problems = manifest.task.n_problems;
            existing.task.problem_ids = manifest.task.problem_ids;
            existing.finished_at = None;
            existing.write(&mpath)?;
            return RunDir::open(path, durability);
        }
        let diffs = existing.diff_config(&manifest);
        if !diffs.is_empty() {
            return Err(Error::ConfigMismatch {
                path: path.into(),
                diffs,
            });
        }
        RunDir::open(path, durability)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The manifest as last written.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Samples whose response and logprobs are both on disk; a run generates only the others.
    pub fn completed_keys(&self) -> &BTreeSet<SampleKey> {
        &self.completed
    }

    /// Record one finished sample: logprobs first, then the response line, each flushed (and fsynced under
    /// [`Durability::Fsync`]). The sample counts as completed once the response line is written.
    pub fn append(&mut self, record: &ResponseRecord, logprobs: &LogprobsRecord) -> Result<()> {
        let key = record.key();
        if logprobs.key() != key {
            return Err(Error::BadRecord {
                path: self.path.join(LOGPROBS_FILE),
                record: key.to_string(),
                field: "problem_id/sample_index",
                reason: format!("logprobs are for {}", logprobs.key()),
            });
        }
        if logprobs.len() != record.token_ids.len() {
            return Err(Error::BadRecord {
                path: self.path.join(LOGPROBS_FILE),
                record: key.to_string(),
                field: "token_ids",
                reason: format!(
                    "{} tokens but logprobs for {} positions",
                    record.token_ids.len(),
                    logprobs.len()
                ),
            });
        }
        if !(0.0..=1.0).contains(&record.score) {
            return Err(Error::BadRecord {
                path: self.path.join(RESPONSES_FILE),
                record: key.to_string(),
                field: "score",
                reason: format!("{} is outside 0..=1", record.score),
            });
        }
        if self.completed.contains(&key) {
            return Err(Error::DuplicateSample {
                path: self.path.clone(),
                problem_id: key.problem_id,
                sample_index: key.sample_index,
            });
        }
        let rpath = self.path.join(RESPONSES_FILE);
        let line = encode_line(&rpath, record)?;
        self.logprobs.append(logprobs)?;
        self.responses.write_all(&line).map_err(io_err(&rpath))?;
        self.responses.flush().map_err(io_err(&rpath))?;
        if self.durability == Durability::Fsync {
            self.responses.sync_data().map_err(io_err(&rpath))?;
        }
        self.tokens += record.token_ids.len() as u64;
        self.completed.insert(key);
        Ok(())
    }

    /// Change the manifest (e.g. add a warning) and write it at once.
    pub fn update_manifest(&mut self, change: impl FnOnce(&mut Manifest)) -> Result<()> {
        change(&mut self.manifest);
        self.manifest.write(&self.path.join(MANIFEST_FILE))
    }

    /// Mark the run finished: end time, throughput, and the token count of everything on disk (so a run
    /// resumed several times counts each token once).
    pub fn finish(mut self, finish: Finish) -> Result<Manifest> {
        let tokens = self.tokens;
        self.update_manifest(|m| {
            m.finished_at = Some(finish.finished_at);
            m.throughput_tok_s = finish.throughput_tok_s;
            m.tokens_generated = tokens;
        })?;
        Ok(self.manifest)
    }
}

/// A run directory read for analysis, without changing anything on disk.
///
/// Only samples present in both files count; a torn tail or a dangling logprobs record (a run killed or
/// still running) is left out and described in [`notes`](Self::notes).
///
/// ```no_run
/// # use reprolm_metrics::run_dir::LoadedRun;
/// let run = LoadedRun::load("runs/bf16-bs8".as_ref())?;
/// for pair in run.samples()? {
///     let (response, logprobs) = pair?;
///     assert_eq!(response.token_ids.len(), logprobs.len());
/// }
/// # Ok::<(), reprolm_metrics::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LoadedRun {
    /// The directory.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Completed responses, in file order.
    pub records: Vec<ResponseRecord>,
    /// The logprobs index; its first `records.len()` entries match `records` one to one.
    pub logprobs: Option<LogprobsFile>,
    /// What was left out and why.
    pub notes: Vec<String>,
}

impl LoadedRun {
    /// Load a run directory's manifest and responses and index its logprobs.
    pub fn load(path: &Path) -> Result<LoadedRun> {
        let manifest = Manifest::read(&path.join(MANIFEST_FILE))?;
        let mut s = scan(path, &manifest)?;
        let mut notes = Vec::new();
        if s.responses.is_torn() {
            notes.push(format!(
                "{RESPONSES_FILE} ends in a partial line (run killed or still writing)"
            ));
        }
        match &s.logprobs {
            None => notes.push(format!("{LOGPROBS_FILE} is missing")),
            Some(l) if l.is_torn() => notes.push(format!(
                "{LOGPROBS_FILE} ends in a partial record (run killed or still writing)"
            )),
            _ => {}
        }
        let extra_responses = s.responses.records.len() - s.agreed;
        if extra_responses > 0 {
            notes.push(format!(
                "{extra_responses} responses without logprobs left out"
            ));
        }
        s.responses.records.truncate(s.agreed);
        Ok(LoadedRun {
            path: path.into(),
            manifest,
            records: s.responses.records,
            logprobs: s.logprobs,
            notes,
        })
    }

    /// Each completed response with its logprobs, in file order, streamed from disk.
    pub fn samples(
        &self,
    ) -> Result<impl Iterator<Item = Result<(&ResponseRecord, LogprobsRecord)>> + '_> {
        let lp = self.logprobs.as_ref().ok_or_else(|| Error::Io {
            path: self.path.join(LOGPROBS_FILE),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
        Ok(self
            .records
            .iter()
            .zip(lp.records()?)
            .map(|(r, l)| l.map(|l| (r, l))))
    }

    /// Whether the manifest records an end time.
    pub fn is_finished(&self) -> bool {
        self.manifest.finished_at.is_some()
    }

    /// The completed response for `key`, if any.
    pub fn record(&self, key: &SampleKey) -> Option<&ResponseRecord> {
        self.records
            .iter()
            .find(|r| r.problem_id == key.problem_id && r.sample_index == key.sample_index)
    }

    /// The logprobs of a completed response; `None` if the sample is not completed.
    pub fn logprobs_of(&self, key: &SampleKey) -> Result<Option<LogprobsRecord>> {
        match (&self.logprobs, self.record(key)) {
            (Some(l), Some(_)) => l.read(key),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::responses::FinishReason;

    fn sample(id: &str, n: u32) -> (ResponseRecord, LogprobsRecord) {
        let toks: Vec<u32> = (0..n).map(|i| i * 3 + id.len() as u32).collect();
        let mut r = ResponseRecord::new(
            id,
            0,
            5,
            format!("resp {id}"),
            toks.clone(),
            FinishReason::Stop,
        );
        r.correct = n % 2 == 0;
        r.score = if r.correct { 1.0 } else { 0.0 };
        let mut lp = LogprobsRecord::new(id, 0, 5);
        for t in toks {
            lp.push_position(
                &[t, t + 1, t + 2, t + 3, t + 4],
                &[-0.1, -2.0, -3.0, -4.0, -5.0],
            );
        }
        (r, lp)
    }

    fn write_run(path: &Path, ids: &[(&str, u32)]) {
        let mut run = RunDir::create(path, Manifest::example(), Durability::Flush).unwrap();
        for (id, n) in ids {
            let (r, l) = sample(id, *n);
            run.append(&r, &l).unwrap();
        }
    }

    fn files(path: &Path) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(path.join(RESPONSES_FILE)).unwrap(),
            std::fs::read(path.join(LOGPROBS_FILE)).unwrap(),
        )
    }

    const IDS: [(&str, u32); 4] = [("p1", 3), ("p22", 0), ("p333", 7), ("p4", 2)];

    #[test]
    fn resume_after_any_kill_point_yields_the_uninterrupted_files() {
        let dir = tempfile::tempdir().unwrap();
        let full_dir = dir.path().join("full");
        write_run(&full_dir, &IDS);
        let (full_r, full_l) = files(&full_dir);

        // Simulate kills: after k complete samples, with the (k+1)-th sample's logprobs cut at various
        // points and its response line either absent or cut.
        let two_dir = dir.path().join("two");
        write_run(&two_dir, &IDS[..2]);
        let (r2, l2) = files(&two_dir);
        let cases: Vec<(usize, usize, &str)> = vec![
            (r2.len(), l2.len() + 3, "logprobs frame cut"),
            (r2.len(), l2.len() + 30, "logprobs payload cut"),
            (
                r2.len(),
                l2.len() + (full_l.len() - l2.len()) / 2,
                "logprobs half written",
            ),
            (
                r2.len(),
                l2.len() + (sample("p333", 7).1.len() * 40 + 12 + 4 + 8),
                "logprobs complete, no response",
            ),
            (
                r2.len() + 11,
                l2.len() + (sample("p333", 7).1.len() * 40 + 12 + 4 + 8),
                "response line cut",
            ),
        ];
        for (rcut, lcut, what) in cases {
            let case = dir.path().join(what.replace(' ', "_"));
            std::fs::create_dir_all(&case).unwrap();
            std::fs::copy(full_dir.join(MANIFEST_FILE), case.join(MANIFEST_FILE)).unwrap();
            std::fs::write(case.join(RESPONSES_FILE), &full_r[..rcut]).unwrap();
            std::fs::write(case.join(LOGPROBS_FILE), &full_l[..lcut]).unwrap();

            let loaded = LoadedRun::load(&case).unwrap();
            assert_eq!(loaded.records.len(), 2, "{what}");

            let (mut run, recovery) = RunDir::open(&case, Durability::Flush).unwrap();
            assert!(!recovery.is_clean(), "{what}");
            assert_eq!(run.completed_keys().len(), 2, "{what}: {recovery}");
            for (id, n) in &IDS {
                if !run.completed_keys().contains(&SampleKey::new(*id, 0)) {
                    let (r, l) = sample(id, *n);
                    run.append(&r, &l).unwrap();
                }
            }
            assert_eq!(
                files(&case),
                (full_r.clone(), full_l.clone()),
                "{what}: {recovery}"
            );
        }
    }

    #[test]
    fn recovery_says_what_it_dropped() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path(), &IDS[..2]);
        let (r, _) = files(dir.path());
        let mut lp = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOGPROBS_FILE))
            .unwrap();
        // A complete logprobs record for p333 whose response line never got written.
        let mut w = LogprobsWriter::open_truncated(
            &dir.path().join(LOGPROBS_FILE),
            5,
            lp.metadata().unwrap().len(),
            Durability::Flush,
        )
        .unwrap();
        w.append(&sample("p333", 7).1).unwrap();
        lp.write_all(b"garbage").unwrap();
        std::fs::write(
            dir.path().join(RESPONSES_FILE),
            [&r[..], b"{\"format_version\":1,"].concat(),
        )
        .unwrap();
        let (_, rec) = RunDir::open(dir.path(), Durability::Fsync).unwrap();
        assert_eq!(rec.responses_torn_bytes, 20);
        assert_eq!(rec.logprobs_torn_bytes, 7);
        assert_eq!(rec.dropped_logprobs, [SampleKey::new("p333", 0)]);
        assert_eq!(
            rec.to_string(),
            "cut 20 bytes of a partial line from responses.jsonl; cut 7 bytes of a partial record from \
             logprobs.bin; dropped logprobs without a response: p333#0"
        );
        let (_, rec) = RunDir::open(dir.path(), Durability::Flush).unwrap();
        assert!(rec.is_clean(), "{rec}");
    }

    #[test]
    fn misuse_and_mismatches_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path(), &IDS[..1]);
        let err = RunDir::create(dir.path(), Manifest::example(), Durability::Flush).unwrap_err();
        assert!(err.to_string().contains("already holds a run"), "{err}");

        let mut other = Manifest::example();
        other.batch_size = 1;
        other.policy.name = "fp32".into();
        let err = RunDir::open_or_create(dir.path(), other, Durability::Flush)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "policy.name: bf16 (existing) vs fp32 (requested); batch_size: 8 (existing) vs 1"
            ),
            "{err}"
        );

        let (mut run, _) =
            RunDir::open_or_create(dir.path(), Manifest::example(), Durability::Flush).unwrap();
        let (r, l) = sample("p1", 3);
        let err = run.append(&r, &l).unwrap_err().to_string();
        assert!(
            err.contains("problem `p1` sample 0 is already recorded"),
            "{err}"
        );
        let (r, _) = sample("p9", 3);
        let (_, l) = sample("p9", 2);
        let err = run.append(&r, &l).unwrap_err().to_string();
        assert!(
            err.contains("3 tokens but logprobs for 2 positions"),
            "{err}"
        );
        let (r, _) = sample("p9", 3);
        let (_, l) = sample("p8", 3);
        assert!(run
            .append(&r, &l)
            .unwrap_err()
            .to_string()
            .contains("logprobs are for p8#0"));
    }

    #[test]
    fn files_that_disagree_mid_way_are_an_error_not_a_repair() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        write_run(&a, &[("p1", 2), ("p2", 2)]);
        write_run(&b, &[("p2", 2), ("p1", 2)]);
        std::fs::copy(b.join(LOGPROBS_FILE), a.join(LOGPROBS_FILE)).unwrap();
        let err = RunDir::open(&a, Durability::Flush).unwrap_err().to_string();
        assert!(
            err.contains("record 1 is p1#0 in responses.jsonl but p2#0 in logprobs.bin"),
            "{err}"
        );
    }

    #[test]
    fn finish_counts_tokens_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path(), &IDS);
        let (run, _) = RunDir::open(dir.path(), Durability::Flush).unwrap();
        let m = run
            .finish(Finish {
                finished_at: "t".into(),
                throughput_tok_s: Some(1.5),
            })
            .unwrap();
        assert_eq!(m.tokens_generated, 3 + 7 + 2);
        let loaded = LoadedRun::load(dir.path()).unwrap();
        assert!(loaded.is_finished() && loaded.notes.is_empty());
        let pairs: Vec<_> = loaded.samples().unwrap().collect::<Result<_>>().unwrap();
        assert_eq!(pairs.len(), 4);
        for ((r, l), (id, _)) in pairs.iter().zip(IDS) {
            assert_eq!(r.problem_id, id);
            assert_eq!(*l, sample(id, r.token_ids.len() as u32).1);
        }
    }
}
