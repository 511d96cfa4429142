//! Choosing the next token: greedy, or sampling with temperature, top-k, top-p and min-p
//! ([`choose`], whose CPU and CUDA bodies live with the other kernels in
//! [`kernels::sampling`](crate::kernels::sampling)) from counter-based noise that belongs to the
//! request and the position, not to a batch slot or a stream's history ([`NoiseKey`]).

mod noise;

pub use crate::kernels::sampling::choose;
pub use noise::{philox4x32_10, NoiseKey};

use crate::{Error, Result};

/// How to pick tokens and when to stop.
///
/// ```
/// use reprolm_engine::SamplingParams;
/// let greedy = SamplingParams::greedy(256);
/// assert!(greedy.is_greedy());
/// let sampled = SamplingParams { temperature: 0.7, top_p: 0.95, ..SamplingParams::greedy(256) };
/// sampled.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (argmax, lowest token id on exact ties).
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of top tokens whose probability reaches this.
    pub top_p: f64,
    /// Keep only the k most likely tokens; 0 turns it off.
    pub top_k: usize,
    /// Drop tokens whose probability is below `min_p` times the top token's.
    pub min_p: f64,
    /// Most tokens to generate per sequence.
    pub max_tokens: usize,
    /// Seed from which every request's noise key is derived ([`NoiseKey::new`]).
    pub seed: u64,
    /// How many top candidates (ids and log-probabilities) to record per generated token.
    pub logprobs: usize,
    /// Generation stops after any of these tokens (it is kept in the output).
    pub stop_token_ids: Vec<u32>,
}

impl SamplingParams {
    /// Greedy decoding with the reference settings: seed 42, top-5 logprobs, no stop tokens
    /// (the model's eos ids are added by the caller).
    pub fn greedy(max_tokens: usize) -> Self {
        SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            max_tokens,
            seed: 42,
            logprobs: 5,
            stop_token_ids: Vec::new(),
        }
    }

    /// Whether tokens are chosen by argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Rejects values that have no meaning, naming the parameter.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidRequest(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if self.max_tokens == 0 {
            return bad("max_tokens must be at least 1".into());
        }
        Ok(())
    }
}

/// The index of the largest value, the lowest index among exact ties (as `torch.argmax`).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || values[best].is_nan() && !v.is_nan() {
            best = i;
        }
    }
    best as u32
}

/// The `k` largest entries as (index, value), descending, lower index first on ties.
pub fn top_k(values: &[f32], k: usize) -> Vec<(u32, f32)> {
    let k = k.min(values.len());
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &v) in values.iter().enumerate() {
        if best.len() == k
            && (k == 0 || v.partial_cmp(&best[k - 1].1) != Some(std::cmp::Ordering::Greater))
        {
            continue;
        }
        let pos = best.partition_point(|&(_, b)| b >= v);
        best.insert(pos, (i as u32, v));
        best.truncate(k);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_prefers_lowest_index_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5]), 1);
    }

    #[test]
    fn top_k_is_sorted_and_stable() {
        let v = [0.1, 0.9, 0.5, 0.9, -2.0];
        assert_eq!(top_k(&v, 3), vec![(1, 0.9), (3, 0.9), (2, 0.5)]);
        assert_eq!(top_k(&v, 10).len(), 5);
        assert!(top_k(&v, 0).is_empty());
    }

    #[test]
    fn bad_parameters_are_named() {
        let p = SamplingParams {
            top_p: 0.0,
            ..SamplingParams::greedy(4)
        };
        assert!(p.validate().unwrap_err().to_string().contains("top_p"));
        let p = SamplingParams {
            temperature: -1.0,
            ..SamplingParams::greedy(4)
        };
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("temperature"));
    }
}
