//! Which slice of each weight a rank of a tensor-parallel group holds (Megatron-style).
//!
//! - q/k/v and gate/up are split by output rows (column parallel): rank `r` holds query heads
//!   `r·H/n ..`, its key/value heads, and intermediate units `r·I/n ..`. Attention needs nothing
//!   from other ranks, because every head's keys and values live on the rank of its queries.
//! - o and down are split by input columns (row parallel) to match, so each rank's product is a
//!   partial sum over its slice of K, and one all-reduce per block completes it.
//! - The LM head is split by vocabulary rows (vocab parallel, the split may be uneven) and the
//!   ranks' logits are all-gathered; embeddings and norms are replicated.
//! - When there are fewer key/value heads than ranks (GQA with `n` a multiple of the kv heads),
//!   each rank holds the one kv head its query heads read, so kv heads are replicated `n / kv`
//!   times (as vLLM does), rather than refusing common configs like 2 kv heads over 4 ranks.

use super::TensorParallel;
use crate::models::DecoderSpec;
use crate::{Error, Result};
use std::ops::Range;

/// What rank `rank` of a group of `size` holds, in units of the spec (heads, not rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLayout {
    /// This rank.
    pub rank: usize,
    /// Ranks in the group.
    pub size: usize,
    /// Query heads held.
    pub heads: Range<usize>,
    /// Key/value heads held.
    pub kv_heads: Range<usize>,
    /// MLP units held (rows of gate/up, columns of down).
    pub intermediate: Range<usize>,
    /// Vocabulary rows of the LM head held.
    pub vocab: Range<usize>,
}

/// Checks that `spec` splits over `tp.size` ranks, naming the config.json field that does not.
///
/// ```
/// use reprolm_engine::parallel::{check_split, TensorParallel, TpMode};
/// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/qwen2");
/// let (_, spec) = reprolm_engine::spec_from_config_file(&dir.join("config.json"))?;
/// assert!(check_split(&spec, &TensorParallel::new(4, TpMode::Standard)).is_ok());
/// let err = check_split(&spec, &TensorParallel::new(3, TpMode::Standard)).unwrap_err();
/// assert!(err.to_string().contains("num_attention_heads"));
/// # Ok::<(), reprolm_engine::Error>(())
/// ```
pub fn check_split(spec: &DecoderSpec, tp: &TensorParallel) -> Result<()> {
    layout(spec, tp, 0).map(|_| ())
}

pub(crate) fn layout(spec: &DecoderSpec, tp: &TensorParallel, rank: usize) -> Result<ShardLayout> {
    let n = tp.size;
    let bad = |field: &'static str, value: usize, reason: String| {
        Err(Error::TensorParallelSplit {
            field,
            value,
            tp: n,
            reason,
        })
    };
    if n == 0 {
        return bad("tp", 0, "the group needs at least one rank".into());
    }
    if tp.mode == super::TpMode::Invariant && super::TREE_CHUNKS % n != 0 {
        return bad(
            "tp",
            n,
            format!(
                "the TP-invariant mode splits K into {} chunks; tp must divide it",
                super::TREE_CHUNKS
            ),
        );
    }
    let (h, kvh) = (spec.num_heads, spec.num_kv_heads);
    if h % n != 0 {
        return bad(
            "num_attention_heads",
            h,
            format!("{h} query heads do not split evenly over {n} ranks"),
        );
    }
    let kv_heads = if kvh % n == 0 {
        rank * kvh / n..(rank + 1) * kvh / n
    } else if n % kvh == 0 {
        let kv = rank / (n / kvh);
        kv..kv + 1
    } else {
        return bad(
            "num_key_value_heads",
            kvh,
            format!(
                "{kvh} key/value heads neither split evenly over {n} ranks nor replicate evenly onto them"
            ),
        );
    };
    let i = spec.intermediate_size;
    if i % n != 0 {
        return bad(
            "intermediate_size",
            i,
            format!("{i} MLP units do not split evenly over {n} ranks"),
        );
    }
    let v = spec.vocab_size;
    if v < n {
        return bad(
            "vocab_size",
            v,
            format!("fewer vocabulary rows than {n} ranks"),
        );
    }
    Ok(ShardLayout {
        rank,
        size: n,
        heads: rank * h / n..(rank + 1) * h / n,
        kv_heads,
        intermediate: rank * i / n..(rank + 1) * i / n,
        vocab: rank * v / n..(rank + 1) * v / n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::rope::{RopeScaling, RopeSpec};
    use crate::parallel::TpMode;

    fn spec(h: usize, kvh: usize, i: usize, v: usize) -> DecoderSpec {
        DecoderSpec {
            vocab_size: v,
            hidden_size: 64,
            intermediate_size: i,
            num_layers: 1,
            num_heads: h,
            num_kv_heads: kvh,
            head_dim: 16,
            rms_norm_eps: 1e-6,
            rope: RopeSpec {
                theta: 1e4,
                scaling: RopeScaling::None,
            },
            max_position_embeddings: 64,
            tie_word_embeddings: true,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            qk_norm: false,
            hidden_act: "silu".into(),
        }
    }

    fn tp(n: usize) -> TensorParallel {
        TensorParallel::new(n, TpMode::Standard)
    }

    #[test]
    fn heads_units_and_vocab_are_split_in_rank_order() {
        let s = spec(8, 4, 128, 327);
        let l: Vec<ShardLayout> = (0..4).map(|r| layout(&s, &tp(4), r).unwrap()).collect();
        assert_eq!(l[1].heads, 2..4);
        assert_eq!(l[3].kv_heads, 3..4);
        assert_eq!(l[2].intermediate, 64..96);
        // An uneven vocabulary split covers every row once.
        assert_eq!(l[0].vocab.start, 0);
        assert_eq!(l[3].vocab.end, 327);
        for r in 1..4 {
            assert_eq!(l[r - 1].vocab.end, l[r].vocab.start);
        }
    }

    #[test]
    fn fewer_kv_heads_than_ranks_replicates_the_one_each_rank_reads() {
        let s = spec(8, 2, 128, 64);
        let kv: Vec<_> = (0..4)
            .map(|r| layout(&s, &tp(4), r).unwrap().kv_heads)
            .collect();
        assert_eq!(kv, vec![0..1, 0..1, 1..2, 1..2]);
        // Query heads 0..4 read kv head 0 (groups of 4), 4..8 read kv head 1.
        assert_eq!(layout(&s, &tp(4), 2).unwrap().heads, 4..6);
    }

    #[test]
    fn bad_splits_name_the_config_field() {
        let err = |s: &DecoderSpec, t: TensorParallel| check_split(s, &t).unwrap_err().to_string();
        assert!(err(&spec(6, 6, 128, 64), tp(4)).contains("`num_attention_heads` = 6"));
        assert!(err(&spec(12, 3, 128, 64), tp(2)).contains("`num_key_value_heads` = 3"));
        assert!(err(&spec(8, 8, 100, 64), tp(8)).contains("`intermediate_size` = 100"));
        let e = err(
            &spec(6, 6, 120, 64),
            TensorParallel::new(3, TpMode::Invariant),
        );
        assert!(e.contains("TP-invariant") && e.contains("tp"), "{e}");
        assert!(check_split(&spec(6, 6, 120, 64), &tp(3)).is_ok());
    }
}
