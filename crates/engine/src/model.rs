//! A ready-to-use model: weights, tokenizer, chat template and generation defaults, loaded from a
//! local directory or a Hub id under one precision policy on one device.

use crate::chat_template::{ChatMessage, ChatOptions, ChatTemplate};
use crate::generate::{Generation, Request};
use crate::generation_config::GenerationConfig;
use crate::loader::{ModelFiles, ResolveOptions};
use crate::models::{spec_from_config_file, Architecture, Decoder};
use crate::parallel::{check_parallel_device, check_split, TensorParallel};
use crate::sampling::SamplingParams;
use crate::source::ModelSource;
use crate::tokenizer::{DecodeSpecialTokens, SpecialTokens, Tokenizer};
use crate::{Error, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use reprolm_precision::PrecisionPolicy;

/// Where and how to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The device the weights go to.
    pub device: Device,
    /// The precision policy every op obeys.
    pub policy: PrecisionPolicy,
    /// How Hub ids are resolved (cache location, offline mode).
    pub resolve: ResolveOptions,
    /// Tensor-parallel ranks: 1 by default; on the CPU, `n` ranks are `n` threads. How their
    /// partial sums combine is [`Kernels::tp`](crate::kernels::Kernels::tp).
    pub tp_size: usize,
    /// The size of the KV cache each batch allocates (`--kv-cache-memory`).
    pub kv_cache: crate::KvCacheSize,
    /// Everything besides the policy that decides the numbers, chosen once (see
    /// [`Kernels`](crate::kernels::Kernels)).
    pub kernels: crate::kernels::Kernels,
}

impl LoadOptions {
    /// CPU, the given policy, Hub settings from the environment.
    pub fn cpu(policy: PrecisionPolicy) -> Self {
        LoadOptions {
            device: Device::Cpu,
            policy,
            resolve: ResolveOptions::from_env(),
            tp_size: 1,
            kv_cache: crate::KvCacheSize::Auto,
            kernels: crate::kernels::Kernels::default(),
        }
    }

    /// The tensor-parallel split these options ask for: [`tp_size`](Self::tp_size) ranks
    /// reducing as [`kernels`](Self::kernels) says.
    pub fn tp(&self) -> TensorParallel {
        TensorParallel::new(self.tp_size, self.kernels.tp)
    }
}

/// A loaded model.
///
/// ```no_run
/// use reprolm_engine::{ChatMessage, ChatOptions, LoadOptions, Model, ModelSource, Request};
/// use reprolm_precision::PrecisionPolicy;
///
/// let opts = LoadOptions::cpu(PrecisionPolicy::preset("layercast")?);
/// let model = Model::load(&ModelSource::parse("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")?, &opts)?;
/// let prompt = model.prompt(&[ChatMessage::user("What is 2+3?")], &ChatOptions::default())?;
/// let params = model.greedy(512);
/// let out = model.generate(&[Request { prompt, problem_id: "demo".into(), sample_index: 0 }], &params, 1)?;
/// println!("{}", model.decode(&out[0].token_ids)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Model {
    /// The files it was loaded from.
    pub files: ModelFiles,
    /// Its family.
    pub architecture: Architecture,
    /// The network.
    pub decoder: Decoder,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its chat template, when it has one.
    pub chat_template: Option<ChatTemplate>,
    /// Its generation defaults (eos ids, recommended sampling).
    pub generation_config: GenerationConfig,
}

/// What identifies a model in a run manifest, read from its files without loading the weights or
/// building the tokenizer: enough to tell whether an existing run was made with this model before
/// spending the time (and device memory) a load takes.
#[derive(Debug, Clone)]
pub struct ModelIdentity {
    /// Its files.
    pub files: ModelFiles,
    /// Its family, from config.json.
    pub architecture: Architecture,
    /// Lower-case hex SHA-256 of tokenizer.json (what [`Tokenizer::sha256`] of the loaded model says).
    pub tokenizer_sha256: String,
    /// The width of its attention heads, from config.json (it decides the attention route).
    pub head_dim: usize,
}

impl ModelIdentity {
    /// Resolves the files of `source` and reads what identifies them.
    pub fn read(source: &ModelSource, resolve: &ResolveOptions) -> Result<ModelIdentity> {
        let files = ModelFiles::resolve_with(source, resolve)?;
        let (architecture, spec) = spec_from_config_file(&files.config)?;
        let tokenizer_sha256 = crate::digest::sha256_file(&files.tokenizer)?.sha256;
        Ok(ModelIdentity {
            files,
            architecture,
            tokenizer_sha256,
            head_dim: spec.head_dim,
        })
    }

