//! A sweep file resolved into its runs: the product of its axes, each combination spelled as the
//! `reprolm run` flags it stands for and resolved as `run` resolves them, in run order; and whether
//! a configuration's run directory already holds its finished run.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use reprolm_metrics::run_dir::{Manifest, MANIFEST_FILE};

use crate::args::{Cli, Command, RunArgs};
use crate::config::RunConfig;

/// The settings a run key may take; anything else is refused before any run starts.
const KEYS: &[&str] = &[
    "model",
    "task",
    "data",
    "task_param",
    "policy",
    "batch_size",
    "batching",
    "seed",
    "max_tokens",
    "samples",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "logprobs",
    "device",
    "tp",
    "tp_mode",
    "deterministic",
    "kernels",
    "fused_kernels",
    "pick",
    "gemm",
    "cuda_graphs",
    "limit",
    "problems",
];

/// One planned run.
pub(crate) struct Planned {
    /// The settings of this combination, for messages.
    pub label: String,
    /// The resolved configuration, or why it could not be resolved.
    pub config: Result<RunConfig>,
}

/// A sweep file resolved: where its runs go and each configuration, in run order (`--only INDEX`
/// names `runs[INDEX - 1]`).
pub(crate) struct SweepPlan {
    /// The sweep file as given, for messages.
    pub file: String,
    /// Root of the run directories.
    pub root: PathBuf,
    /// The configurations.
    pub runs: Vec<Planned>,
}

impl SweepPlan {
    /// The 1-based numbers to run: all, or the one `--only` names.
    pub fn selected(&self, only: Option<usize>) -> Result<Vec<usize>> {
        match only {
            None => Ok((1..=self.runs.len()).collect()),
            Some(i) if (1..=self.runs.len()).contains(&i) => Ok(vec![i]),
            Some(i) => bail!(
                "--only {i}: sweep file {} has configurations 1 to {}",
                self.file,
                self.runs.len()
            ),
        }
    }
}

