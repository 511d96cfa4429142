//! Helpers shared by the engine's integration tests: the tiny random-init fixture models made by
//! `fixtures/make_fixtures.py` with transformers, and their reference outputs.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use reprolm_engine::parallel::TensorParallel;
use reprolm_engine::{spec_from_config_file, ChatMessage, ChatOptions, Decoder, Model, Request};
use reprolm_precision::PrecisionPolicy;
use std::collections::HashMap;
use std::path::PathBuf;

pub const ARCHS: [&str; 3] = ["llama", "qwen2", "qwen3"];

pub fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

pub fn load(name: &str, policy: &PrecisionPolicy) -> Decoder {
    load_tp(name, policy, TensorParallel::default()).unwrap()
}

/// The fixture split over `tp.size` ranks.
pub fn load_tp(
    name: &str,
    policy: &PrecisionPolicy,
    tp: TensorParallel,
) -> reprolm_engine::Result<Decoder> {
    let dir = fixture_dir(name);
    let (_, spec) = spec_from_config_file(&dir.join("config.json")).unwrap();
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    Decoder::load_parallel(&spec, policy, vb, tp)
}

pub struct Expected(pub HashMap<String, Tensor>);

impl Expected {
    pub fn load(name: &str) -> Self {
        let path = fixture_dir(name).join("expected.safetensors");
        Expected(candle_core::safetensors::load(&path, &Device::Cpu).unwrap())
    }
    pub fn tensor(&self, key: &str) -> &Tensor {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("expected.safetensors has no `{key}`"))
    }
    /// The fixture's four batch prompts (`batch_prompt_0..3`, of different lengths) as requests
    /// `b0..b3`.
    pub fn batch_requests(&self) -> Vec<Request> {
        (0..4)
            .map(|i| Request {
                prompt: self.ids(&format!("batch_prompt_{i}")),
                problem_id: format!("b{i}"),
                sample_index: 0,
            })
            .collect()
    }
    pub fn ids(&self, key: &str) -> Vec<u32> {
        self.tensor(key)
            .to_dtype(DType::I64)
            .unwrap()
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|x| x as u32)
            .collect()
    }
    pub fn ids2(&self, key: &str) -> Vec<Vec<u32>> {
        let v: Vec<Vec<i64>> = self.tensor(key).to_vec2().unwrap();
        v.into_iter()
            .map(|r| r.into_iter().map(|x| x as u32).collect())
            .collect()
    }
    pub fn f32_2(&self, key: &str) -> Vec<Vec<f32>> {
        self.tensor(key)
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec2()
            .unwrap()
    }
    pub fn f64_2(&self, key: &str) -> Vec<Vec<f64>> {
        self.tensor(key)
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec2()
            .unwrap()
    }
}

/// eos ids from the fixture's generation_config.json.
pub fn eos_ids(name: &str) -> Vec<u32> {
    let text = std::fs::read_to_string(fixture_dir(name).join("generation_config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    match &v["eos_token_id"] {
        serde_json::Value::Array(a) => a.iter().map(|x| x.as_u64().unwrap() as u32).collect(),
        serde_json::Value::Number(n) => vec![n.as_u64().unwrap() as u32],
        _ => vec![],
    }
}

/// Largest absolute difference between two equally shaped matrices.
pub fn max_abs_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len(), "row counts differ");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "row lengths differ");
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f64::max)
}

/// One request `q{i}` per question, each prompt the model's chat template around it.
pub fn question_requests(model: &Model, questions: &[&str]) -> Vec<Request> {
    questions
        .iter()
        .enumerate()
        .map(|(i, q)| Request {
            prompt: model
                .prompt(&[ChatMessage::user(*q)], &ChatOptions::default())
                .unwrap(),
            problem_id: format!("q{i}"),
            sample_index: 0,
        })
        .collect()
}

/// Largest absolute difference between two equally shaped tensors, in f32.
pub fn max_abs_diff_tensors(a: &Tensor, b: &Tensor) -> f32 {
    (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
