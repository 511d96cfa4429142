//! The task registry: every [`TaskEntry`] submitted with `inventory::submit!` in any linked crate.
//!
//! `inventory` gathers entries at program start, in no defined order, so every lookup sorts by name
//! and refuses duplicate names (naming both origins) instead of letting link order pick a winner.

use crate::data::DataSource;
use crate::error::{Error, Result};
use crate::options::TaskOptions;
use crate::task::{Dataset, Task};

/// One registered task: its name and a constructor.
///
/// The entry must be a constant expression (`inventory` builds it before `main`), so it stores a
/// constructor, not a task. The constructor takes the options so a task can refuse bad settings
/// before anything is loaded; it must succeed for `TaskOptions::default()`, which is what
/// `reprolm tasks` uses to describe it.
///
/// ```
/// use reprolm_tasks::{Task, TaskEntry, TaskOptions, Result};
/// # use reprolm_tasks::{ChatMessage, DataSource, Dataset, Problem, Score};
/// struct Echo;
/// # impl Task for Echo {
/// #   fn name(&self) -> &str { "doc_echo" }
/// #   fn description(&self) -> &str { "echo" }
/// #   fn version(&self) -> &str { "1" }
/// #   fn default_source(&self) -> DataSource { DataSource::Generated }
/// #   fn load(&self, _: &DataSource) -> Result<Dataset> { unimplemented!() }
/// #   fn messages(&self, _: &Problem) -> Vec<ChatMessage> { vec![] }
/// #   fn score(&self, _: &Problem, _: &str) -> Result<Score> { unimplemented!() }
/// # }
/// fn make(_: &TaskOptions) -> Result<Box<dyn Task>> { Ok(Box::new(Echo)) }
/// inventory::submit! { TaskEntry { name: "doc_echo", origin: module_path!(), make } }
///
/// assert_eq!(reprolm_tasks::make_task("doc_echo", &TaskOptions::default())?.name(), "doc_echo");
/// # Ok::<(), reprolm_tasks::Error>(())
/// ```
pub struct TaskEntry {
    /// The name `--task` takes; must equal the task's [`Task::name`].
    pub name: &'static str,
    /// Where the entry was submitted; write `module_path!()`. Shown when two entries share a name.
    pub origin: &'static str,
    /// Builds the task from its options.
    pub make: fn(&TaskOptions) -> Result<Box<dyn Task>>,
}

inventory::collect!(TaskEntry);

/// Every registered entry, sorted by name.
///
/// ```
/// let names: Vec<_> = reprolm_tasks::entries()?.iter().map(|e| e.name).collect();
/// assert!(names.contains(&"math500"));
/// # Ok::<(), reprolm_tasks::Error>(())
/// ```
pub fn entries() -> Result<Vec<&'static TaskEntry>> {
    sorted_unique(inventory::iter::<TaskEntry>.into_iter().collect())
}

fn sorted_unique(mut all: Vec<&'static TaskEntry>) -> Result<Vec<&'static TaskEntry>> {
    all.sort_by(|a, b| a.name.cmp(b.name).then(a.origin.cmp(b.origin)));
    if let Some(w) = all.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(Error::DuplicateTask {
            name: w[0].name.to_string(),
            first: w[0].origin.to_string(),
            second: w[1].origin.to_string(),
        });
    }
    Ok(all)
}

/// Names of every registered task, sorted.
pub fn task_names() -> Result<Vec<&'static str>> {
    Ok(entries()?.iter().map(|e| e.name).collect())
}

/// The entry called `name`; an unknown name is an error listing the available ones.
pub fn find(name: &str) -> Result<&'static TaskEntry> {
    let all = entries()?;
    all.iter()
        .copied()
        .find(|e| e.name == name)
        .ok_or_else(|| Error::UnknownTask {
            name: name.to_string(),
            available: all.iter().map(|e| e.name).collect::<Vec<_>>().join(", "),
        })
}

/// Builds the task called `name` with `options`.
pub fn make_task(name: &str, options: &TaskOptions) -> Result<Box<dyn Task>> {
    (find(name)?.make)(options)
}

/// Builds the task and loads its problems from `options.data`, or from its default source.
///
/// ```no_run
/// let (task, data) = reprolm_tasks::load_task("math500", &Default::default())?;
/// println!("{} problems, sha256 {}", data.problems.len(), data.sha256());
/// let prompt = task.messages(&data.problems[0]);
/// # Ok::<(), reprolm_tasks::Error>(())
/// ```
pub fn load_task(name: &str, options: &TaskOptions) -> Result<(Box<dyn Task>, Dataset)> {
    let task = make_task(name, options)?;
    let source: DataSource = options
        .data
        .clone()
        .unwrap_or_else(|| task.default_source());
    let data = task.load(&source)?;
    Ok((task, data))
}

