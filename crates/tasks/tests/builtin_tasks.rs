//! Every built-in task against its real data file: count, exact prompt of a known problem, and the
//! grade of a known correct and a known wrong response (issue #5, "Checked by").

mod common;

use reprolm_tasks::{load_task, DataSource, Score, Task, TaskOptions};

fn opts(rel: &str) -> Option<TaskOptions> {
    Some(TaskOptions::default().with_data(DataSource::Path(common::dataset(rel)?)))
}

fn user_prompt(task: &dyn Task, p: &reprolm_tasks::Problem) -> String {
    let m = task.messages(p);
    assert_eq!(m.len(), 1, "one user message, as the reference sends");
    assert_eq!(m[0].role, "user");
    m[0].content.clone()
}

fn score(task: &dyn Task, p: &reprolm_tasks::Problem, r: &str) -> Score {
    task.score(p, r).unwrap()
}

#[test]
fn math_tasks_grade_a_last_number_only_when_asked() {
    let Some(o) = opts("math500/test.jsonl") else {
        return;
    };
    // A response that states its answer only in a sentence (gold of this problem: 10).
    let (task, data) = load_task("math500", &o).unwrap();
    let p = data
        .problems
        .iter()
        .find(|p| p.answer.as_deref() == Some("10"))
        .expect("a problem whose answer is 10");
    let response = "Counting the cases with $n$ fixed, we find there are 10 of them.";
    assert!(!task.score(p, response).unwrap().correct);
    for name in ["math500", "aime24"] {
        let with = o.clone().with_param("last_number", "true");
        assert!(load_task(name, &with).is_ok(), "{name} accepts last_number");
    }
    let (task, _) = load_task("math500", &o.clone().with_param("last_number", "true")).unwrap();
    let s = task.score(p, response).unwrap();
    assert!(s.correct, "{:#}", s.detail);
    assert_eq!(s.detail["extracted"]["source"], "last_number");
    let Err(e) = load_task("math500", &o.with_param("last_number", "maybe")) else {
        panic!("last_number=maybe accepted");
    };
    assert!(e.to_string().contains("last_number"), "{e}");
}

#[test]
fn math_tasks_read_a_decimal_comma_unless_told_not_to() {
    let Some(o) = opts("math500/test.jsonl") else {
        return;
    };
    let (task, data) = load_task("math500", &o).unwrap();
    // A gold that is a plain decimal number, written back with a decimal comma.
    let p = data
        .problems
        .iter()
        .find(|p| {
            p.answer.as_deref().is_some_and(|a| {
                a.split_once('.').is_some_and(|(i, f)| {
                    !i.is_empty()
                        && !f.is_empty()
                        && (i.chars().chain(f.chars())).all(|c| c.is_ascii_digit())
                })
            })
        })
        .expect("a problem whose answer is a decimal number");
    let response = format!(
        "The answer is $\\boxed{{{}}}$.",
        p.answer.as_deref().unwrap().replace('.', ",")
    );
    let s = task.score(p, &response).unwrap();
    assert!(s.correct, "{response}: {:#}", s.detail);
    let (never, _) = load_task("math500", &o.with_param("decimal_comma", "false")).unwrap();
    assert!(!never.score(p, &response).unwrap().correct, "{response}");
}

#[test]
fn math500_real_file() {
    let Some(o) = opts("math500/test.jsonl") else {
        return;
    };
    let (task, data) = load_task("math500", &o).unwrap();
    assert_eq!(data.problems.len(), 500);
    assert_eq!(
        data.sha256(),
        "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132"
    );
    let p = data
        .get("test/precalculus/807.json")
        .expect("known problem");
    assert_eq!(
        user_prompt(task.as_ref(), p),
        "Return your final response within \\boxed{}. Convert the point $(0,3)$ in rectangular coordinates to polar \
         coordinates.  Enter your answer in the form $(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$"
    );
    assert_eq!(
        task.reference_answer(p).as_deref(),
        Some("\\left( 3, \\frac{\\pi}{2} \\right)")
    );
    let right = score(
        task.as_ref(),
        p,
        "<think>r = 3, angle pi/2</think>The point is $\\boxed{(3, \\frac{\\pi}{2})}$.",
    );
    assert!(right.correct && right.score == 1.0, "{right:?}");
    assert_eq!(right.extracted.as_deref(), Some("(3, \\frac{\\pi}{2})"));
    let wrong = score(task.as_ref(), p, "<think>...</think>$\\boxed{(3, \\pi)}$");
    assert!(!wrong.correct && wrong.score == 0.0, "{wrong:?}");
}

