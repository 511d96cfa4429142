//! Builders for run directories with chosen token streams and top-1 probabilities.

#![allow(dead_code)]

use std::path::Path;

use reprolm_metrics::run_dir::{
    Durability, Finish, FinishReason, LogprobsRecord, Manifest, ResponseRecord, RunDir,
    SamplingParams,
};

/// One sample to write: problem, sample index, tokens, top-1 probability per token, correct, truncated.
pub struct Sample {
    pub problem: &'static str,
    pub index: u32,
    pub tokens: Vec<u32>,
    pub probs: Vec<f64>,
    pub correct: bool,
    pub truncated: bool,
}

pub fn sample(problem: &'static str, tokens: &[u32], probs: &[f64], correct: bool) -> Sample {
    assert_eq!(tokens.len(), probs.len());
    Sample {
        problem,
        index: 0,
        tokens: tokens.to_vec(),
        probs: probs.to_vec(),
        correct,
        truncated: false,
    }
}

/// The f64 probability a reader gets back after the f32 logprob round trip.
pub fn stored(p: f64) -> f64 {
    f64::from(p.ln() as f32).exp()
}

pub struct RunSpec<'a> {
    pub policy: &'a str,
    pub batch_size: u32,
    pub task_version: &'a str,
    pub sampling: SamplingParams,
    pub finished: bool,
    pub deterministic: bool,
}

impl<'a> RunSpec<'a> {
    pub fn greedy(policy: &'a str, batch_size: u32) -> Self {
        RunSpec {
            policy,
            batch_size,
            task_version: "1",
            sampling: SamplingParams::greedy(),
            finished: true,
            deterministic: false,
        }
    }
}

pub fn manifest(spec: &RunSpec<'_>, n_problems: u32) -> Manifest {
    let mut m = Manifest::example();
    m.model.id = "test/model".into();
    m.task.name = "arith".into();
    m.task.version = spec.task_version.into();
    m.task.n_problems = n_problems;
    m.policy.name = spec.policy.into();
    m.batch_size = spec.batch_size;
    m.kernels
        .insert("deterministic".into(), spec.deterministic.to_string());
    m.sampling = spec.sampling.clone();
    m.max_tokens = 16;
    m
}

pub fn write_run(dir: &Path, spec: &RunSpec<'_>, n_problems: u32, samples: &[Sample]) {
    let mut run = RunDir::create(dir, manifest(spec, n_problems), Durability::Flush).unwrap();
    for s in samples {
        let finish = if s.truncated {
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        let mut r = ResponseRecord::new(
            s.problem,
            s.index,
            7,
            format!("{:?}", s.tokens),
            s.tokens.clone(),
            finish,
        );
        r.correct = s.correct;
        r.score = if s.correct { 1.0 } else { 0.0 };
        let mut lp = LogprobsRecord::new(s.problem, s.index, 5);
        for (&t, &p) in s.tokens.iter().zip(&s.probs) {
            let rest = ((1.0 - p) / 4.0).max(1e-9).ln() as f32;
            lp.push_position(
                &[t, t + 1, t + 2, t + 3, t + 4],
                &[p.ln() as f32, rest, rest, rest, rest],
            );
        }
        run.append(&r, &lp).unwrap();
    }
    if spec.finished {
        run.finish(Finish {
            finished_at: "2025-01-01T01:00:00Z".into(),
            throughput_tok_s: Some(100.0),
        })
        .unwrap();
    }
}