/// What `reprolm tasks` shows for one task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskSummary {
    /// Registry name.
    pub name: String,
    /// One line.
    pub description: String,
    /// Prompt/grading revision.
    pub version: String,
    /// Problems in the default source, when known without loading.
    pub size: Option<usize>,
    /// The default data source.
    pub source: String,
    /// The settings it accepts (`--task-param KEY=VALUE`).
    pub options: Vec<crate::TaskOption>,
}

/// One summary per registered task, sorted by name, built with default options.
///
/// ```
/// let list = reprolm_tasks::summaries()?;
/// let m = list.iter().find(|s| s.name == "math500").unwrap();
/// assert_eq!(m.size, Some(500));
/// # Ok::<(), reprolm_tasks::Error>(())
/// ```
pub fn summaries() -> Result<Vec<TaskSummary>> {
    let defaults = TaskOptions::default();
    entries()?
        .into_iter()
        .map(|e| {
            let t = (e.make)(&defaults)?;
            Ok(TaskSummary {
                name: e.name.to_string(),
                description: t.description().to_string(),
                version: t.version().to_string(),
                size: t.size_hint(),
                source: t.default_source().to_string(),
                options: t.options().to_vec(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting a built-in task lists is one it accepts (a listed key never gets "unknown
    /// setting"), and a key it does not list is refused.
    #[test]
    fn the_listed_settings_are_the_accepted_ones() {
        for e in entries().unwrap() {
            let t = (e.make)(&TaskOptions::default()).unwrap();
            for o in t.options() {
                assert!(!o.help.is_empty(), "{}: {}", e.name, o.key);
                // The value may be refused, the key may not.
                let opts = TaskOptions::default().with_param(o.key, "1");
                if let Err(err) = (e.make)(&opts) {
                    assert!(
                        !matches!(err, crate::Error::UnknownOption { .. }),
                        "{}: listed `{}` is refused: {err}",
                        e.name,
                        o.key
                    );
                }
            }
            let opts = TaskOptions::default().with_param("no_such_setting", "1");
            assert!(
                matches!((e.make)(&opts), Err(crate::Error::UnknownOption { .. })),
                "{}",
                e.name
            );
        }
    }

    fn unreachable_make(_: &TaskOptions) -> Result<Box<dyn Task>> {
        unreachable!("never built in these tests")
    }

    static A: TaskEntry = TaskEntry {
        name: "same",
        origin: "crate_a::tasks",
        make: unreachable_make,
    };
    static B: TaskEntry = TaskEntry {
        name: "same",
        origin: "crate_b::tasks",
        make: unreachable_make,
    };
    static C: TaskEntry = TaskEntry {
        name: "alpha",
        origin: "crate_c",
        make: unreachable_make,
    };

    #[test]
    fn duplicate_names_are_an_error_naming_both_origins() {
        let msg = sorted_unique(vec![&B, &C, &A])
            .err()
            .expect("duplicate must fail")
            .to_string();
        assert!(
            msg.contains("`same`")
                && msg.contains("crate_a::tasks")
                && msg.contains("crate_b::tasks"),
            "{msg}"
        );
    }

    #[test]
    fn entries_come_back_sorted() {
        let got: Vec<_> = sorted_unique(vec![&A, &C])
            .unwrap()
            .iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(got, ["alpha", "same"]);
    }

    #[test]
    fn unknown_task_lists_the_available_ones() {
        let msg = find("math5000").err().expect("unknown").to_string();
        assert!(
            msg.contains("math5000")
                && msg.contains("available tasks: aime24, aime25, arith, gpqa_diamond")
                && msg.ends_with("math500"),
            "{msg}"
        );
    }

    #[test]
    fn builtins_are_registered() {
        assert_eq!(
            task_names().unwrap(),
            [
                "aime24",
                "aime25",
                "arith",
                "gpqa_diamond",
                "livecodebench",
                "livecodebench_easy",
                "livecodebench_hard",
                "livecodebench_medium",
                "math500"
            ]
        );
        for e in entries().unwrap() {
            assert_eq!(
                (e.make)(&TaskOptions::default()).unwrap().name(),
                e.name,
                "entry and task name differ"
            );
        }
    }
}
