//! Data errors name what a user needs to fix them: file and line for a malformed record, field and
//! task for a missing field, the available names for an unknown task.

use reprolm_tasks::{load_task, DataSource, Error, TaskOptions};

fn with_file(name: &str, text: &str) -> (tempfile::TempDir, TaskOptions, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let o = TaskOptions::default().with_data(DataSource::Path(path.clone()));
    (dir, o, path)
}

#[test]
fn malformed_line_names_file_and_line() {
    let (_d, o, path) = with_file(
        "math.jsonl",
        "{\"problem\": \"1+1\", \"answer\": \"2\", \"unique_id\": \"a\"}\n{\"problem\": \"2+2\", \"answer\": \n",
    );
    let e = load_task("math500", &o).err().unwrap();
    assert!(matches!(&e, Error::Malformed { line: 2, .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2: ", path.display())),
        "{e}"
    );
}

#[test]
fn missing_field_names_field_and_task() {
    let (_d, o, path) = with_file(
        "aime.jsonl",
        "{\"id\": 1, \"problem\": \"p\", \"answer\": \"3\"}\n{\"id\": 2, \"problem\": \"q\"}\n",
    );
    let e = load_task("aime24", &o).err().unwrap().to_string();
    assert_eq!(
        e,
        format!(
            "task `aime24`: {}:2: missing field `answer`",
            path.display()
        )
    );
    let (_d, o, _) = with_file("gpqa.csv", "Record ID,Question,Correct Answer\nr1,q,a\n");
    let e = load_task("gpqa_diamond", &o).err().unwrap().to_string();
    assert!(
        e.contains("task `gpqa_diamond`") && e.contains("missing field `Incorrect Answer 1`"),
        "{e}"
    );
}

#[test]
fn field_names_can_be_changed() {
    let (_d, o, _) = with_file("m.csv", "q,gold\nWhat is 2+3?,5\n");
    let o = o
        .with_param("problem_field", "q")
        .with_param("answer_field", "gold");
    let (task, data) = load_task("math500", &o).unwrap();
    let p = &data.problems[0];
    assert_eq!(p.id.len(), 16, "no id field: content hash");
    assert_eq!(
        task.messages(p)[0].content,
        "Return your final response within \\boxed{}. What is 2+3?"
    );
    assert!(task.score(p, "\\boxed{5}").unwrap().correct);
}

#[test]
fn duplicate_ids_are_refused() {
    let (_d, o, path) = with_file("d.jsonl", "{\"id\": 7, \"question\": \"a\", \"answer\": \"1\"}\n{\"id\": 7, \"question\": \"b\", \"answer\": \"2\"}\n");
    let e = load_task("aime25", &o).err().unwrap().to_string();
    assert!(
        e.contains("`7`")
            && e.contains(&format!("{}:1", path.display()))
            && e.contains(&format!("{}:2", path.display())),
        "{e}"
    );
}

#[test]
fn unknown_task_and_option() {
    let e = load_task("mathh500", &TaskOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("mathh500") && e.contains("aime24, aime25, arith, gpqa_diamond"),
        "{e}"
    );
    let e = load_task(
        "arith",
        &TaskOptions::default().with_param("diffculty", "x"),
    )
    .err()
    .unwrap()
    .to_string();
    assert_eq!(
        e,
        "task `arith`: unknown option `diffculty`; accepted options: n"
    );
}