#[test]
fn aime24_real_file() {
    let Some(o) = opts("aime24/test.jsonl") else {
        return;
    };
    let (task, data) = load_task("aime24", &o).unwrap();
    assert_eq!(data.problems.len(), 30);
    let p = data.get("72").expect("known problem");
    assert_eq!(
        user_prompt(task.as_ref(), p),
        "Return your final response within \\boxed{}. Find the largest possible real part of \
         \\[(75+117i)z+\\frac{96+144i}{z}\\]where $z$ is a complex number with $|z|=4$."
    );
    assert!(score(task.as_ref(), p, "So the maximum is $\\boxed{540}$.").correct);
    assert!(!score(task.as_ref(), p, "So the maximum is $\\boxed{504}$.").correct);
    // Zero-padded gold answers are graded by value.
    let padded = data
        .problems
        .iter()
        .find(|p| p.answer.as_deref() == Some("025"))
        .expect("a padded answer");
    assert!(score(task.as_ref(), padded, "\\boxed{25}").correct);
}

#[test]
fn aime25_real_file() {
    let Some(o) = opts("aime25/test.jsonl") else {
        return;
    };
    let (task, data) = load_task("aime25", &o).unwrap();
    assert_eq!(data.problems.len(), 30);
    let p = data.get("0").expect("known problem");
    assert_eq!(
        user_prompt(task.as_ref(), p),
        "Find the sum of all integer bases $b>9$ for which $17_{b}$ is a divisor of $97_{b}$.\nReturn your final response within \\boxed{}"
    );
    assert!(score(task.as_ref(), p, "<think>b = 21, 49</think>\\boxed{70}").correct);
    assert!(!score(task.as_ref(), p, "<think>b = 21</think>\\boxed{21}").correct);
}

#[test]
fn gpqa_diamond_from_the_official_zip() {
    let Some(o) = opts("gpqa/dataset.zip") else {
        return;
    };
    let Some(password) = common::gpqa_password() else {
        return;
    };
    let (task, data) = load_task(
        "gpqa_diamond",
        &o.clone().with_param("password", password.clone()),
    )
    .unwrap();
    assert_eq!(data.problems.len(), 198);
    assert_eq!(
        data.sha256(),
        "461ae7329f15a3e35f8184d2dac24b990f34fdf12f366ca4062d8e6638cd08dc"
    );
    assert_eq!(data.settings["seed"], 42);

    let mut letters = [0usize; 4];
    for p in &data.problems {
        let order: Vec<usize> = serde_json::from_value(p.metadata["order"].clone()).unwrap();
        let answers = [
            "Correct Answer",
            "Incorrect Answer 1",
            "Incorrect Answer 2",
            "Incorrect Answer 3",
        ]
        .map(|f| p.field_str(f).unwrap().to_string());
        let listed: Vec<String> = ["A", "B", "C", "D"]
            .iter()
            .zip(&order)
            .map(|(l, &i)| format!("{l}) {}", answers[i]))
            .collect();
        let expected = format!(
            "Return your final response within \\boxed{{}} and only include the letter choice (A, B, C, or D) as your \
             final response. {}\n{}",
            p.field_str("Question").unwrap(),
            listed.join(", ")
        );
        assert_eq!(user_prompt(task.as_ref(), p), expected);
        let gold = p.answer.as_deref().unwrap();
        let gold_index = (gold.as_bytes()[0] - b'A') as usize;
        assert_eq!(
            order[gold_index], 0,
            "the correct letter shows the correct answer"
        );
        letters[gold_index] += 1;
        let wrong = ["A", "B", "C", "D"]
            .into_iter()
            .find(|l| *l != gold)
            .unwrap();
        assert!(
            score(
                task.as_ref(),
                p,
                &format!("<think>...</think>\\boxed{{{gold}}}")
            )
            .correct
        );
        assert!(
            !score(
                task.as_ref(),
                p,
                &format!("<think>...</think>\\boxed{{{wrong}}}")
            )
            .correct
        );
    }
    assert!(
        letters.iter().all(|&n| n > 25),
        "correct letters spread over A-D: {letters:?}"
    );

    // The order is a function of (seed, id): reloading gives the same letters, another seed others.
    let (_, again) = load_task(
        "gpqa_diamond",
        &o.clone().with_param("password", password.clone()),
    )
    .unwrap();
    assert_eq!(again.problems, data.problems);
    let (_, other) = load_task(
        "gpqa_diamond",
        &o.with_seed(7).with_param("password", password),
    )
    .unwrap();
    let moved = other
        .problems
        .iter()
        .zip(&data.problems)
        .filter(|(a, b)| a.answer != b.answer)
        .count();
    assert!(
        moved > 100,
        "seed 7 moved only {moved} of 198 correct letters"
    );
}