/// Read and resolve a sweep file; `root` overrides the file's own.
pub(crate) fn plan(path: &Path, root: Option<&Path>) -> Result<SweepPlan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading sweep file {}", path.display()))?;
    let doc: toml::Table = toml::from_str(&text)
        .with_context(|| format!("sweep file {}: not valid TOML", path.display()))?;
    let file = path.display().to_string();
    for key in doc.keys() {
        if !["root", "base", "axes"].contains(&key.as_str()) {
            bail!("sweep file {file}: unknown top-level key `{key}`; expected root, [base] and [axes]");
        }
    }
    let root = match (root, doc.get("root")) {
        (Some(r), _) => r.to_path_buf(),
        (None, Some(toml::Value::String(r))) => PathBuf::from(r),
        (None, Some(other)) => bail!(
            "sweep file {file}: `root` must be a string, got {}",
            other.type_str()
        ),
        (None, None) => Path::new("runs").join(
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or("sweep".into()),
        ),
    };
    let table = |name: &str| -> Result<toml::Table> {
        match doc.get(name) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t.clone()),
            Some(v) => bail!(
                "sweep file {file}: `{name}` must be a table, got {}",
                v.type_str()
            ),
        }
    };
    let base = table("base")?;
    let axes = table("axes")?;
    for (section, t) in [("base", &base), ("axes", &axes)] {
        for key in t.keys() {
            if key == "out" {
                bail!("sweep file {file}: [{section}] `out` cannot be set; run directories are named under the root");
            }
            if let Some(hint) = paper_spelling(key) {
                bail!("sweep file {file}: [{section}] unknown setting `{key}`: {hint}");
            }
            if !KEYS.contains(&key.as_str()) {
                bail!(
                    "sweep file {file}: [{section}] unknown setting `{key}`; known: {}",
                    KEYS.join(", ")
                );
            }
        }
    }
    let mut axis_values: Vec<(String, Vec<toml::Value>)> = Vec::new();
    for (key, v) in &axes {
        if base.contains_key(key) {
            bail!("sweep file {file}: `{key}` is both in [base] and in [axes]");
        }
        match v {
            toml::Value::Array(a) if !a.is_empty() => axis_values.push((key.clone(), a.clone())),
            _ => bail!("sweep file {file}: [axes] `{key}` must be a non-empty list"),
        }
    }

    // The product, axes in name order (a TOML table keeps no order), the first one slowest.
    let mut combos: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (key, values) in &axis_values {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((key.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    let mut planned = Vec::new();
    for combo in combos {
        let label = combo
            .iter()
            .map(|(k, v)| format!("{k}={}", show(v)))
            .collect::<Vec<_>>()
            .join(" ");
        let config = run_args(&base, &combo)
            .with_context(|| format!("sweep file {file}"))
            .and_then(|a| RunConfig::resolve(&a))
            .map(|mut c| {
                c.out = root.join(c.run_name());
                c
            });
        planned.push(Planned {
            label: if label.is_empty() {
                "base".into()
            } else {
                label
            },
            config,
        });
    }
    // Runs that share a model, policy and device run back to back, so the model is loaded once for
    // them (the order does not change any result).
    planned.sort_by_key(|p| {
        p.config.as_ref().ok().map(|c| {
            (
                c.model_spec.clone(),
                format!("{:?}", c.policy.table()),
                reprolm_engine::device_label(&c.device),
                format!("{:?}", c.tp()),
            )
        })
    });
    let mut names = std::collections::BTreeMap::new();
    for p in &planned {
        if let Ok(c) = &p.config {
            if let Some(other) = names.insert(c.out.clone(), p.label.clone()) {
                bail!(
                    "sweep file {file}: `{other}` and `{}` resolve to the same run {}",
                    p.label,
                    c.out.display()
                );
            }
        }
    }

    Ok(SweepPlan {
        file,
        root,
        runs: planned,
    })
}

/// Whether `cfg.out` holds a finished run of this configuration. A finished run with other settings
/// is an error naming them; checked from the manifest alone, without loading the model.
pub(crate) fn finished_state(cfg: &RunConfig) -> Result<bool> {
    let path = cfg.out.join(MANIFEST_FILE);
    if !path.exists() {
        return Ok(false);
    }
    let m = Manifest::read(&path)?;
    if m.finished_at.is_none() {
        return Ok(false);
    }
    let mut diffs = Vec::new();
    let mut cmp = |field: &str, a: String, b: String| {
        if a != b {
            diffs.push(format!("{field}: {a} (existing) vs {b} (requested)"));
        }
    };
    cmp("task.name", m.task.name.clone(), cfg.task.clone());
    cmp(
        "policy.name",
        m.policy.name.clone(),
        cfg.policy.name.clone(),
    );
    cmp(
        "batch_size",
        m.batch_size.to_string(),
        cfg.batch_size.to_string(),
    );
    cmp("tp_size", m.tp_size.to_string(), cfg.tp_size.to_string());
    cmp(
        "batching_mode",
        m.batching_mode.to_string(),
        cfg.batching.to_string(),
    );
    // The kernels value is compared whole: each setting the command line chose (the rest of
    // the recorded map follows from them, the policy and the model).
    for (key, requested) in cfg.kernels.settings(&cfg.device) {
        let existing = m.kernels.get(&key).map_or("unset", String::as_str);
        cmp(&format!("kernels.{key}"), existing.to_string(), requested);
    }
    cmp("seed", m.seed.to_string(), cfg.seed.to_string());
    cmp(
        "max_tokens",
        m.max_tokens.to_string(),
        cfg.max_tokens.to_string(),
    );
    cmp(
        "sampling.n_samples",
        m.sampling.n_samples.to_string(),
        cfg.samples.to_string(),
    );
    cmp(
        "sampling.temperature",
        m.sampling.temperature.to_string(),
        cfg.temperature.to_string(),
    );
    cmp(
        "logprobs_k",
        m.logprobs_k.to_string(),
        cfg.logprobs.to_string(),
    );
    if !diffs.is_empty() {
        bail!(
            "{}: existing run has a different configuration: {}",
            cfg.out.display(),
            diffs.join("; ")
        );
    }
    Ok(true)
}

fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What a setting spelled as the paper's scripts spell their flags is called here. The command line
/// takes these spellings as aliases; a sweep file names each setting once, so that an axis and a
/// base value cannot set one setting under two names.
fn paper_spelling(key: &str) -> Option<&'static str> {
    Some(match key {
        "dtype" => "the precision is `policy` here (it takes bfloat16, float16 and float32 too)",
        "passk" => "samples per problem are `samples` here",
        "exp_name" => "run directories are named under `root`, one per configuration",
        _ => return None,
    })
}

/// The `reprolm run` arguments `base` plus `combo` spell, parsed by the same clap definition.
fn run_args(base: &toml::Table, combo: &[(String, toml::Value)]) -> Result<RunArgs> {
    let mut argv: Vec<String> = vec!["reprolm".into(), "run".into()];
    let pairs = base
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(combo.iter().cloned());
    for (key, value) in pairs {
        let flag = format!("--{}", key.replace('_', "-"));
        let scalar = |v: &toml::Value| -> Result<String> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                other => Err(anyhow!(
                    "`{key}`: expected a string or number, got {}",
                    other.type_str()
                )),
            }
        };
        match &value {
            toml::Value::Array(items) if key == "problems" => {
                let ids: Result<Vec<String>> = items.iter().map(scalar).collect();
                argv.push(flag);
                argv.push(ids?.join(","));
            }
            toml::Value::Array(items) if key == "task_param" => {
                for it in items {
                    argv.push(flag.clone());
                    argv.push(scalar(it)?);
                }
            }
            toml::Value::Table(t) if key == "task_param" => {
                for (k, v) in t {
                    argv.push(flag.clone());
                    argv.push(format!("{k}={}", scalar(v)?));
                }
            }
            // A switch: `true` passes the flag, `false` leaves it out.
            toml::Value::Boolean(on) => {
                if *on {
                    argv.push(flag);
                }
            }
            v => {
                argv.push(flag);
                argv.push(scalar(v)?);
            }
        }
    }
    let cli = Cli::try_parse_from(&argv).map_err(|e| {
        let msg = e.render().to_string();
        let first = msg
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_string();
        anyhow!("{first} (from the settings {})", argv[2..].join(" "))
    })?;
    match cli.command {
        Command::Run(a) => Ok(*a),
        _ => unreachable!("argv starts with `run`"),
    }
}
