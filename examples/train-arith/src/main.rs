//! Trains reprolm's embedded default model: a small Qwen2 decoder that solves the synthetic `arith`
//! task by thinking through column arithmetic before it answers.
//!
//! `train` generates the corpus, trains the tokenizer and the model, saves the Hugging Face folder
//! and evaluates it; `eval` measures greedy accuracy of a saved folder. See the model card
//! (models/arith-qwen2-3m/README.md) for the command that produced the committed model.

mod export;
mod model;
mod tokenizer;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use clap::{Parser, Subcommand, ValueEnum};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reprolm_tasks::arith::{self, ArithProblem, Split};
use tokenizers::Tokenizer;

use model::{Config, Init, Model};

#[derive(Parser)]
#[command(about = "Train and evaluate the embedded arith model")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Generate data, train tokenizer and model, save the folder, evaluate on the test split.
    Train(TrainArgs),
    /// Greedy accuracy of a saved folder on the test split (fp32 compute).
    Eval(EvalArgs),
    /// fp32 logits of a saved folder on prompt + reference solution of test problems, as JSON, for
    /// comparison with another implementation (check_with_transformers.py).
    DumpLogits(EvalArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Output folder (Hugging Face layout).
    #[arg(long, default_value = "models/arith-qwen2-3m")]
    out: PathBuf,
    /// Seeds data generation, initialisation and batch order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// Distinct training problems generated (the train split).
    #[arg(long, default_value_t = 200_000)]
    train_problems: usize,
    #[arg(long, default_value_t = 384)]
    vocab_size: usize,
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    #[arg(long, default_value_t = 4)]
    layers: usize,
    #[arg(long, default_value_t = 8)]
    heads: usize,
    #[arg(long, default_value_t = 2)]
    kv_heads: usize,
    #[arg(long, default_value_t = 704)]
    intermediate: usize,
    #[arg(long, default_value_t = 4000)]
    steps: usize,
    /// Sequences per optimiser step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Peak learning rate (linear warm-up, then cosine decay to a tenth of it).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Stop after this step while keeping the learning-rate schedule of `--steps`; reruns a
    /// training that was cut short by `--max-seconds` without depending on the clock.
    #[arg(long)]
    stop_at_step: Option<usize>,
    /// Continue from a saved folder (its weights and tokenizer) instead of a fresh initialisation.
    /// The optimiser state starts afresh.
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Stop training early after this many seconds (a guard for time-limited machines; the log
    /// and the summary record the step reached).
    #[arg(long)]
    max_seconds: Option<f64>,
    /// Let cuBLAS use TF32 for training matmuls (never for evaluation).
    #[arg(long)]
    tf32: bool,
    /// Also save the model as it is after these steps (comma-separated), each in `OUT/step-N`
    /// with its own evaluation: one run yields the checkpoints of a whole schedule, for picking
    /// a partly trained model, less sure of itself than a finished one.
    #[arg(long, value_delimiter = ',')]
    save_at: Vec<usize>,
    /// Write each training solution with equivalent phrasings drawn at random (`So` or `Thus`
    /// before a line's result, `write 5 carry 1` or `write 5, carry 1`), each with probability
    /// 1/2: the model learns even odds at those points, near-ties in its greedy decoding.
    #[arg(long)]
    phrasing_variants: bool,
    /// Write each sum of the solution with its two terms in either order (`48 + 27: ...` or
    /// `27 + 48: ...`, its column steps following the order written), each with probability 1/2.
    /// Unlike the phrasings, the two sides of such a near-tie lead a partly trained model through
    /// different one-digit facts, so a rounding that flips one can change the answer.
    #[arg(long)]
    operand_variants: bool,
    /// Test problems evaluated after training.
    #[arg(long, default_value_t = 200)]
    eval_problems: usize,
    /// Seed of the test problems drawn for evaluation.
    #[arg(long, default_value_t = 1)]
    eval_seed: u64,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// A saved model folder.
    #[arg(long, default_value = "models/arith-qwen2-3m")]
    model: PathBuf,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    #[arg(long, default_value_t = 200)]
    problems: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write per-problem results as JSON lines.
    #[arg(long)]
    responses: Option<PathBuf>,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    match args.mode {
        Mode::Train(a) => train(&a),
        Mode::Eval(a) => {
            let dev = device(a.device)?;
            let summary = evaluate(&a.model, &dev, a.problems, a.seed, a.responses.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Mode::DumpLogits(a) => {
            let path = a
                .responses
                .as_deref()
                .ok_or_else(|| anyhow!("dump-logits needs --responses FILE"))?;
            dump_logits(&a.model, &device(a.device)?, a.problems, a.seed, path)
        }
    }
}

fn device(d: DeviceArg) -> Result<Device> {
    Ok(match d {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => Device::new_cuda(0).context("opening cuda:0")?,
    })
}

#[cfg(feature = "cuda")]
fn set_tf32(on: bool) {
    candle_core::cuda_backend::set_gemm_reduced_precision_f32(on);
}

#[cfg(not(feature = "cuda"))]
fn set_tf32(_on: bool) {}

/// A tokenized training example: prompt then response; the loss covers the response only.
struct Example {
    ids: Vec<u32>,
    prompt_len: usize,
}

fn train(a: &TrainArgs) -> Result<()> {
    let dev = device(a.device)?;
    let t0 = Instant::now();
    let problems = arith::generate(Split::Train, a.seed, a.train_problems);
    let tok = match &a.init_from {
        Some(dir) => Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| anyhow!("reading tokenizer.json: {e}"))?,
        None => tokenizer::train(&problems[..problems.len().min(50_000)], a.vocab_size)?,
    };
    let pad = tokenizer::id(&tok, tokenizer::PAD)?;
    let variants = Variants {
        phrasing: a.phrasing_variants,
        operands: a.operand_variants,
        seed: a.seed,
    };
    let examples = tokenize_all(&tok, &problems, &variants)?;
    let max_len = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let mean_resp = examples
        .iter()
        .map(|e| e.ids.len() - e.prompt_len)
        .sum::<usize>() as f64
        / examples.len() as f64;
    println!(
        "data: {} problems, vocab {}, longest sequence {max_len} tokens, mean response {mean_resp:.1} tokens ({:.1}s)",
        examples.len(),
        tok.get_vocab_size(true),
        t0.elapsed().as_secs_f64()
    );
    let cfg = Config {
        vocab_size: tok.get_vocab_size(true),
        hidden_size: a.hidden,
        intermediate_size: a.intermediate,
        num_hidden_layers: a.layers,
        num_attention_heads: a.heads,
        num_key_value_heads: a.kv_heads,
        max_position_embeddings: 1024,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-6,
    };
    if max_len > cfg.max_position_embeddings {
        bail!(
            "sequences of {max_len} tokens exceed {} positions",
            cfg.max_position_embeddings
        );
    }
    let varmap = init_params(&cfg, a.seed, &dev)?;
    if let Some(dir) = &a.init_from {
        let saved = candle_core::safetensors::load(dir.join("model.safetensors"), &dev)?;
        for (name, var) in varmap
            .data()
            .lock()
            .map_err(|_| anyhow!("poisoned var map"))?
            .iter()
        {
            let t = saved
                .get(name)
                .ok_or_else(|| anyhow!("{} has no {name}", dir.display()))?;
            var.set(&t.to_dtype(DType::F32)?)?;
        }
        println!("initialised from {}", dir.display());
    }
    let n_params: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    println!("model: {n_params} parameters, {cfg:?}");
    // The summary's `training` entry after `step` steps: the data's figures are the run's.
    let training_at = |step: usize, seconds: f64| {
        serde_json::json!({
            "steps": step, "planned_steps": a.steps, "seconds": seconds, "parameters": n_params,
            "train_problems": examples.len(), "mean_response_tokens": mean_resp, "longest_sequence": max_len,
        })
    };
    let model = Model::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    let mut opt = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: a.lr,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: a.weight_decay,
        },
    )?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let log_path = a.out.join("training_log.jsonl");
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    set_tf32(a.tf32);
    let mut order_rng = ChaCha8Rng::seed_from_u64(a.seed ^ 0x5eed_0bad);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.shuffle(&mut order_rng);
    let mut cursor = 0;
    let t_train = Instant::now();
    let mut window = Vec::new();
    let mut last_step = 0;
    for step in 1..=a.steps {
        if a.max_seconds
            .is_some_and(|m| t_train.elapsed().as_secs_f64() > m)
        {
            println!("stopping at step {last_step}: --max-seconds reached");
            break;
        }
        if a.stop_at_step.is_some_and(|s| step > s) {
            println!("stopping at step {last_step}: --stop-at-step reached");
            break;
        }
        last_step = step;
        if cursor + a.batch > order.len() {
            order.shuffle(&mut order_rng);
            cursor = 0;
        }
        let batch: Vec<&Example> = order[cursor..cursor + a.batch]
            .iter()
            .map(|&i| &examples[i])
            .collect();
        cursor += a.batch;
        let (input, target, mask, n_tokens) = make_batch(&batch, pad, &dev)?;
        let logits = model.forward(&input, 0, &mut model.new_cache())?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let picked = logp.gather(&target.unsqueeze(2)?, 2)?.squeeze(2)?;
        let loss = ((picked * &mask)?.sum_all()?.neg()? / n_tokens as f64)?;
        opt.set_learning_rate(lr_at(step, a));
        opt.backward_step(&loss)?;
        if step % 10 == 0 || step == a.steps {
            window.push(loss.to_scalar::<f32>()?);
        }
        if step % 100 == 0 || step == a.steps {
            let mean = window.iter().sum::<f32>() / window.len() as f32;
            window.clear();
            let secs = t_train.elapsed().as_secs_f64();
            println!(
                "step {step:>6}  loss {mean:.4}  lr {:.2e}  {secs:.0}s",
                lr_at(step, a)
            );
            writeln!(
                log,
                "{}",
                serde_json::json!({ "step": step, "loss": mean, "lr": lr_at(step, a), "seconds": secs })
            )?;
        }
        if a.save_at.contains(&step) {
            let dir = a.out.join(format!("step-{step}"));
            let training = training_at(step, t_train.elapsed().as_secs_f64());
            save_and_evaluate(a, &dir, &dev, &cfg, &tok, &varmap, training)?;
            // Evaluation turns TF32 off; training goes on as asked.
            set_tf32(a.tf32);
        }
    }
    set_tf32(false);
    let train_secs = t_train.elapsed().as_secs_f64();
    println!(
        "trained {last_step} of {} steps in {train_secs:.1}s on {dev:?}",
        a.steps
    );
    let training = training_at(last_step, train_secs);
    save_and_evaluate(a, &a.out, &dev, &cfg, &tok, &varmap, training)
}