#[test]
fn gpqa_zip_without_password_says_where_to_find_it() {
    let Some(o) = opts("gpqa/dataset.zip") else {
        return;
    };
    if std::env::var("REPROLM_GPQA_PASSWORD").is_ok() {
        eprintln!("SKIP: REPROLM_GPQA_PASSWORD is set");
        return;
    }
    let e = load_task("gpqa_diamond", &o)
        .err()
        .expect("no password")
        .to_string();
    assert!(
        e.contains("REPROLM_GPQA_PASSWORD") && e.contains("idavidrein/gpqa"),
        "{e}"
    );
    let e = load_task("gpqa_diamond", &o.with_param("password", "not-it"))
        .err()
        .expect("wrong password")
        .to_string();
    assert!(e.contains("dataset.zip") && e.contains("password"), "{e}");
}

const STDIN_PREFIX: &str = "Generate an executable Python function generated from the given prompt. The function \
    should take stdin as input and print the output. Simply call the function after the definition. ";
const CALL_PREFIX: &str =
    "Generate an executable Python function generated from the given prompt. Return the \
    function body without invoking it at the final solution. ";

#[test]
fn livecodebench_real_subset() {
    let Some(o) = opts("livecodebench/test.jsonl") else {
        return;
    };
    let (task, data) = load_task("livecodebench", &o).unwrap();
    assert_eq!(data.problems.len(), 57);
    assert_eq!(
        data.sha256(),
        "84e9570eb5bdaaa47afbf2d63370f1071746f8068c168ef3b208b928280a2d08"
    );
    let stdin = data
        .problems
        .iter()
        .filter(|p| p.metadata_str("test_style") == Some("stdin"))
        .count();
    assert_eq!(stdin, 33);

    let p = data.get("abc301_a").expect("known stdin problem");
    let content = p.field_str("question_content").unwrap();
    assert!(content.starts_with("Takahashi and Aoki played N games.\r\n"));
    assert_eq!(
        user_prompt(task.as_ref(), p),
        format!("{STDIN_PREFIX}{content}")
    );
    let q = data.get("2777").expect("known functional problem");
    assert_eq!(
        user_prompt(task.as_ref(), q),
        format!("{CALL_PREFIX}{}", q.field_str("question_content").unwrap())
    );
    assert!(
        !user_prompt(task.as_ref(), q).contains("class Solution"),
        "starter code is off by default"
    );

    let (with_starter, _) = load_task(
        "livecodebench",
        &o.clone().with_param("starter_code", "true"),
    )
    .unwrap();
    let again = with_starter.load(o.data.as_ref().unwrap()).unwrap();
    let shown = user_prompt(with_starter.as_ref(), again.get("2777").unwrap());
    assert!(
        shown.contains("```python\nclass Solution:\n    def distinctDifferenceArray"),
        "{shown}"
    );

    let right = "<think>count</think>\n```python\nn = int(input())\ns = input().strip()\nt, a = s.count('T'), s.count('A')\n\
                 if t != a:\n    print('T' if t > a else 'A')\nelse:\n    print('A' if s[-1] == 'T' else 'T')\n```\n";
    let wrong = "```python\ninput()\ninput()\nprint('T')\n```";
    let right = match task.score(p, right) {
        Ok(s) => s,
        Err(e) if !common::sandbox_available(&e) => return,
        Err(e) => panic!("{e}"),
    };
    assert!(right.correct, "{:#}", right.detail);
    assert!(right
        .extracted
        .as_deref()
        .unwrap()
        .starts_with("n = int(input())"));
    let wrong = task.score(p, wrong).unwrap();
    assert!(!wrong.correct, "{:#}", wrong.detail);
    assert_eq!(
        wrong.detail["verdict"]["verdict"], "wrong_answer",
        "{:#}",
        wrong.detail
    );

    let call_right = "```python\nclass Solution:\n    def distinctDifferenceArray(self, nums):\n        \
                      return [len(set(nums[:i + 1])) - len(set(nums[i + 1:])) for i in range(len(nums))]\n```";
    let call_wrong = "```python\nclass Solution:\n    def distinctDifferenceArray(self, nums):\n        return nums\n```";
    let scores = task
        .score_many(&[(q, call_right), (q, call_wrong), (p, "no code at all")])
        .unwrap();
    assert_eq!(
        scores.iter().map(|s| s.correct).collect::<Vec<_>>(),
        [true, false, false],
        "{scores:#?}"
    );
}

