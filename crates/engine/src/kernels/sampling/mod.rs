//! The sampled choice of the next token, defined on integers so that the CPU body here and the
//! CUDA body (`choose.cu`, launched by `sample_rows`) compute it bit for bit: no vocabulary is
//! sorted, every sum is an integer sum, and the one transcendental function is spelled in
//! additions and multiplications that both devices round alike.

mod cuda;

pub(crate) use cuda::sample_rows;

use crate::sampling::{argmax, NoiseKey, SamplingParams};
use reprolm_precision::portable;

/// Fixed-point scale of the weights the choice is made with: a token's weight is
/// `floor(exp((logit - max) / temperature) · 2^32)`, the most likely token's `2^32`. Sums of up to
/// 2^21 weights stay below 2^53, so they are exact as integers and as `f64`.
const WEIGHT_ONE: f64 = 4_294_967_296.0;

/// Below this scaled logit (`(logit - max) / temperature`) a weight is 0: `exp(-22.19) < 2^-32`.
const WEIGHT_CUTOFF: f64 = -22.2;

/// The fixed-point weight of a token whose scaled logit is `z = (logit - max) / temperature`,
/// and `e^z` (0 for both below the cutoff), which min-p compares.
fn weight(z: f64) -> (u64, f64) {
    if z < WEIGHT_CUTOFF {
        (0, 0.0)
    } else {
        let e = portable::exp_f64(z);
        ((e * WEIGHT_ONE).floor() as u64, e)
    }
}

