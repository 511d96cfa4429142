//! `reprolm import-reference`: outputs of the paper's reference code become a run directory that
//! `report` and `inspect` read like any other, re-scored by reprolm's own graders.

use anyhow::{Context, Result};
use reprolm_metrics::import_reference::{
    import_reference, ImportOptions, NotScored, ReferenceSample, Scored, Scorer,
};
use reprolm_metrics::Error;
use reprolm_tasks::{DataSource, Dataset, Task, TaskOptions};

use crate::args::ImportReferenceArgs;
use crate::progress::OutputMode;

/// Grades imported responses with a reprolm task. The reference's `problem_id` is the index of the
/// problem in dataset order, so the task must be loaded from the same data, in the same order.
struct TaskScorer<'a> {
    task: &'a dyn Task,
    dataset: &'a Dataset,
}

impl Scorer for TaskScorer<'_> {
    fn score(&self, samples: &[ReferenceSample<'_>]) -> Result<Vec<Scored>, String> {
        let problems = samples
            .iter()
            .map(|s| {
                self.dataset.problems.get(s.index as usize).ok_or_else(|| {
                    format!(
                        "problem_id {} is past the {} problems of task {}",
                        s.index,
                        self.dataset.problems.len(),
                        self.task.name()
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let items: Vec<_> = problems
            .iter()
            .copied()
            .zip(samples.iter().map(|s| s.response))
            .collect();
        let scores = self.task.score_many(&items).map_err(|e| e.to_string())?;
        Ok(problems
            .iter()
            .zip(scores)
            .map(|(p, sc)| Scored {
                problem_id: p.id.clone(),
                score: sc.score,
                correct: sc.correct,
                extracted_answer: sc.extracted,
                detail: sc.detail,
            })
            .collect())
    }
}

/// Runs the import and prints where the run went. What the flags name (the task, its settings and
/// data, which run of the folder, the model the path does not tell) is a usage error when wrong or
/// missing (status 2), as for `run`; damaged output is a failure (status 1).
pub fn command(args: &ImportReferenceArgs, mode: OutputMode) -> Result<i32> {
    let mut opts = ImportOptions::new(&args.task);
    opts.model = args.model.clone();
    opts.gpu_type = args.gpu_type.clone();
    opts.gpus = args.gpus;
    opts.batch_size = args.batch_size;
    opts.dtype = args.dtype.clone();
    let summary = if args.no_score {
        import_reference(&args.dir, &args.out, &opts, &NotScored)
    } else {
        let mut task_options = TaskOptions::default();
        for kv in &args.task_params {
            task_options
                .set_param_str(kv)
                .map_err(|e| crate::usage(format!("--task-param: {e}")))?;
        }
        if let Some(d) = &args.data {
            task_options = task_options
                .with_data(DataSource::parse(d).map_err(|e| crate::usage(format!("--data: {e}")))?);
        }
        reprolm_tasks::find(&args.task).map_err(|e| crate::usage(format!("--task: {e}")))?;
        let (task, dataset) =
            reprolm_tasks::load_task(&args.task, &task_options).context("--task")?;
        opts.task_version = Some(dataset.version.clone());
        opts.dataset_sha256 = Some(dataset.sha256());
        opts.dataset_source = Some(dataset.source.clone());
        import_reference(
            &args.dir,
            &args.out,
            &opts,
            &TaskScorer {
                task: &*task,
                dataset: &dataset,
            },
        )
    }
    .map_err(|e| match e {
        Error::ReferenceModelUnknown { .. } | Error::ReferenceRunNotChosen { .. } => {
            crate::usage(format!("importing {}: {e}", args.dir.display()))
        }
        e => anyhow::Error::new(e).context(format!("importing {}", args.dir.display())),
    })?;
    // An imported run is read like one of reprolm's own, results.json included.
    reprolm_metrics::results::write(&summary.run_dir).with_context(|| {
        format!(
            "{}: writing {}",
            summary.run_dir.display(),
            reprolm_metrics::results::RESULTS_FILE
        )
    })?;
    match mode {
        OutputMode::Json => crate::progress::event(
            "finished",
            serde_json::json!({
                "run_dir": summary.run_dir, "problems": summary.n_problems, "correct": summary.n_correct,
                "warnings": summary.manifest.warnings,
            }),
        ),
        _ => {
            println!(
                "imported {} problems ({} correct) into {}",
                summary.n_problems,
                summary.n_correct,
                summary.run_dir.display()
            );
            if mode == OutputMode::Human {
                for w in &summary.manifest.warnings {
                    eprintln!("warning: {w}");
                }
            }
        }
    }
    Ok(0)
}
