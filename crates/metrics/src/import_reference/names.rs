//! What the reference code's file and folder names say about a run.
//!
//! The reference code keeps its configuration in names only: the per-problem tensors are
//! `problem_{id}_{task}_{token_ids|logprobs}_bs_{bs}_{dtype}_max_tokens_{n}.pt`, the answers
//! `qa_pairs_{dtype}_bs_{bs}.jsonl`, and the output folder is `outputs/vllm_main/{exp_name}/{model}` where
//! the experiment name is free text by convention like `2a100_math500_bf16_bs32`.

/// Which of the two per-problem tensors a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TensorKind {
    /// `[generated_tokens, k]` int64 candidate ids.
    TokenIds,
    /// `[generated_tokens, k]` float32 candidate logprobs.
    Logprobs,
}

impl TensorKind {
    fn marker(self) -> &'static str {
        match self {
            TensorKind::TokenIds => "_token_ids_bs_",
            TensorKind::Logprobs => "_logprobs_bs_",
        }
    }
}

/// The fields of a per-problem tensor file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorFileName {
    /// Index of the problem in the task's dataset order.
    pub problem: u64,
    /// The reference code's task name (`math500`).
    pub task: String,
    /// Token ids or logprobs.
    pub kind: TensorKind,
    /// Batch size.
    pub batch_size: u32,
    /// vLLM dtype (`bfloat16`).
    pub dtype: String,
    /// Generation limit.
    pub max_tokens: u32,
}

impl TensorFileName {
    /// Parse a file name; `None` when it is not a per-problem tensor file.
    ///
    /// ```
    /// # use reprolm_metrics::import_reference::{TensorFileName, TensorKind};
    /// let n = TensorFileName::parse("problem_12_gpqa_diamond_logprobs_bs_32_bfloat16_max_tokens_32768.pt").unwrap();
    /// assert_eq!((n.problem, n.task.as_str(), n.kind, n.batch_size), (12, "gpqa_diamond", TensorKind::Logprobs, 32));
    /// assert_eq!((n.dtype.as_str(), n.max_tokens), ("bfloat16", 32768));
    /// ```
    pub fn parse(name: &str) -> Option<TensorFileName> {
        let rest = name.strip_prefix("problem_")?.strip_suffix(".pt")?;
        let (problem, rest) = rest.split_once('_')?;
        let problem = problem.parse().ok()?;
        for kind in [TensorKind::TokenIds, TensorKind::Logprobs] {
            // rfind: a task name could itself contain "_logprobs_bs_" only in theory; the suffix is fixed.
            let Some(at) = rest.rfind(kind.marker()) else {
                continue;
            };
            let task = &rest[..at];
            let tail = &rest[at + kind.marker().len()..];
            let (bs, tail) = tail.split_once('_')?;
            let (dtype, max_tokens) = tail.rsplit_once("_max_tokens_")?;
            if task.is_empty() || dtype.is_empty() {
                return None;
            }
            return Some(TensorFileName {
                problem,
                task: task.to_string(),
                kind,
                batch_size: bs.parse().ok()?,
                dtype: dtype.to_string(),
                max_tokens: max_tokens.parse().ok()?,
            });
        }
        None
    }

    /// The file name the reference code gives this tensor.
    pub fn render(&self) -> String {
        format!(
            "problem_{}_{}{}{}_{}_max_tokens_{}.pt",
            self.problem,
            self.task,
            self.kind.marker(),
            self.batch_size,
            self.dtype,
            self.max_tokens
        )
    }
}

/// Parse `qa_pairs_{dtype}_bs_{batch_size}.jsonl` into (dtype, batch size).
///
/// ```
/// # use reprolm_metrics::import_reference::parse_qa_pairs_name;
/// assert_eq!(parse_qa_pairs_name("qa_pairs_bfloat16_bs_8.jsonl"), Some(("bfloat16".to_string(), 8)));
/// assert_eq!(parse_qa_pairs_name("answers.jsonl"), None);
/// ```
pub fn parse_qa_pairs_name(name: &str) -> Option<(String, u32)> {
    let rest = name.strip_prefix("qa_pairs_")?.strip_suffix(".jsonl")?;
    let (dtype, bs) = rest.rsplit_once("_bs_")?;
    if dtype.is_empty() {
        return None;
    }
    Some((dtype.to_string(), bs.parse().ok()?))
}

/// What an experiment name such as `2a100_math500_bf16_bs32` tells; every field is a guess from convention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExperimentName {
    /// The name itself.
    pub name: String,
    /// GPU count (`2` from `2a100`).
    pub gpus: Option<u32>,
    /// GPU type, upper-cased (`A100`).
    pub gpu_type: Option<String>,
    /// Short dtype (`bf16`).
    pub dtype: Option<String>,
    /// Batch size (`32` from `bs32`).
    pub batch_size: Option<u32>,
    /// Parts not recognised as any of the above (usually the task name).
    pub rest: Vec<String>,
}