/// Picks the next token from one row of float32 logits: argmax when greedy, else a draw from
/// the tempered distribution cut by top-k, top-p and min-p, using the draw at `position` of the
/// request's [`NoiseKey`].
///
/// The choice is defined on integers so that any device computes it bit for bit and no
/// vocabulary needs sorting:
/// 1. each finite logit gets the weight `floor(e^((l - max)/T) · 2^32)`
///    ([`portable::exp_f64`]);
/// 2. top-k keeps the tokens whose logit is at least the k-th largest (ties kept, as vLLM);
/// 3. top-p keeps the tokens whose weight is at least `τ`, the largest weight such that the
///    kept tokens' weights sum to at least `top_p` of the top-k set's (ties kept);
/// 4. min-p keeps the tokens with `e^((l - max)/T) >= min_p` (the most likely token's is 1);
/// 5. with `W` the kept weights' sum and `u` the draw's 64 bits, the target `t = ⌊u · W / 2^64⌋`
///    picks the first kept token, in token-id order, whose running weight sum exceeds `t`.
///
/// Every token is chosen with probability its weight over `W`, which is its tempered
/// probability renormalised over the kept set up to the `2^-32` weight resolution.
pub fn choose(logits: &[f32], params: &SamplingParams, key: NoiseKey, position: usize) -> u32 {
    if params.is_greedy() {
        return argmax(logits);
    }
    let Some(max) = logits
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .reduce(f32::max)
    else {
        return argmax(logits);
    };
    let t = params.temperature;
    let scaled = |l: f32| (f64::from(l) - f64::from(max)) / t;
    // Top-k: the k-th largest finite logit is the lowest one kept.
    let floor = if params.top_k > 0 {
        let mut finite: Vec<f32> = logits.iter().copied().filter(|v| v.is_finite()).collect();
        if params.top_k < finite.len() {
            let k = params.top_k - 1;
            *finite.select_nth_unstable_by(k, |a, b| b.total_cmp(a)).1
        } else {
            f32::NEG_INFINITY
        }
    } else {
        f32::NEG_INFINITY
    };
    // The candidates: finite, within top-k, with a weight above zero (the others can never be
    // drawn), and within min-p.
    let mut cand: Vec<(u32, u64)> = Vec::new();
    let mut top_k_total: u64 = 0;
    for (i, &l) in logits.iter().enumerate() {
        if !l.is_finite() || l < floor {
            continue;
        }
        let (w, e) = weight(scaled(l));
        if w == 0 {
            continue;
        }
        top_k_total += w;
        if params.min_p > 0.0 && e < params.min_p {
            continue;
        }
        cand.push((i as u32, w));
    }
    // Top-p: the smallest weight τ whose tokens (ties included) reach the target mass.
    let tau = if params.top_p < 1.0 {
        let target = (params.top_p * top_k_total as f64).ceil() as u64;
        let mut weights: Vec<u64> = cand.iter().map(|&(_, w)| w).collect();
        weights.sort_unstable_by(|a, b| b.cmp(a));
        let mut acc = 0u64;
        let mut tau = weights[0];
        for (j, &w) in weights.iter().enumerate() {
            acc += w;
            tau = w;
            // Ties of τ are all in: stop only where the next weight is smaller.
            if acc >= target && weights.get(j + 1) != Some(&w) {
                break;
            }
        }
        tau
    } else {
        0
    };
    let total: u64 = cand
        .iter()
        .filter(|&&(_, w)| w >= tau)
        .map(|&(_, w)| w)
        .sum();
    let target = ((u128::from(key.draw(position)) * u128::from(total)) >> 64) as u64;
    let mut acc = 0u64;
    for &(id, w) in cand.iter().filter(|&&(_, w)| w >= tau) {
        acc += w;
        if acc > target {
            return id;
        }
    }
    unreachable!("the target is below the kept weights' sum")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(temperature: f64) -> SamplingParams {
        SamplingParams {
            temperature,
            ..SamplingParams::greedy(4)
        }
    }

    /// The portable exponential against the library's over the range the weights use.
    #[test]
    fn the_portable_exponential_is_accurate_to_the_last_bits() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = WEIGHT_CUTOFF * f64::from(i) / 200_000.0;
            let rel = (portable::exp_f64(x) - x.exp()).abs() / x.exp();
            worst = worst.max(rel);
        }
        assert!(worst < 4e-16, "{worst:e}");
        assert_eq!(weight(0.0).0, 1 << 32);
        assert_eq!(weight(WEIGHT_CUTOFF - 1e-9).0, 0);
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        let logits = [0.3, 2.0, 1.9, -1.0];
        let key = NoiseKey::new(1, "x", 0);
        for pos in 0..200 {
            let p = SamplingParams {
                top_k: 1,
                ..sampled(1.0)
            };
            assert_eq!(choose(&logits, &p, key, pos), 1);
            let p = SamplingParams {
                top_p: 1e-6,
                ..sampled(1.0)
            };
            assert_eq!(choose(&logits, &p, key, pos), 1);
        }
    }

    /// Frequencies over positions match the tempered, cut and renormalised distribution,
    /// computed in float64 with a sort (the textbook definition) as the reference.
    #[test]
    fn sampling_frequencies_follow_the_cut_softmax() {
        let logits: Vec<f32> = (0..40)
            .map(|i| ((i * 37 % 11) as f32) * 0.45 - 2.0)
            .collect();
        for params in [
            sampled(1.0),
            sampled(0.6),
            SamplingParams {
                top_k: 7,
                ..sampled(1.3)
            },
            SamplingParams {
                top_p: 0.8,
                ..sampled(0.9)
            },
            SamplingParams {
                min_p: 0.2,
                ..sampled(1.0)
            },
        ] {
            let expected = reference_distribution(&logits, &params);
            let key = NoiseKey::new(7, "freq", 0);
            let n = 60_000;
            let mut counts = vec![0usize; logits.len()];
            for pos in 0..n {
                counts[choose(&logits, &params, key, pos) as usize] += 1;
            }
            for (i, (&c, &p)) in counts.iter().zip(&expected).enumerate() {
                let share = c as f64 / n as f64;
                let sd = (p * (1.0 - p) / n as f64).sqrt();
                assert!(
                    (share - p).abs() <= 5.0 * sd + 1e-9,
                    "{params:?}: token {i} drawn {share}, expected {p}"
                );
            }
        }
    }

    /// The distribution `choose` samples from, by sorting: softmax(l / T), keep the k largest
    /// (ties kept), the smallest top set reaching `top_p` of that mass (ties kept), and the
    /// tokens of probability at least `min_p` times the largest; renormalised.
    fn reference_distribution(logits: &[f32], p: &SamplingParams) -> Vec<f64> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let w: Vec<f64> = logits
            .iter()
            .map(|&l| ((l as f64 - max) / p.temperature).exp())
            .collect();
        let mut order: Vec<usize> = (0..w.len()).collect();
        order.sort_by(|&a, &b| w[b].total_cmp(&w[a]));
        let mut keep = vec![true; w.len()];
        if p.top_k > 0 && p.top_k < w.len() {
            let kth = w[order[p.top_k - 1]];
            order.iter().for_each(|&i| keep[i] &= w[i] >= kth);
        }
        let mass: f64 = (0..w.len()).filter(|&i| keep[i]).map(|i| w[i]).sum();
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut tau = 0.0;
            for &i in order.iter().filter(|&&i| keep[i]) {
                if acc >= p.top_p * mass && w[i] < tau {
                    break;
                }
                acc += w[i];
                tau = w[i];
            }
            (0..w.len()).for_each(|i| keep[i] &= w[i] >= tau);
        }
        (0..w.len()).for_each(|i| keep[i] &= w[i] >= p.min_p);
        let kept: f64 = (0..w.len()).filter(|&i| keep[i]).map(|i| w[i]).sum();
        (0..w.len())
            .map(|i| if keep[i] { w[i] / kept } else { 0.0 })
            .collect()
    }

    #[test]
    fn ties_at_the_cuts_are_kept_whole() {
        // Three tokens tie for second place: top-k 2 keeps all of them, and so does a top-p
        // whose mass is reached inside the tie; the last token is never drawn.
        let logits = [3.0f32, 1.0, 1.0, 1.0, -4.0];
        let key = NoiseKey::new(5, "ties", 0);
        for params in [
            SamplingParams {
                top_k: 2,
                ..sampled(1.0)
            },
            SamplingParams {
                top_p: 0.8,
                ..sampled(1.0)
            },
        ] {
            let mut seen = [0usize; 5];
            for pos in 0..3000 {
                seen[choose(&logits, &params, key, pos) as usize] += 1;
            }
            assert!(seen[1..4].iter().all(|&c| c > 100), "{params:?}: {seen:?}");
            assert_eq!(seen[4], 0, "{params:?}");
        }
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let logits = [5.0f32, 0.0, 4.9];
        let p = SamplingParams {
            min_p: 0.5,
            ..sampled(1.0)
        };
        let key = NoiseKey::new(3, "m", 0);
        for pos in 0..500 {
            assert_ne!(choose(&logits, &p, key, pos), 1);
        }
    }

    #[test]
    fn a_draw_depends_on_its_position_not_on_what_came_before() {
        let logits: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 113) as f32 * 0.05)
            .collect();
        let p = sampled(0.7);
        let key = NoiseKey::new(9, "pos", 2);
        let forward: Vec<u32> = (0..64).map(|pos| choose(&logits, &p, key, pos)).collect();
        let backward: Vec<u32> = (0..64)
            .rev()
            .map(|pos| choose(&logits, &p, key, pos))
            .collect();
        assert!(forward.iter().eq(backward.iter().rev()));
        assert!(
            forward.iter().any(|&t| t != forward[0]),
            "draws vary with position"
        );
    }
}
