//! `gpqa_diamond`: the 198-question Diamond subset of GPQA (Rein et al., 2023, arXiv 2311.12022).
//!
//! Checked against the reference implementation of arXiv 2506.09501 (SkyThought's GPQA-Diamond
//! handler): the four answers are shuffled and shown as `A) x, B) y, C) z, D) w` on the line after
//! the question, and the prompt is `Return your final response within \boxed{} and only include the
//! letter choice (A, B, C, or D) as your final response. {question}\n{choices}`.
//!
//! The reference shuffles with Python's unseeded `random`, so its letters change from run to run.
//! Here the order is a pure function of (seed, `Record ID`): a ChaCha8 stream keyed by
//! `sha256(seed as 8 little-endian bytes ‖ record id)` drives a Fisher-Yates shuffle written out
//! below (not `rand`'s, whose algorithm may change between versions). The letters are stored in each
//! problem's metadata and the seed in the dataset settings.
//!
//! Data: the official `dataset.zip` of github.com/idavidrein/gpqa, read in memory (ZipCrypto;
//! nothing is extracted to disk), or a plain `gpqa_diamond.csv`, or the gated Hub dataset
//! `Idavidrein/gpqa`. The zip's password is published in the README of github.com/idavidrein/gpqa
//! (it keeps the questions out of web crawls; it is not a secret); pass it as the `password` option
//! or in `REPROLM_GPQA_PASSWORD`.

use std::io::Read;
use std::path::{Path, PathBuf};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map};
use sha2::{Digest, Sha256};

use crate::data::{
    self, parse_bytes, read_source, DataSource, Format, HubDataset, RawData, Record,
};
use crate::error::{Error, Result};
use crate::grading;
use crate::options::{TaskOption, TaskOptions};
use crate::registry::TaskEntry;
use crate::task::{ChatMessage, Dataset, Problem, Score, Task};

/// The environment variable read for the zip password when no `password` option is given.
pub const PASSWORD_ENV: &str = "REPROLM_GPQA_PASSWORD";

const NAME: &str = "gpqa_diamond";
const LETTERS: [char; 4] = ['A', 'B', 'C', 'D'];
const ANSWER_FIELDS: [&str; 4] = [
    "Correct Answer",
    "Incorrect Answer 1",
    "Incorrect Answer 2",
    "Incorrect Answer 3",
];

/// The `gpqa_diamond` task.
#[derive(Debug, Clone)]
pub struct GpqaDiamond {
    seed: u64,
    password: Option<String>,
    member: String,
}

impl GpqaDiamond {
    /// Builds the task; accepts `password` (for the zip) and `member` (the csv inside the zip,
    /// default `dataset/gpqa_diamond.csv`). The shuffle seed is [`TaskOptions::seed`].
    pub fn boxed(options: &TaskOptions) -> Result<Box<dyn Task>> {
        let params = options.params_for(NAME, &TaskOption::keys(&OPTIONS))?;
        Ok(Box::new(GpqaDiamond {
            seed: options.seed,
            password: params.get("password").map(String::from),
            member: params
                .get("member")
                .unwrap_or("dataset/gpqa_diamond.csv")
                .to_string(),
        }))
    }

