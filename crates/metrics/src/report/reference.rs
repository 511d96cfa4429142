//! Each run against the run of a reference policy (fp32 unless asked otherwise) that has the same
//! model, task, decoding and runtime configuration: how many samples' tokens differ from the
//! reference's, where they first differ, and which answers the precision flipped. The groups
//! compare one policy across runtime configurations (the paper's Div % and Std@Acc); this view
//! compares policies at one configuration (how far bf16 is from fp32 at batch 8).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::group::{self, config_label, decoding_label};
use crate::metrics::RunObs;
use crate::repro::{divergence, Divergence};
use crate::run_dir::{Manifest, SampleKey};

/// The reference policy when none is named.
pub const DEFAULT_REFERENCE: &str = "fp32";

/// One run against its reference run, over the samples both hold.
#[derive(Debug, Clone, Serialize)]
pub struct AgainstReference {
    /// Model id.
    pub model: String,
    /// Task name.
    pub task: String,
    /// Decoding setting.
    pub decoding: String,
    /// The run's policy.
    pub policy: String,
    /// The runtime configuration both runs share, in short (the fields that vary in the model,
    /// task and decoding's runs).
    pub configuration: String,
    /// The run.
    pub run: PathBuf,
    /// The reference policy's run of the same configuration.
    pub reference_run: PathBuf,
    /// Samples present in both.
    pub samples: usize,
    /// Samples whose tokens differ from the reference's.
    pub differing: usize,
    /// Mean position of the first differing token over the differing samples (`None` when none
    /// differ).
    pub mean_first_difference: Option<f64>,
    /// Samples graded correct under the reference and wrong in the run.
    pub correct_to_wrong: usize,
    /// Samples graded wrong under the reference and correct in the run.
    pub wrong_to_correct: usize,
    /// The run's accuracy over the shared samples.
    pub accuracy: Option<f64>,
    /// The reference run's accuracy over the same samples.
    pub reference_accuracy: Option<f64>,
}

/// The comparisons against the reference policy, and the pairs that could not be compared.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReferenceView {
    /// The reference policy's name.
    pub reference: String,
    /// One entry per run with a reference run of its configuration, in report order.
    pub comparisons: Vec<AgainstReference>,
    /// Pairs left out, and why (different data, weights or tokenizer; a configuration the
    /// reference ran more than once).
    pub notes: Vec<String>,
}

/// A loaded run as the view needs it.
pub(crate) struct RunEntry {
    pub path: PathBuf,
    pub manifest: Manifest,
    pub obs: RunObs,
}

/// What pairs a run with its reference: model, task, decoding and every runtime field, of the
/// kernels only the choice (the attention route recorded beside it follows from the policy's
/// dtypes, so it differs between policies by design).
fn pairing_key(m: &Manifest) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}",
        m.model.id,
        m.task.name,
        decoding_label(m),
        group::runtime_identity(m)
    )
}

/// Compares every run whose policy is not `reference` with the reference run of its
/// configuration; `label_fields` gives, per (model, task, decoding), the fields that name a
/// configuration.
pub(crate) fn compare(
    runs: &[RunEntry],
    reference: &str,
    label_fields: &BTreeMap<(String, String, String), Vec<&'static str>>,
) -> ReferenceView {
    let mut view = ReferenceView {
        reference: reference.to_string(),
        ..Default::default()
    };
    let mut references: BTreeMap<String, Vec<&RunEntry>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.manifest.policy.name == reference) {
        references
            .entry(pairing_key(&r.manifest))
            .or_default()
            .push(r);
    }
    for r in runs.iter().filter(|r| r.manifest.policy.name != reference) {
        let Some(refs) = references.get(&pairing_key(&r.manifest)) else {
            continue;
        };
        let name = group::dir_name(&r.path);
        if refs.len() > 1 {
            let dirs: Vec<String> = refs.iter().map(|x| group::dir_name(&x.path)).collect();
            view.notes.push(format!(
                "{name}: not compared, {reference} ran its configuration {} times ({})",
                refs.len(),
                dirs.join(", ")
            ));
            continue;
        }
        let base = refs[0];
        let inputs =
            group::differing_inputs(&[&r.manifest, &base.manifest], &[&r.path, &base.path]);
        if !inputs.is_empty() {
            view.notes.push(format!(
                "{name} against {}: not compared, {}",
                group::dir_name(&base.path),
                inputs.join("; ")
            ));
            continue;
        }
        let shared: Vec<&SampleKey> = r.obs.keys().filter(|k| base.obs.contains_key(*k)).collect();
        let (mut differing, mut first_sum) = (0usize, 0usize);
        let (mut to_wrong, mut to_right, mut correct, mut base_correct) = (0, 0, 0, 0);
        for k in &shared {
            let (a, b) = (&r.obs[*k], &base.obs[*k]);
            if let Divergence::At(i) = divergence(&[&a.token_ids, &b.token_ids]) {
                differing += 1;
                first_sum += i;
            }
            correct += usize::from(a.correct);
            base_correct += usize::from(b.correct);
            match (b.correct, a.correct) {
                (true, false) => to_wrong += 1,
                (false, true) => to_right += 1,
                _ => {}
            }
        }
        let n = shared.len();
        let share = |c: usize| (n > 0).then(|| c as f64 / n as f64);
        let m = &r.manifest;
        let fields = label_fields
            .get(&(m.model.id.clone(), m.task.name.clone(), decoding_label(m)))
            .map_or(&[][..], Vec::as_slice);
        view.comparisons.push(AgainstReference {
            model: m.model.id.clone(),
            task: m.task.name.clone(),
            decoding: decoding_label(m),
            policy: m.policy.name.clone(),
            configuration: config_label(m, fields),
            run: r.path.clone(),
            reference_run: base.path.clone(),
            samples: n,
            differing,
            mean_first_difference: (differing > 0).then(|| first_sum as f64 / differing as f64),
            correct_to_wrong: to_wrong,
            wrong_to_correct: to_right,
            accuracy: share(correct),
            reference_accuracy: share(base_correct),
        });
    }
    view
}