    /// Whether `model` was loaded from the files this identity names (a check that nothing was
    /// swapped between reading the identity and loading).
    pub fn same_files_as(&self, model: &Model) -> bool {
        self.files.weights == model.files.weights
            && self.files.commit == model.files.commit
            && self.tokenizer_sha256 == model.tokenizer.sha256()
            && self.architecture == model.architecture
    }
}

impl Model {
    /// Resolves, reads and places a model. The policy, device and tensor-parallel split are
    /// checked before any weight is read, so a bad combination costs nothing.
    pub fn load(source: &ModelSource, opts: &LoadOptions) -> Result<Model> {
        check_policy_on_device(&opts.policy, &opts.device)?;
        let tp = opts.tp();
        check_parallel_device(&tp, &opts.device)?;
        let files = ModelFiles::resolve_with(source, &opts.resolve)?;
        let (architecture, spec) = spec_from_config_file(&files.config)?;
        check_split(&spec, &tp).map_err(|e| match e {
            // A config field that does not split: point at the file it is in.
            Error::TensorParallelSplit {
                field, tp, reason, ..
            } if field != "tp" => Error::BadField {
                path: files.config.clone(),
                field: field.into(),
                reason: format!("tensor parallelism over {tp} ranks: {reason}"),
            },
            other => other,
        })?;
        let tokenizer = Tokenizer::from_file(&files.tokenizer)?;
        let chat_template = ChatTemplate::find(&files)?;
        let generation_config = GenerationConfig::load(&files)?;
        // Safety: memory-mapping the weight files; they must not be modified while the model lives.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&files.weights, DType::F32, &opts.device)
        }
        .map_err(|e| Error::Weights {
            location: files.weights.first().cloned().unwrap_or_default(),
            reason: e.to_string(),
        })?;
        let mut decoder = Decoder::load_parallel(&spec, &opts.policy, vb, tp)?;
        decoder.set_kv_cache_size(opts.kv_cache);
        decoder.set_kernels(opts.kernels)?;
        Ok(Model {
            files,
            architecture,
            decoder,
            tokenizer,
            chat_template,
            generation_config,
        })
    }

    /// The prompt token ids for a conversation: the chat template rendered as transformers'
    /// `apply_chat_template(add_generation_prompt=True)` would, then tokenized without adding
    /// special tokens. Without a template, the last message's text is tokenized as is.
    pub fn prompt(&self, messages: &[ChatMessage], opts: &ChatOptions) -> Result<Vec<u32>> {
        let text = self.prompt_text(messages, opts)?;
        // A rendered template spells out its special tokens; a bare text gets the tokenizer's.
        let special = if self.chat_template.is_some() {
            SpecialTokens::Skip
        } else {
            SpecialTokens::Add
        };
        self.tokenizer.encode(&text, special)
    }

    /// The text [`prompt`](Self::prompt) encodes: the chat template rendered, or the last
    /// message's content for a model without one. Run records keep it, so a reader sees exactly
    /// what the model was given.
    pub fn prompt_text(&self, messages: &[ChatMessage], opts: &ChatOptions) -> Result<String> {
        match &self.chat_template {
            Some(t) => t.render(messages, opts),
            None => Ok(messages
                .last()
                .map(|m| m.content.clone())
                .unwrap_or_default()),
        }
    }

    /// Greedy parameters stopping on the model's eos ids.
    pub fn greedy(&self, max_tokens: usize) -> SamplingParams {
        SamplingParams {
            stop_token_ids: self.generation_config.eos_token_ids.clone(),
            ..SamplingParams::greedy(max_tokens)
        }
    }

    /// Continues `requests` in static batches of `batch_size` (see [`generate()`](crate::generate())).
    pub fn generate(
        &self,
        requests: &[Request],
        params: &SamplingParams,
        batch_size: usize,
    ) -> Result<Vec<Generation>> {
        crate::generate(&self.decoder, requests, params, batch_size)
    }

    /// Text of generated tokens, special tokens kept (so `</think>` stays visible to graders).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, DecodeSpecialTokens::Keep)
    }
}

/// Rejects policy/device combinations that cannot run, before loading anything.
pub fn check_policy_on_device(policy: &PrecisionPolicy, device: &Device) -> Result<()> {
    use reprolm_precision::Component;
    for c in Component::ALL {
        let d = policy.dtype(c);
        if !matches!(d, DType::BF16 | DType::F16 | DType::F32 | DType::F64) {
            return Err(Error::InvalidRequest(format!(
                "policy `{}`: {} cannot be {d:?}",
                policy.name,
                c.key()
            )));
        }
        if d == DType::F64 && device.is_cuda() && c != Component::Logits {
            return Err(Error::InvalidRequest(format!(
                "policy `{}`: {} = f64 is a CPU reference mode; use f32 or lower on {}",
                policy.name,
                c.key(),
                crate::device::device_label(device)
            )));
        }
    }
    Ok(())
}