    fn read_zip(&self, path: &Path) -> Result<RawData> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
        let file = data::digest(path, &bytes);
        let bad = |reason: String| Error::BadFile {
            path: path.into(),
            reason,
        };
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| bad(format!("not a zip archive: {e}")))?;
        let label = PathBuf::from(format!("{}!{}", path.display(), self.member));
        let Some(index) = archive.index_for_name(&self.member) else {
            let names: Vec<String> = archive.file_names().map(String::from).collect();
            return Err(bad(format!(
                "no member `{}` (members: {})",
                self.member,
                names.join(", ")
            )));
        };
        let encrypted = archive
            .by_index_raw(index)
            .map_err(|e| bad(format!("`{}`: {e}", self.member)))?
            .encrypted();
        let mut text = Vec::new();
        let read =
            |mut f: zip::read::ZipFile<'_, _>, out: &mut Vec<u8>| f.read_to_end(out).map(|_| ());
        if encrypted {
            let password = self
                .password
                .clone()
                .or_else(|| std::env::var(PASSWORD_ENV).ok())
                .ok_or_else(|| Error::Source {
                    task: NAME.into(),
                    source_desc: path.display().to_string(),
                    reason: format!(
                        "the archive is password-protected; give the password as the `password` option or in {PASSWORD_ENV} \
                         (it is published in the README of github.com/idavidrein/gpqa)"
                    ),
                })?;
            let entry = archive
                .by_name_decrypt(&self.member, password.as_bytes())
                .map_err(|e| bad(format!("`{}`: {e} (wrong password?)", self.member)))?;
            read(entry, &mut text)
                .map_err(|e| bad(format!("`{}`: {e} (wrong password?)", self.member)))?;
        } else {
            let entry = archive
                .by_name(&self.member)
                .map_err(|e| bad(format!("`{}`: {e}", self.member)))?;
            read(entry, &mut text).map_err(|e| bad(format!("`{}`: {e}", self.member)))?;
        }
        Ok(RawData {
            records: parse_bytes(&text, &label, Format::Csv)?,
            files: vec![file],
        })
    }

    fn problem(&self, rec: Record) -> Result<(Problem, crate::data::Location)> {
        let id = rec.text(NAME, &["Record ID"])?;
        let question = rec.text(NAME, &["Question"])?;
        let answers = ANSWER_FIELDS
            .iter()
            .map(|f| rec.text(NAME, &[f]))
            .collect::<Result<Vec<_>>>()?;
        let order = shuffle_order(self.seed, &id);
        let choices: Vec<&str> = order.iter().map(|&i| answers[i].as_str()).collect();
        let correct = LETTERS[order
            .iter()
            .position(|&i| i == 0)
            .expect("permutation holds 0")];
        let listed = LETTERS
            .iter()
            .zip(&choices)
            .map(|(l, c)| format!("{l}) {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut metadata = Map::new();
        metadata.insert("question".into(), format!("{question}\n{listed}").into());
        metadata.insert("choices".into(), json!(choices));
        metadata.insert("order".into(), json!(order));
        metadata.insert("correct_letter".into(), correct.to_string().into());
        Ok((
            Problem {
                id,
                answer: Some(correct.to_string()),
                fields: rec.fields,
                metadata,
            },
            rec.location,
        ))
    }
}

/// The answer order for one question: entry `k` is the index into (correct, incorrect 1, 2, 3)
/// of the answer shown under letter `k`.
///
/// ```
/// use reprolm_tasks::builtin::gpqa::shuffle_order;
/// let o = shuffle_order(42, "recXYZ");
/// assert_eq!(o, shuffle_order(42, "recXYZ"));
/// let mut sorted = o; sorted.sort();
/// assert_eq!(sorted, [0, 1, 2, 3]);
/// ```
pub fn shuffle_order(seed: u64, record_id: &str) -> [usize; 4] {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(record_id.as_bytes());
    let mut rng = ChaCha8Rng::from_seed(h.finalize().into());
    let mut order = [0, 1, 2, 3];
    for i in (1..order.len()).rev() {
        // Modulo bias over 2^64 for i+1 <= 4 is below 1e-18: irrelevant.
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

inventory::submit! { TaskEntry { name: NAME, origin: module_path!(), make: GpqaDiamond::boxed } }

/// What `gpqa_diamond` accepts.
const OPTIONS: [TaskOption; 2] = [
    TaskOption {
        key: "password",
        help: "the password of the dataset's zip (also REPROLM_GPQA_PASSWORD)",
    },
    TaskOption {
        key: "member",
        help: "the csv inside the zip (default dataset/gpqa_diamond.csv)",
    },
];

impl Task for GpqaDiamond {
    fn options(&self) -> &'static [TaskOption] {
        &OPTIONS
    }

    fn name(&self) -> &str {
        NAME
    }
    fn description(&self) -> &str {
        "GPQA Diamond: 198 graduate-level science questions, four choices shuffled by (seed, record id)"
    }
    fn version(&self) -> &str {
        "1"
    }
    fn default_source(&self) -> DataSource {
        DataSource::Hub(HubDataset::new("Idavidrein/gpqa", &["gpqa_diamond.csv"]))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(198)
    }
    fn load(&self, source: &DataSource) -> Result<Dataset> {
        let raw = match source {
            DataSource::Path(p) if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip")) => {
                self.read_zip(p)?
            }
            other => read_source(other, NAME)?,
        };
        let problems = raw
            .records
            .into_iter()
            .map(|r| self.problem(r))
            .collect::<Result<Vec<_>>>()?;
        let settings = json!({
            "seed": self.seed,
            "shuffle": "fisher-yates over chacha8(sha256(seed_le64 || record_id))",
        });
        Dataset::new(NAME, self.version(), source, raw.files, settings, problems)
    }
    fn messages(&self, problem: &Problem) -> Vec<ChatMessage> {
        let prompt = problem.metadata_str("question").unwrap_or_default();
        vec![ChatMessage::user(format!(
            "Return your final response within \\boxed{{}} and only include the letter choice (A, B, C, or D) as your final response. {prompt}"
        ))]
    }
    fn score(&self, problem: &Problem, response: &str) -> Result<Score> {
        let gold = problem
            .answer
            .as_deref()
            .and_then(|a| a.chars().next())
            .unwrap_or('?');
        Ok(grading::choice(gold, response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_differ_by_seed_and_id_and_cover_all_letters() {
        let mut correct_at = [0usize; 4];
        for i in 0..400 {
            let o = shuffle_order(42, &format!("rec{i}"));
            correct_at[o.iter().position(|&x| x == 0).unwrap()] += 1;
        }
        assert!(
            correct_at.iter().all(|&n| n > 60),
            "correct letter badly spread: {correct_at:?}"
        );
        let differ = (0..50)
            .filter(|i| {
                shuffle_order(1, &format!("rec{i}")) != shuffle_order(2, &format!("rec{i}"))
            })
            .count();
        assert!(differ > 30, "seed barely changes the order ({differ}/50)");
    }

    #[test]
    fn plain_csv_loads_with_the_exact_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gpqa_diamond.csv");
        std::fs::write(
            &path,
            "Record ID,Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3,Subdomain\n\
             recA,\"Which gas is\nnoble?\",Neon,Oxygen,Nitrogen,Chlorine,Chemistry\n",
        )
        .unwrap();
        let task = GpqaDiamond::boxed(&TaskOptions::default()).unwrap();
        let data = task.load(&DataSource::Path(path)).unwrap();
        let p = &data.problems[0];
        let order = shuffle_order(42, "recA");
        let answers = ["Neon", "Oxygen", "Nitrogen", "Chlorine"];
        let letter = LETTERS[order.iter().position(|&i| i == 0).unwrap()];
        assert_eq!(p.answer.as_deref(), Some(letter.to_string().as_str()));
        let expected = format!(
            "Return your final response within \\boxed{{}} and only include the letter choice (A, B, C, or D) as \
             your final response. Which gas is\nnoble?\nA) {}, B) {}, C) {}, D) {}",
            answers[order[0]], answers[order[1]], answers[order[2]], answers[order[3]]
        );
        assert_eq!(task.messages(p)[0].content, expected);
        assert!(
            task.score(p, &format!("The answer is \\boxed{{{letter}}}"))
                .unwrap()
                .correct
        );
    }

    #[test]
    fn shuffle_is_pinned() {
        // Pinned so that a dependency update that changed the order fails here, not in a comparison
        // between runs.
        assert_eq!(shuffle_order(42, "recgSjpKsgoEB9yT3"), PINNED);
    }
    const PINNED: [usize; 4] = [2, 0, 1, 3];
}