#[test]
fn livecodebench_memory_bound_and_workers_are_settings() {
    let Some(o) = opts("livecodebench/test.jsonl") else {
        return;
    };
    let o = o
        .with_param("memory_limit", "256MiB")
        .with_param("workers", "3");
    let (task, data) = load_task("livecodebench", &o).unwrap();
    let said = match task.prepare_scoring() {
        Ok(said) => said.expect("a code task says how it grades"),
        Err(e) => {
            eprintln!("SKIP: no sandbox on this machine: {e}");
            return;
        }
    };
    assert!(
        said.contains("3 sandbox workers") && said.contains("0.25 GiB per program"),
        "{said}"
    );
    let p = data.get("abc307_a").expect("abc307_a in the subset");
    // 400 MB held at once: under the per-process address space, over the bound.
    let hog = "```python\nkeep = b'x' * (400 << 20)\nprint(len(keep))\n```";
    let s = task.score(p, hog).unwrap();
    assert!(!s.correct);
    assert_eq!(
        s.detail["verdict"]["verdict"], "memory_limit",
        "{:#}",
        s.detail
    );
    for (key, value) in [("memory_limit", "lots"), ("workers", "0")] {
        let bad = opts("livecodebench/test.jsonl")
            .unwrap()
            .with_param(key, value);
        let Err(e) = load_task("livecodebench", &bad) else {
            panic!("{key}={value} was accepted");
        };
        let e = e.to_string();
        assert!(e.contains(key) && e.contains(value), "{e}");
    }
}

#[test]
fn livecodebench_variants_and_date_filters() {
    let Some(o) = opts("livecodebench/test.jsonl") else {
        return;
    };
    let count = |name: &str, o: &TaskOptions| load_task(name, o).unwrap().1.problems.len();
    assert_eq!(count("livecodebench_easy", &o), 20);
    assert_eq!(count("livecodebench_medium", &o), 18);
    assert_eq!(count("livecodebench_hard", &o), 19);
    assert_eq!(
        count("livecodebench", &o.clone().with_param("difficulty", "hard")),
        19
    );
    assert_eq!(
        count(
            "livecodebench",
            &o.clone().with_param("start_date", "2024-01-01")
        ),
        11
    );
    assert_eq!(
        count(
            "livecodebench",
            &o.clone()
                .with_param("start_date", "2023-09-01")
                .with_param("end_date", "2023-09-30")
        ),
        6
    );
    let (_, easy) = load_task("livecodebench_easy", &o).unwrap();
    assert!(easy
        .problems
        .iter()
        .all(|p| p.metadata["difficulty"] == "easy"));
    assert_eq!(easy.settings["difficulty"], "easy");
    // A variant cannot be asked for another difficulty; a release needs the Hub files.
    assert!(load_task(
        "livecodebench_easy",
        &o.clone().with_param("difficulty", "hard")
    )
    .is_err());
    let e = load_task("livecodebench", &o.with_param("release", "release_v2"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("release") && e.contains("start_date"), "{e}");
}

#[test]
fn arith_needs_no_files() {
    let (task, data) = load_task("arith", &TaskOptions::default()).unwrap();
    assert_eq!(data.problems.len(), 100);
    assert_eq!(data.source, "generated");
    let p = &data.problems[0];
    assert!(score(task.as_ref(), p, p.field_str("solution").unwrap()).correct);
}
