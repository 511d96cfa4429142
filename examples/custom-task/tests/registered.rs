//! Linking the example crate is enough for its task to be found by name, next to the built-ins.

use reprolm_tasks::{load_task, summaries, task_names, TaskOptions};

// Referencing the crate makes sure the linker keeps it (and so its registration).
use reprolm_example_custom_task::NAME;

#[test]
fn plugin_is_listed_with_the_builtins() {
    let names = task_names().unwrap();
    assert!(
        names.contains(&NAME) && names.contains(&"math500"),
        "{names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let s = summaries()
        .unwrap()
        .into_iter()
        .find(|s| s.name == NAME)
        .unwrap();
    assert_eq!(s.size, Some(5));
    assert!(s.source.ends_with("data/problems.jsonl"), "{}", s.source);
}

#[test]
fn plugin_loads_prompts_and_scores() {
    let (task, data) = load_task(NAME, &TaskOptions::default()).unwrap();
    assert_eq!(data.problems.len(), 5);
    assert_eq!(data.files.len(), 1);
    let p = data.get("days-3w").unwrap();
    assert_eq!(
        task.messages(p)[0].content,
        "How many days are in 3 weeks?\nPut the final number within \\boxed{}."
    );
    assert!(
        task.score(p, "<think>3 * 7</think>\\boxed{21}")
            .unwrap()
            .correct
    );
    assert!(
        !task
            .score(p, "<think>3 * 5</think>\\boxed{15}")
            .unwrap()
            .correct
    );
    let e = load_task(NAME, &TaskOptions::default().with_param("level", "2"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unknown option `level`"), "{e}");
}