/// Writes the model folder `dir` from the current weights, evaluates it on `a.eval_problems`
/// test problems and writes `eval_summary.json` beside it, with `training` (how far training had
/// come) as its `training` entry.
fn save_and_evaluate(
    a: &TrainArgs,
    dir: &Path,
    dev: &Device,
    cfg: &Config,
    tok: &Tokenizer,
    varmap: &VarMap,
    training: serde_json::Value,
) -> Result<()> {
    let weights: BTreeMap<String, Tensor> = varmap
        .data()
        .lock()
        .map_err(|_| anyhow!("poisoned var map"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    export::save(dir, cfg, tok, &weights)?;
    println!("saved {}", dir.display());
    let mut summary = evaluate(
        dir,
        dev,
        a.eval_problems,
        a.eval_seed,
        Some(&dir.join("eval_responses.jsonl")),
    )?;
    summary["training"] = training;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    std::fs::write(
        dir.join("eval_summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    Ok(())
}

fn lr_at(step: usize, a: &TrainArgs) -> f64 {
    if step <= a.warmup {
        return a.lr * step as f64 / a.warmup as f64;
    }
    let p = (step - a.warmup) as f64 / (a.steps - a.warmup).max(1) as f64;
    a.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
}

/// Which equivalent writings of a solution the training data draws at random.
struct Variants {
    /// [`vary_phrasing`]'s wordings.
    phrasing: bool,
    /// [`vary_operands`]'s orders of a sum's terms.
    operands: bool,
    /// Seeds the draws.
    seed: u64,
}

/// Prompts and responses as token ids, each response written with the `variants` drawn.
fn tokenize_all(
    tok: &Tokenizer,
    problems: &[ArithProblem],
    variants: &Variants,
) -> Result<Vec<Example>> {
    let prompts: Vec<String> = problems
        .iter()
        .map(|p| tokenizer::prompt(&p.question))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(variants.seed ^ 0xa17e_7a75);
    let responses: Vec<String> = problems
        .iter()
        .map(|p| {
            // The sums' order first: it recognises a sum line by its canonical wording.
            let mut text = tokenizer::response(p);
            if variants.operands {
                text = vary_operands(&text, &mut rng);
            }
            if variants.phrasing {
                text = vary_phrasing(&text, &mut rng);
            }
            text
        })
        .collect();
    let ep = tok
        .encode_batch(prompts, false)
        .map_err(|e| anyhow!("encoding prompts: {e}"))?;
    let er = tok
        .encode_batch(responses, false)
        .map_err(|e| anyhow!("encoding responses: {e}"))?;
    Ok(ep
        .iter()
        .zip(&er)
        .map(|(p, r)| {
            let mut ids = p.get_ids().to_vec();
            let prompt_len = ids.len();
            ids.extend_from_slice(r.get_ids());
            Example { ids, prompt_len }
        })
        .collect())
}

/// `text` with each `. So ` (a line's result) made `. Thus ` and each ` carry ` made `, carry `,
/// independently with probability 1/2.
fn vary_phrasing(text: &str, rng: &mut ChaCha8Rng) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    loop {
        let so = rest.find(". So ");
        let carry = rest.find(" carry ");
        let (at, len, alt) = match (so, carry) {
            (Some(a), Some(b)) if a < b => (a, ". So ".len(), ". Thus "),
            (Some(a), None) => (a, ". So ".len(), ". Thus "),
            (_, Some(b)) => (b, " carry ".len(), ", carry "),
            (None, None) => break,
        };
        out.push_str(&rest[..at]);
        out.push_str(if rng.random::<bool>() {
            alt
        } else {
            &rest[at..at + len]
        });
        rest = &rest[at + len..];
    }
    out.push_str(rest);
    out
}

/// `text` with each sum line (`48 + 27: <columns> So 48 + 27 = 75.`) rewritten, with
/// probability 1/2 and independently, as the same sum with its terms swapped
/// ([`arith::add_line`]`(27, 48)`). Every other line (products, differences, the answer) is kept.
fn vary_operands(text: &str, rng: &mut ChaCha8Rng) -> String {
    let sum_terms = |line: &str| -> Option<(i64, i64)> {
        let (head, rest) = line.split_once(": ")?;
        let (a, b) = head.split_once(" + ")?;
        let (a, b) = (a.parse::<i64>().ok()?, b.parse::<i64>().ok()?);
        (rest.ends_with('.') && line == arith::add_line(a, b)).then_some((a, b))
    };
    text.split('\n')
        .map(|line| match sum_terms(line) {
            Some((a, b)) if rng.random::<bool>() => arith::add_line(b, a),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Inputs, next-token targets and the response mask, right-padded to the longest example. Padding
/// sits after every real token, so causal attention never lets real positions see it.
fn make_batch(
    batch: &[&Example],
    pad: u32,
    dev: &Device,
) -> Result<(Tensor, Tensor, Tensor, usize)> {
    let t = batch.iter().map(|e| e.ids.len()).max().unwrap_or(1) - 1;
    let (mut input, mut target, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for e in batch {
        for j in 0..t {
            input.push(e.ids.get(j).copied().unwrap_or(pad));
            target.push(e.ids.get(j + 1).copied().unwrap_or(pad));
            mask.push(if j + 1 >= e.prompt_len && j + 1 < e.ids.len() {
                1f32
            } else {
                0.0
            });
        }
    }
    let b = batch.len();
    let n_tokens = mask.iter().filter(|&&m| m > 0.0).count();
    Ok((
        Tensor::from_vec(input, (b, t), dev)?,
        Tensor::from_vec(target, (b, t), dev)?,
        Tensor::from_vec(mask, (b, t), dev)?,
        n_tokens,
    ))
}

/// Parameters drawn from a seeded ChaCha stream on the CPU, so initialisation does not depend on
/// the device's own generator.
fn init_params(cfg: &Config, seed: u64, dev: &Device) -> Result<VarMap> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let varmap = VarMap::new();
    {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| anyhow!("poisoned var map"))?;
        for (name, shape, init) in cfg.parameters() {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = match init {
                Init::Zeros => vec![0.0; n],
                Init::Ones => vec![1.0; n],
                Init::Normal(std) => (0..n).map(|_| (normal(&mut rng) * std) as f32).collect(),
            };
            let t = Tensor::from_vec(values, shape, &Device::Cpu)?.to_device(dev)?;
            data.insert(name, Var::from_tensor(&t)?);
        }
    }
    Ok(varmap)
}

/// Standard normal sample by Box-Muller.
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Greedy decoding of `problems` test problems with fp32 compute; returns the summary.
fn evaluate(
    dir: &Path,
    dev: &Device,
    problems: usize,
    seed: u64,
    responses: Option<&Path>,
) -> Result<serde_json::Value> {
    set_tf32(false);
    let (cfg, tok, model) = load(dir, dev)?;
    let eos = tokenizer::id(&tok, tokenizer::EOS)?;
    let test = arith::generate(Split::Test, seed, problems);
    if test.is_empty() {
        return Ok(serde_json::json!({ "problems": 0 }));
    }
    let mut out = match responses {
        Some(p) => {
            Some(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => None,
    };
    let t0 = Instant::now();
    let (mut correct, mut tokens, mut lengths) = (0usize, 0usize, Vec::new());
    // Positions whose chosen token leads the runner-up by less than each threshold in
    // probability, per response: the near-ties where a rounding can flip greedy decoding.
    const TIES: [f64; 3] = [1e-2, 1e-3, 1e-4];
    let mut ties = vec![Vec::new(); TIES.len()];
    for p in &test {
        let prompt = tokenizer::encode(&tok, &tokenizer::prompt(&p.question))?;
        let (ids, margins) = greedy(&model, &prompt, eos, cfg.max_position_embeddings, dev)?;
        let near: Vec<usize> = TIES
            .iter()
            .map(|&t| margins.iter().filter(|&&m| m < t).count())
            .collect();
        for (all, n) in ties.iter_mut().zip(&near) {
            all.push(*n);
        }
        let text = tok
            .decode(&ids, true)
            .map_err(|e| anyhow!("decoding: {e}"))?;
        let got = boxed_answer(&text);
        let ok = got == Some(p.answer);
        correct += usize::from(ok);
        tokens += ids.len();
        lengths.push(ids.len());
        if let Some(f) = out.as_mut() {
            writeln!(
                f,
                "{}",
                serde_json::json!({"id": p.id, "question": p.question, "answer": p.answer, "response": text, "tokens": ids.len(), "correct": ok, "near_ties_1e-2": near[0], "near_ties_1e-3": near[1], "near_ties_1e-4": near[2]})
            )?;
        }
    }
    lengths.sort_unstable();
    let secs = t0.elapsed().as_secs_f64();
    let tie_stats: serde_json::Map<String, serde_json::Value> = TIES
        .iter()
        .zip(&ties)
        .map(|(t, per)| {
            let mut sorted = per.clone();
            sorted.sort_unstable();
            let mean = per.iter().sum::<usize>() as f64 / per.len() as f64;
            let with_any = per.iter().filter(|&&n| n > 0).count();
            (
                format!("margin below {t:e}"),
                serde_json::json!({"mean_per_response": mean, "median_per_response": sorted[sorted.len() / 2],
                    "max_per_response": sorted.last(), "responses_with_any": with_any}),
            )
        })
        .collect();
    Ok(serde_json::json!({
        "model": dir.display().to_string(),
        "device": format!("{dev:?}"),
        "compute": "f32",
        "split": "test",
        "seed": seed,
        "problems": test.len(),
        "correct": correct,
        "accuracy": correct as f64 / test.len() as f64,
        "mean_response_tokens": tokens as f64 / test.len() as f64,
        "median_response_tokens": lengths.get(lengths.len() / 2),
        "min_response_tokens": lengths.first(),
        "max_response_tokens": lengths.last(),
        "near_ties": tie_stats,
        "seconds": secs,
    }))
}

fn load(dir: &Path, dev: &Device) -> Result<(Config, Tokenizer, Model)> {
    let cfg: Config = serde_json::from_str(
        &std::fs::read_to_string(dir.join("config.json"))
            .with_context(|| format!("reading {}/config.json", dir.display()))?,
    )?;
    let tok = Tokenizer::from_file(dir.join("tokenizer.json"))
        .map_err(|e| anyhow!("reading tokenizer.json: {e}"))?;
    // SAFETY: the file is not modified while mapped.
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, dev)?
    };
    let model = Model::new(&cfg, vb)?;
    Ok((cfg, tok, model))
}

fn dump_logits(dir: &Path, dev: &Device, problems: usize, seed: u64, path: &Path) -> Result<()> {
    let (_, tok, model) = load(dir, dev)?;
    let mut rows = Vec::new();
    for p in arith::generate(Split::Test, seed, problems) {
        let text = tokenizer::prompt(&p.question) + &tokenizer::response(&p);
        let ids = tokenizer::encode(&tok, &text)?;
        let logits = model.forward(
            &Tensor::new(ids.as_slice(), dev)?.unsqueeze(0)?,
            0,
            &mut model.new_cache(),
        )?;
        let logits = logits
            .squeeze(0)?
            .to_device(&Device::Cpu)?
            .to_vec2::<f32>()?;
        rows.push(serde_json::json!({ "question": p.question, "text": text, "ids": ids, "logits": logits }));
    }
    std::fs::write(path, serde_json::to_string(&rows)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Generated ids (EOS included when produced) after `prompt`, one token at a time with a KV cache,
/// and at each position the margin of the chosen token: its probability less the runner-up's.
fn greedy(
    model: &Model,
    prompt: &[u32],
    eos: u32,
    max_pos: usize,
    dev: &Device,
) -> Result<(Vec<u32>, Vec<f64>)> {
    let mut cache = model.new_cache();
    let (mut out, mut margins) = (Vec::new(), Vec::new());
    let mut input = Tensor::new(prompt, dev)?.unsqueeze(0)?;
    let mut pos = 0;
    while pos + input.dim(1)? < max_pos {
        let n = input.dim(1)?;
        let logits = model.forward(&input, pos, &mut cache)?;
        pos += n;
        let row = logits
            .narrow(1, n - 1, 1)?
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        let (next, margin) = top_margin(&row);
        out.push(next);
        margins.push(margin);
        if next == eos {
            break;
        }
        input = Tensor::new(&[next], dev)?.unsqueeze(0)?;
    }
    Ok((out, margins))
}

/// The greedy choice of a logit row (the first of equal maxima, as `argmax`) and its margin over
/// the runner-up in probability, `p1 - p2`, from a softmax in f64.
fn top_margin(row: &[f32]) -> (u32, f64) {
    let (mut best, mut second) = (0usize, None::<usize>);
    for (i, &v) in row.iter().enumerate().skip(1) {
        if v > row[best] {
            second = Some(best);
            best = i;
        } else if second.is_none_or(|s| v > row[s]) {
            second = Some(i);
        }
    }
    let max = f64::from(row[best]);
    let z: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
    let p = |i: usize| (f64::from(row[i]) - max).exp() / z;
    (best as u32, second.map_or(1.0, |s| p(best) - p(s)))
}

/// The integer inside the last `\boxed{...}`, if any.
fn boxed_answer(text: &str) -> Option<i64> {
    let start = text.rfind("\\boxed{")? + "\\boxed{".len();
    let end = text[start..].find('}')? + start;
    text[start..end].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed model answers held-out problems correctly with greedy fp32 decoding.
    #[test]
    fn committed_model_solves_test_problems() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/arith-qwen2-3m");
        let summary = evaluate(&dir, &Device::Cpu, 5, 1, None).unwrap();
        assert!(summary["correct"].as_u64().unwrap() >= 4, "{summary}");
        assert!(
            summary["mean_response_tokens"].as_f64().unwrap() > 100.0,
            "{summary}"
        );
    }

    #[test]
    fn phrasing_variants_change_only_the_wording() {
        let text =
            "48 + 27: 8 + 7 = 15, write 5 carry 1. 4 + 2 + 1 = 7, write 7. So 48 + 27 = 75.\n\
                    75 - 19: 5 - 9 is negative, borrow: 15 - 9 = 6, write 6. So 75 - 19 = 56.";
        let mut seen = std::collections::BTreeSet::new();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..64 {
            let v = vary_phrasing(text, &mut rng);
            let back = v.replace(". Thus ", ". So ").replace(", carry ", " carry ");
            assert_eq!(back, text);
            seen.insert(v);
        }
        assert_eq!(seen.len(), 8, "three independent binary choices");
    }

    #[test]
    fn operand_variants_swap_whole_sums_only() {
        let text = "Products first.\n\
                    6 * 3: 6 * 3 = 18, write 18. So 6 * 3 = 18.\n\
                    Now 48 + 27 - 19 + 18.\n\
                    48 + 27: 8 + 7 = 15, write 5 carry 1. 4 + 2 + 1 = 7, write 7. So 48 + 27 = 75.\n\
                    75 - 19: 5 - 9 is negative, borrow: 15 - 9 = 6, write 6. 7 - 1 - 1 = 5, write 5. So 75 - 19 = 56.\n\
                    56 + 18: 6 + 8 = 14, write 4 carry 1. 5 + 1 + 1 = 7, write 7. So 56 + 18 = 74.";
        let swapped = [
            "27 + 48: 7 + 8 = 15, write 5 carry 1. 2 + 4 + 1 = 7, write 7. So 27 + 48 = 75.",
            "18 + 56: 8 + 6 = 14, write 4 carry 1. 1 + 5 + 1 = 7, write 7. So 18 + 56 = 74.",
        ];
        let mut seen = std::collections::BTreeSet::new();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..64 {
            let v = vary_operands(text, &mut rng);
            let (original, varied): (Vec<&str>, Vec<&str>) =
                (text.lines().collect(), v.lines().collect());
            assert_eq!(original.len(), varied.len());
            for (i, (o, w)) in original.iter().zip(&varied).enumerate() {
                match i {
                    3 | 5 => assert!(w == o || *w == swapped[(i - 3) / 2], "{w}"),
                    _ => assert_eq!(w, o, "only the two sums may change"),
                }
            }
            seen.insert(v);
        }
        assert_eq!(seen.len(), 4, "two independent binary choices");
    }

    #[test]
    fn boxed_answer_takes_the_last_box() {
        assert_eq!(boxed_answer("\\boxed{1} then \\boxed{ 42 }."), Some(42));
        assert_eq!(boxed_answer("no box"), None);
        assert_eq!(boxed_answer("\\boxed{x}"), None);
    }
}