impl ExperimentName {
    /// Split a name at `_` and `-` and recognise the parts; `None` when no part is recognised, so a folder
    /// that is not an experiment name (a model name, `outputs`) is not mistaken for one.
    ///
    /// ```
    /// # use reprolm_metrics::import_reference::ExperimentName;
    /// let e = ExperimentName::parse("2a100_math500_bf16_bs32").unwrap();
    /// assert_eq!((e.gpus, e.gpu_type.as_deref(), e.dtype.as_deref(), e.batch_size), (Some(2), Some("A100"), Some("bf16"), Some(32)));
    /// assert_eq!(e.rest, ["math500"]);
    /// assert!(ExperimentName::parse("DeepSeek-R1-Distill-Qwen-7B").is_none());
    /// ```
    pub fn parse(name: &str) -> Option<ExperimentName> {
        let mut e = ExperimentName {
            name: name.to_string(),
            ..Default::default()
        };
        let mut recognised = 0;
        for part in name.split(['_', '-']).filter(|p| !p.is_empty()) {
            let lower = part.to_ascii_lowercase();
            if let Some(bs) = lower.strip_prefix("bs").and_then(|d| d.parse().ok()) {
                e.batch_size = Some(bs);
                recognised += 1;
            } else if let Some(short) = short_dtype(&lower) {
                e.dtype = Some(short.to_string());
                recognised += 1;
            } else if let Some((n, ty)) = gpu_part(&lower) {
                e.gpus = Some(n);
                e.gpu_type = Some(ty);
                recognised += 1;
            } else {
                e.rest.push(part.to_string());
            }
        }
        (recognised > 0).then_some(e)
    }
}

/// The short dtype name reprolm's policies use, for any spelling the reference code or a folder uses.
pub fn short_dtype(dtype: &str) -> Option<&'static str> {
    Some(match dtype {
        "bf16" | "bfloat16" => "bf16",
        "fp16" | "f16" | "float16" | "half" => "fp16",
        "fp32" | "f32" | "float32" | "float" => "fp32",
        _ => return None,
    })
}

/// `2a100` -> (2, "A100"); a count, then a GPU model that starts with letters and holds a digit. The known
/// families are listed so that `math500` or `aime24` are not read as 24 "AIME" GPUs.
fn gpu_part(part: &str) -> Option<(u32, String)> {
    const FAMILIES: &[&str] = &[
        "a100", "a800", "h100", "h800", "h200", "h20", "l40s", "l40", "l4", "a10g", "a10", "a6000",
        "v100", "t4", "b200", "gb200", "mi300x", "mi250", "rtx4090", "rtx3090", "4090", "3090",
    ];
    let digits = part.bytes().take_while(u8::is_ascii_digit).count();
    let (count, model) = part.split_at(digits);
    let model = model.strip_prefix('x').unwrap_or(model);
    if !FAMILIES.contains(&model) {
        return None;
    }
    let n = if count.is_empty() {
        1
    } else {
        count.parse().ok()?
    };
    Some((n, model.to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_name_round_trips() {
        let name = "problem_3_math500_token_ids_bs_16_float16_max_tokens_64.pt";
        let n = TensorFileName::parse(name).unwrap();
        assert_eq!(n.render(), name);
        assert_eq!(n.kind, TensorKind::TokenIds);
    }

    #[test]
    fn other_names_are_not_tensor_files() {
        for name in [
            "problem_x_math500_token_ids_bs_16_float16_max_tokens_64.pt",
            "problem_3_math500_token_ids_bs_16_float16_max_tokens_64.pth",
            "problem_3_math500_scores_bs_16_float16_max_tokens_64.pt",
            "problem_3__token_ids_bs_16_float16_max_tokens_64.pt",
            "model.pt",
        ] {
            assert_eq!(TensorFileName::parse(name), None, "{name}");
        }
    }

    #[test]
    fn experiment_names() {
        let e = ExperimentName::parse("8xh100-aime24-fp32-bs1").unwrap();
        assert_eq!((e.gpus, e.gpu_type.as_deref()), (Some(8), Some("H100")));
        assert_eq!((e.dtype.as_deref(), e.batch_size), (Some("fp32"), Some(1)));
        assert_eq!(e.rest, ["aime24"]);
        assert!(ExperimentName::parse("baseline").is_none());
        assert!(ExperimentName::parse("outputs").is_none());
    }
}
