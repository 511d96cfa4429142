//! Sets of array indices in Slurm's range syntax (`1-3,5,7-9`), both ways.
//!
//! The syntax is what `#SBATCH --array` takes and what squeue and sacct print for pending array
//! tasks that they fold into one line (`123_[4-6%2]`), so one parser serves both.

use anyhow::{bail, Context, Result};

/// `[1, 2, 3, 5]` as `1-3,5`: the shortest `--array` spec, so a resubmission of a few scattered
/// configurations of a large sweep stays short. The input need not be sorted; duplicates are dropped.
pub fn format_index_set(indices: &[usize]) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// The indices of a spec such as `1-3,5`, `[4-6]`, `[1-9:2%4]` (step after `:`, throttle after `%`,
/// both as sbatch accepts them), in the order given.
pub fn parse_index_set(spec: &str) -> Result<Vec<usize>> {
    let inner = spec.trim().trim_start_matches('[').trim_end_matches(']');
    let inner = inner.split('%').next().unwrap_or("");
    let mut out = Vec::new();
    for part in inner.split(',').filter(|p| !p.is_empty()) {
        let (range, step) = match part.split_once(':') {
            Some((r, s)) => (
                r,
                s.parse::<usize>()
                    .with_context(|| format!("array index set `{spec}`: step `{s}`"))?,
            ),
            None => (part, 1),
        };
        if step == 0 {
            bail!("array index set `{spec}`: step 0");
        }
        let num = |s: &str| {
            s.trim()
                .parse::<usize>()
                .with_context(|| format!("array index set `{spec}`: `{s}` is not an index"))
        };
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(range)?, num(range)?),
        };
        if hi < lo {
            bail!("array index set `{spec}`: range {lo}-{hi} runs backwards");
        }
        out.extend((lo..=hi).step_by(step));
    }
    if out.is_empty() {
        bail!("array index set `{spec}` is empty");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_fold_and_unfold() {
        assert_eq!(format_index_set(&[5, 1, 2, 3, 3, 9, 8]), "1-3,5,8-9");
        assert_eq!(format_index_set(&[4]), "4");
        assert_eq!(format_index_set(&[]), "");
        for set in [vec![1, 2, 3, 5, 8, 9], vec![7], vec![1, 3, 5]] {
            assert_eq!(parse_index_set(&format_index_set(&set)).unwrap(), set);
        }
    }

    #[test]
    fn squeue_folded_forms_parse() {
        assert_eq!(parse_index_set("[4-6]").unwrap(), [4, 5, 6]);
        assert_eq!(parse_index_set("[1-3,7%2]").unwrap(), [1, 2, 3, 7]);
        assert_eq!(parse_index_set("1-9:4").unwrap(), [1, 5, 9]);
        assert!(parse_index_set("N/A").is_err());
        assert!(parse_index_set("5-2").is_err());
        assert!(parse_index_set("[]").is_err());
    }
}
