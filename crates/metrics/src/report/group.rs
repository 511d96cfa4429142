//! Finding run directories under a root and grouping them: runs of one model, task, policy and decoding
//! setting that differ only in runtime configuration are compared with each other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Result};
use crate::run_dir::{LoadedRun, Manifest, MANIFEST_FILE};

/// Every directory under `root` (itself included) that holds a manifest.json, sorted; a run directory's
/// own subdirectories are not searched, hidden directories are skipped.
pub fn discover_runs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if dir.join(MANIFEST_FILE).is_file() {
            out.push(dir);
            continue;
        }
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !hidden && entry.file_type().map_err(io_err(entry.path()))?.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// How a run decodes: runs that decode differently are not runtime variants of each other.
pub fn decoding_label(m: &Manifest) -> String {
    let s = &m.sampling;
    if s.is_greedy() {
        format!("greedy, max_tokens {}", m.max_tokens)
    } else {
        format!(
            "sampled T={} top_p={} top_k={} min_p={} n={}, max_tokens {}",
            s.temperature, s.top_p, s.top_k, s.min_p, s.n_samples, m.max_tokens
        )
    }
}

/// The identity a group shares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    /// Model id.
    pub model: String,
    /// Task name.
    pub task: String,
    /// Decoding label ([`decoding_label`]).
    pub decoding: String,
    /// Policy name.
    pub policy: String,
    /// Values of the runtime fields the report was asked to split groups by, `(field, value)`.
    pub split: Vec<(String, String)>,
    /// The same as they are shown: the kernels by their choice (`heuristic`, `invariant`) rather
    /// than the whole recorded map.
    pub split_shown: Vec<(String, String)>,
}

impl GroupKey {
    /// The key of one run; `split_by` names runtime fields (see [`runtime_field_names`]) whose
    /// values also separate groups.
    pub fn of(m: &Manifest, split_by: &[String]) -> Self {
        let fields = || {
            RUNTIME_FIELDS
                .iter()
                .filter(|(name, _, _)| split_by.iter().any(|s| s == name))
        };
        let split = fields()
            .map(|(name, value, _)| (name.to_string(), value(m)))
            .collect();
        let split_shown = fields()
            .map(|(name, value, _)| {
                let shown = match (*name, m.kernels.get("kernels")) {
                    ("kernels", Some(choice)) => choice.clone(),
                    _ => value(m),
                };
                (name.to_string(), shown)
            })
            .collect();
        GroupKey {
            model: m.model.id.clone(),
            task: m.task.name.clone(),
            decoding: decoding_label(m),
            policy: m.policy.name.clone(),
            split,
            split_shown,
        }
    }
}

/// The runtime fields a report can compare runs across, or split groups by.
pub fn runtime_field_names() -> Vec<&'static str> {
    RUNTIME_FIELDS.iter().map(|(name, _, _)| *name).collect()
}

/// Reads one field of a manifest as text.
type FieldFn = fn(&Manifest) -> String;

/// Runtime configuration fields a sweep varies: name, value, short form for labels.
const RUNTIME_FIELDS: &[(&str, FieldFn, FieldFn)] = &[
    (
        "device.name",
        |m| m.device.name.clone(),
        |m| m.device.name.clone(),
    ),
    (
        "device.kind",
        |m| m.device.kind.clone(),
        |m| m.device.kind.clone(),
    ),
    (
        "gpu_count",
        |m| m.gpu_count.to_string(),
        |m| format!("gpus={}", m.gpu_count),
    ),
    (
        "tp_size",
        |m| m.tp_size.to_string(),
        |m| format!("tp={}", m.tp_size),
    ),
    (
        "batch_size",
        |m| m.batch_size.to_string(),
        |m| format!("bs={}", m.batch_size),
    ),
    (
        "batching_mode",
        |m| m.batching_mode.to_string(),
        |m| m.batching_mode.to_string(),
    ),
    (
        "deterministic",
        |m| m.deterministic().to_string(),
        |m| {
            if m.deterministic() {
                "det".into()
            } else {
                "nondet".into()
            }
        },
    ),
    (
        "kernels",
        // `deterministic`, part of the kernels value, is a field of its own above.
        |m| {
            m.kernels
                .iter()
                .filter(|(k, _)| *k != "deterministic")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        },
        // In labels, the choice alone (`heuristic`); runs that differ only in another recorded
        // switch get the same label and are told apart by directory.
        |m| match m.kernels.get("kernels") {
            Some(choice) => choice.clone(),
            None => m
                .kernels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        },
    ),
    (
        "seed",
        |m| m.seed.to_string(),
        |m| format!("seed={}", m.seed),
    ),
];

