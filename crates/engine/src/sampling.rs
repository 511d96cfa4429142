//! Choosing the next token: greedy, or seeded sampling with temperature, top-k, top-p and min-p,
//! from a random stream that belongs to the request, not to its batch slot.

use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

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
    /// Seed from which every request's random stream is derived.
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

/// The random stream of one request, derived from (seed, problem id, sample index).
///
/// Deriving it from the request rather than from the batch slot is what makes a sampled answer
/// independent of which other prompts shared its batch, up to numerics.
#[derive(Debug, Clone)]
pub struct RequestRng(ChaCha20Rng);

impl RequestRng {
    /// The stream for sample `sample_index` of problem `problem_id` under `seed`.
    pub fn new(seed: u64, problem_id: &str, sample_index: u32) -> Self {
        let mut h = Sha256::new();
        h.update(b"reprolm-request-rng-v1");
        h.update(seed.to_le_bytes());
        h.update((problem_id.len() as u64).to_le_bytes());
        h.update(problem_id.as_bytes());
        h.update(sample_index.to_le_bytes());
        RequestRng(ChaCha20Rng::from_seed(h.finalize().into()))
    }

    fn uniform(&mut self) -> f64 {
        self.0.random::<f64>()
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

/// Picks the next token from one row of float32 logits.
pub fn choose(logits: &[f32], params: &SamplingParams, rng: &mut RequestRng) -> u32 {
    if params.is_greedy() {
        return argmax(logits);
    }
    let t = params.temperature as f32;
    let mut cand: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, &v)| (i as u32, v / t))
        .collect();
    if cand.is_empty() {
        return argmax(logits);
    }
    cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if params.top_k > 0 {
        cand.truncate(params.top_k);
    }
    // Probabilities in f64 over the candidates; the order of summation is fixed (sorted).
    let max = cand[0].1 as f64;
    let mut probs: Vec<f64> = cand.iter().map(|&(_, v)| (v as f64 - max).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    let mut keep = probs.len();
    if params.min_p > 0.0 {
        let floor = params.min_p * probs[0];
        keep = probs.iter().take_while(|&&p| p >= floor).count().max(1);
    }
    if params.top_p < 1.0 {
        let mut acc = 0.0;
        let mut n = 0;
        for &p in &probs[..keep] {
            acc += p;
            n += 1;
            if acc >= params.top_p {
                break;
            }
        }
        keep = n.max(1);
    }
    let kept_total: f64 = probs[..keep].iter().sum();
    let u = rng.uniform() * kept_total;
    let mut acc = 0.0;
    for (i, &p) in probs[..keep].iter().enumerate() {
        acc += p;
        if u < acc {
            return cand[i].0;
        }
    }
    cand[keep - 1].0
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
    fn request_streams_depend_on_every_part_of_the_key() {
        let draw = |s, p: &str, i| RequestRng::new(s, p, i).uniform();
        let base = draw(42, "p1", 0);
        assert_eq!(base, draw(42, "p1", 0));
        assert_ne!(base, draw(43, "p1", 0));
        assert_ne!(base, draw(42, "p2", 0));
        assert_ne!(base, draw(42, "p1", 1));
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        let logits = [0.3, 2.0, 1.9, -1.0];
        let mut rng = RequestRng::new(1, "x", 0);
        for _ in 0..50 {
            let p = SamplingParams {
                temperature: 1.0,
                top_k: 1,
                ..SamplingParams::greedy(4)
            };
            assert_eq!(choose(&logits, &p, &mut rng), 1);
            let p = SamplingParams {
                temperature: 1.0,
                top_p: 1e-6,
                ..SamplingParams::greedy(4)
            };
            assert_eq!(choose(&logits, &p, &mut rng), 1);
        }
    }

    #[test]
    fn sampling_frequencies_follow_the_softmax() {
        // Two tokens with logits differing by ln(3): probabilities 0.75 / 0.25 at temperature 1.
        let logits = [0.0f32, 3f32.ln()];
        let p = SamplingParams {
            temperature: 1.0,
            ..SamplingParams::greedy(4)
        };
        let mut rng = RequestRng::new(7, "freq", 0);
        let n = 20000;
        let ones = (0..n)
            .filter(|_| choose(&logits, &p, &mut rng) == 1)
            .count();
        let share = ones as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.015, "{share}");
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let logits = [5.0f32, 0.0, 4.9];
        let p = SamplingParams {
            temperature: 1.0,
            min_p: 0.5,
            ..SamplingParams::greedy(4)
        };
        let mut rng = RequestRng::new(3, "m", 0);
        for _ in 0..500 {
            assert_ne!(choose(&logits, &p, &mut rng), 1);
        }
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
