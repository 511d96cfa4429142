//! The embedded default model (models/arith-qwen2-3m) loads through the same path as Hub models
//! and solves held-out arithmetic problems step by step.

mod common;

use common::question_requests;
use reprolm_engine::{LoadOptions, Model, ModelSource};
use reprolm_precision::PrecisionPolicy;
use std::path::PathBuf;

/// Evaluates `a op b op c ...` with `*` before `+`/`-`, independently of the model and the task code.
fn evaluate(expr: &str) -> i64 {
    let tokens: Vec<&str> = expr.split_whitespace().collect();
    let mut terms: Vec<(i64, i64)> = Vec::new(); // (sign, product)
    let mut sign = 1;
    let mut i = 0;
    while i < tokens.len() {
        let mut product: i64 = tokens[i].parse().unwrap();
        while i + 2 < tokens.len() && tokens[i + 1] == "*" {
            product *= tokens[i + 2].parse::<i64>().unwrap();
            i += 2;
        }
        terms.push((sign, product));
        if i + 1 < tokens.len() {
            sign = if tokens[i + 1] == "-" { -1 } else { 1 };
        }
        i += 2;
    }
    terms.iter().map(|(s, p)| s * p).sum()
}

fn boxed(text: &str) -> Option<i64> {
    let start = text.rfind("\\boxed{")? + "\\boxed{".len();
    let end = text[start..].find('}')? + start;
    text[start..end].trim().parse().ok()
}

#[test]
fn embedded_model_answers_held_out_problems() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/arith-qwen2-3m");
    let model = Model::load(
        &ModelSource::Local(dir.clone()),
        &LoadOptions::cpu(PrecisionPolicy::fp32()),
    )
    .unwrap();
    // What identifies the model without loading it is what the loaded model says.
    let id = reprolm_engine::ModelIdentity::read(
        &ModelSource::Local(dir),
        &reprolm_engine::ResolveOptions::from_env(),
    )
    .unwrap();
    assert_eq!(id.tokenizer_sha256, model.tokenizer.sha256());
    assert_eq!(id.architecture, model.architecture);
    assert_eq!(id.files.weights, model.files.weights);
    let questions = [
        "What is 55 + 30 + 95 + 2 * 3?",
        "What is 39 - 36 + 55 * 2?",
        "What is 66 + 78 - 92 + 5 + 19?",
        "What is 77 + 28 + 81 * 4 - 25 * 7?",
    ];
    let requests = question_requests(&model, &questions);
    let out = model.generate(&requests, &model.greedy(600), 4).unwrap();
    for (q, g) in questions.iter().zip(&out) {
        let text = model.decode(&g.token_ids).unwrap();
        let want = evaluate(q.trim_start_matches("What is ").trim_end_matches('?'));
        assert_eq!(
            g.finish_reason,
            reprolm_engine::FinishReason::Stop,
            "{q}: {text}"
        );
        assert!(
            g.token_ids.len() >= 100,
            "{q}: a worked answer, got {} tokens",
            g.token_ids.len()
        );
        assert_eq!(boxed(&text), Some(want), "{q}: {text}");
    }
}