/// The runtime fields whose values differ among `runs`, except those in `split_by` (which are
/// constant within a group by construction).
pub fn varying_fields(runs: &[&Manifest], split_by: &[String]) -> Vec<&'static str> {
    RUNTIME_FIELDS
        .iter()
        .filter(|(name, _, _)| !split_by.iter().any(|s| s == name))
        .filter(|(_, value, _)| runs.iter().any(|m| value(m) != value(runs[0])))
        .map(|(name, _, _)| *name)
        .collect()
}

/// A short label naming a run's values of the `fields` that vary (`"A100 bs=8"`).
pub fn config_label(m: &Manifest, fields: &[&str]) -> String {
    RUNTIME_FIELDS
        .iter()
        .filter(|(name, _, _)| fields.contains(name))
        .map(|(_, _, short)| short(m))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sort key so runs appear in a stable, readable order (device, GPUs, batch size, ...).
pub(crate) fn config_sort_key(m: &Manifest) -> (String, String, u32, u32, u32, String, bool, u64) {
    (
        m.device.name.clone(),
        m.device.kind.clone(),
        m.gpu_count,
        m.tp_size,
        m.batch_size,
        m.batching_mode.to_string(),
        m.deterministic(),
        m.seed,
    )
}

/// A run's runtime configuration as one string: every runtime field, of the kernels map only the
/// kernel choice (the attention route recorded beside it follows from the policy's dtypes), so
/// that runs of different policies at one configuration have the same identity.
pub(crate) fn runtime_identity(m: &Manifest) -> String {
    RUNTIME_FIELDS
        .iter()
        .map(|(name, value, _)| {
            if *name == "kernels" {
                m.kernels
                    .get("kernels")
                    .map_or("invariant", String::as_str)
                    .to_string()
            } else {
                value(m)
            }
        })
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

/// Why the runs of a group cannot be compared, if they cannot: they must share task version, dataset,
/// weights and tokenizer, or a difference in results might come from those rather than from runtime
/// configuration.
pub(crate) fn refusal(runs: &[&LoadedRun]) -> Option<String> {
    let manifests: Vec<&Manifest> = runs.iter().map(|r| &r.manifest).collect();
    let paths: Vec<&Path> = runs.iter().map(|r| r.path.as_path()).collect();
    let mut reasons = differing_inputs(&manifests, &paths);
    // The policy is grouped by name; among reprolm's own runs the name must also mean one table
    // (an imported run records the other tool's dtype instead, under the same name).
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in runs {
        if let Some(table) = own_policy_table(r) {
            tables.entry(table).or_default().push(dir_name(&r.path));
        }
    }
    if tables.len() > 1 {
        let listed = tables
            .iter()
            .map(|(t, dirs)| format!("{t} in {}", dirs.join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        reasons.push(format!(
            "policy.table differs ({listed}): one policy name, different numerics"
        ));
    }
    (!reasons.is_empty()).then(|| format!("not compared: {}", reasons.join(". ")))
}

/// The policy table of one of reprolm's own runs as text; `None` for an imported run, whose
/// manifest records the other tool's dtype under the policy name rather than a table.
fn own_policy_table(r: &LoadedRun) -> Option<String> {
    (r.manifest.origin == crate::run_dir::Origin::Reprolm).then(|| {
        r.manifest
            .policy
            .table
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// Which runs of a group are compared with each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Comparison {
    /// Every run.
    All,
    /// The largest set of runs that share their inputs; the others (indices into the group's
    /// runs) with why each was left out. One run on other data does not cost the group its metrics.
    Subset { left_out: Vec<(usize, String)> },
    /// No two runs share their inputs: why ([`refusal`] of the whole group).
    Refused(String),
}

/// Picks the runs of a group (in configuration order) to compare: all of them when [`refusal`]
/// has nothing against them, else the largest set that it accepts, found by taking each run in
/// turn as the anchor and gathering those with its inputs (the first anchor wins a tie, so the
/// choice follows the configuration order rather than directory names alone).
pub(crate) fn comparison(runs: &[&LoadedRun]) -> Comparison {
    let Some(whole) = refusal(runs) else {
        return Comparison::All;
    };
    let mut best: Vec<usize> = Vec::new();
    for anchor in runs {
        let table = own_policy_table(anchor);
        let set: Vec<usize> = (0..runs.len())
            .filter(|&j| {
                let (a, b) = (&anchor.manifest, &runs[j].manifest);
                differing_inputs(&[a, b], &[&anchor.path, &runs[j].path]).is_empty()
                    && match (&table, own_policy_table(runs[j])) {
                        (Some(t), Some(u)) => *t == u,
                        _ => true,
                    }
            })
            .collect();
        // An imported anchor admits reprolm runs of any table: keep the set only if they agree.
        let members: Vec<&LoadedRun> = set.iter().map(|&j| runs[j]).collect();
        if set.len() > best.len() && refusal(&members).is_none() {
            best = set;
        }
    }
    if best.len() < 2 {
        return Comparison::Refused(whole);
    }
    let left_out = (0..runs.len())
        .filter(|j| !best.contains(j))
        .map(|j| {
            let mut with: Vec<&LoadedRun> = best.iter().map(|&k| runs[k]).collect();
            with.push(runs[j]);
            let why = refusal(&with).unwrap_or_default();
            let why = why
                .strip_prefix("not compared: ")
                .unwrap_or(&why)
                .to_string();
            (j, why)
        })
        .collect();
    Comparison::Subset { left_out }
}

/// The inputs besides the policy in which the runs (`manifests`, from `paths`) differ, each with
/// the directories holding each value and why that matters: task version, dataset, weights and
/// tokenizer must be shared for a difference in results to come from the numerics.
pub(crate) fn differing_inputs(manifests: &[&Manifest], paths: &[&Path]) -> Vec<String> {
    let checks: [(&str, FieldFn, &str); 4] = [
        (
            "task.version",
            |m| m.task.version.clone(),
            "prompts or scoring changed between task versions",
        ),
        (
            "task.dataset_sha256",
            |m| m.task.dataset_sha256.clone(),
            "the runs saw different data",
        ),
        (
            "model.weight_files",
            |m| {
                m.model
                    .weight_files
                    .iter()
                    .map(|w| format!("{}:{}", w.name, w.sha256))
                    .collect::<Vec<_>>()
                    .join(",")
            },
            "the runs used different weights",
        ),
        (
            "model.tokenizer_sha256",
            |m| m.model.tokenizer_sha256.clone(),
            "the runs used different tokenizers",
        ),
    ];
    let mut reasons = Vec::new();
    for (field, get, why) in checks {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (m, p) in manifests.iter().zip(paths) {
            values.entry(get(m)).or_default().push(dir_name(p));
        }
        if values.len() > 1 {
            let listed = values
                .iter()
                .map(|(v, dirs)| format!("{} in {}", short(v), dirs.join(", ")))
                .collect::<Vec<_>>()
                .join("; ");
            reasons.push(format!("{field} differs ({listed}): {why}"));
        }
    }
    reasons
}

fn short(v: &str) -> String {
    if v.len() > 24 {
        format!(
            "{}…",
            &v[..v.char_indices().nth(16).map_or(v.len(), |(i, _)| i)]
        )
    } else {
        v.to_string()
    }
}

/// The last path component, for messages.
pub(crate) fn dir_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_only_what_varies() {
        let a = Manifest::example();
        let mut b = a.clone();
        b.batch_size = 16;
        b.device.name = "A100".into();
        let fields = varying_fields(&[&a, &b], &[]);
        assert_eq!(fields, ["device.name", "batch_size"]);
        assert_eq!(config_label(&b, &fields), "A100 bs=16");
        assert!(varying_fields(&[&a, &a], &[]).is_empty());
        // A field the report is split by is never a varying one.
        assert_eq!(
            varying_fields(&[&a, &b], &["device.name".into()]),
            ["batch_size"]
        );
        let mut s = a.clone();
        s.sampling.temperature = 0.7;
        s.sampling.n_samples = 4;
        assert_eq!(decoding_label(&a), "greedy, max_tokens 256");
        assert_eq!(
            decoding_label(&s),
            "sampled T=0.7 top_p=1 top_k=0 min_p=0 n=4, max_tokens 256"
        );
    }

    #[test]
    fn a_split_by_kernels_is_shown_by_the_kernel_choice() {
        let mut m = Manifest::example();
        m.kernels = [
            ("kernels", "heuristic"),
            (
                "gemm",
                "split-K by row count, rounded partials (batch dependent)",
            ),
            ("attention", "cpu, splits of 256"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let key = GroupKey::of(&m, &["kernels".into()]);
        assert_eq!(
            key.split_shown,
            [("kernels".to_string(), "heuristic".to_string())]
        );
        // Grouping still uses the whole map: another GEMM under the same choice is another group.
        let mut other = m.clone();
        other.kernels.insert("gemm".into(), "cpu".into());
        assert_ne!(GroupKey::of(&other, &["kernels".into()]), key);
        assert_eq!(
            config_label(&m, &["kernels", "batch_size"]),
            "bs=8 heuristic"
        );
    }

    #[test]
    fn discovery_finds_nested_runs_and_skips_hidden() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["a/run1", "a/run2", "b", ".hidden/run"] {
            let p = dir.path().join(sub);
            std::fs::create_dir_all(&p).unwrap();
            Manifest::example().write(&p.join(MANIFEST_FILE)).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("b/inner")).unwrap();
        Manifest::example()
            .write(&dir.path().join("b/inner").join(MANIFEST_FILE))
            .unwrap();
        let found = discover_runs(dir.path()).unwrap();
        let rel: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            rel,
            [
                PathBuf::from("a/run1"),
                PathBuf::from("a/run2"),
                PathBuf::from("b")
            ]
        );
    }
}
