//! Hostile input: random garbage and named nasty cases must give "not equal" with a reason, quickly,
//! without panicking.

use std::time::{Duration, Instant};

use reprolm_scoring::{extract_answer, extract_choice, grade_math, math_equal};

/// Pieces that exercise every branch of extraction, normalisation and parsing when glued at random.
const PIECES: &[&str] = &[
    "\\frac",
    "\\dfrac",
    "{",
    "}",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "^",
    "_",
    "1",
    "2",
    "0",
    "9",
    "x",
    "y",
    "e",
    "i",
    "\\sqrt",
    "\\pm",
    "\\mp",
    ",",
    ",",
    "=",
    "\\\\",
    "&",
    "\\begin{pmatrix}",
    "\\end{pmatrix}",
    "\\cup",
    "\\{",
    "\\}",
    "|",
    "!",
    "$",
    "$$",
    "\\boxed{",
    "\\boxed ",
    "\\fbox{",
    "</think>",
    "\\text{",
    "\\mbox{ cm}",
    "%",
    "\\%",
    ".",
    "-",
    "+",
    "/",
    "*",
    "\\cdot",
    "\\left(",
    "\\right)",
    "\\left[",
    "\\right]",
    " ",
    "\\,",
    "\\!",
    "é",
    "°",
    "\\pi",
    "\\infty",
    "\\sin",
    "\\log_",
    "\\circ",
    "^\\circ",
    "\\in",
    "\\$",
    "answer:",
    "final answer is",
    "(A)",
    "B)",
    "\\textbf{",
    "\\",
    "\\\\!",
    "1,\\!000",
    "e-5",
    "\\times10^",
    "\\operatorname{",
    "\\mathrm{",
    "\u{0}",
    "\n",
    "\t",
    "😀",
];

/// splitmix64: a seeded generator so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn garbage(rng: &mut Rng) -> String {
    let len = rng.below(24);
    let mut s = String::new();
    for _ in 0..len {
        if rng.below(8) == 0 {
            // A random char, any plane.
            s.push(char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('?'));
        } else {
            s.push_str(PIECES[rng.below(PIECES.len())]);
        }
    }
    s
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng(0xBAD_5EED);
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let last_number = reprolm_scoring::MathOptions {
        last_number_fallback: true,
        ..Default::default()
    };
    for _ in 0..20_000 {
        let a = garbage(&mut rng);
        let b = garbage(&mut rng);
        let t = Instant::now();
        let v = math_equal(&a, &b);
        if !v.equal {
            assert!(!v.detail.is_empty(), "no reason for `{a}` vs `{b}`");
        }
        let _ = math_equal("5", &a);
        let _ = math_equal(&a, &a);
        let _ = grade_math("\\frac{1}{2}", &a);
        let _ = extract_answer(&b);
        let _ = reprolm_scoring::extract_answer_with(&b, &last_number);
        let _ = extract_choice(&a);
        slowest = slowest.max(t.elapsed());
    }
    println!(
        "20000 garbage cases in {:?}, slowest {:?}",
        start.elapsed(),
        slowest
    );
    assert!(
        slowest < Duration::from_millis(500),
        "a garbage case took {slowest:?}"
    );
}

fn check_not_equal(name: &str, gold: &str, pred: &str) {
    let t = Instant::now();
    let v = math_equal(gold, pred);
    let g = grade_math(gold, pred);
    let elapsed = t.elapsed();
    assert!(!v.equal, "{name}: judged equal");
    assert!(!g.correct, "{name}: graded correct");
    assert!(!v.detail.is_empty(), "{name}: no reason");
    assert!(elapsed < Duration::from_secs(2), "{name}: took {elapsed:?}");
    println!(
        "{name}: {:?} ({}) in {elapsed:?}",
        v.rule,
        truncate(&v.detail)
    );
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[test]
fn named_nasty_cases() {
    let mb = 1 << 20;
    // Under MAX_ANSWER_LEN, so that they reach the parser's depth limit rather than the length limit.
    let deep_frac = "\\frac{1}{".repeat(180) + "2" + &"}".repeat(180);
    let deep_parens = "(".repeat(900) + "1" + &")".repeat(900);
    let deep_sqrt = "\\sqrt{".repeat(250) + "2" + &"}".repeat(250);
    let deep_powers = "2^{".repeat(450) + "1" + &"}".repeat(450);
    let long_sum = "1+".repeat(990) + "1";
    let tower = "10^{".repeat(30) + "10" + &"}".repeat(30);
    let cases: Vec<(&str, String)> = vec![
        ("unbalanced open brace", "\\frac{1}{2".into()),
        ("unbalanced close brace", "\\frac{1}{2}}}".into()),
        ("lone brace", "{".into()),
        ("division by zero", "\\frac{1}{0}".into()),
        ("zero over zero", "0/0".into()),
        ("overflowing power", "10^{10^{10}}".into()),
        ("power tower", tower),
        ("huge factorial", "9999999!".into()),
        ("huge literal", "9".repeat(1_500)),
        ("deep fractions", deep_frac),
        ("deep parentheses", deep_parens),
        ("deep radicals", deep_sqrt),
        ("deep powers", deep_powers),
        ("long flat sum (1981)", long_sum),
        ("many plus-minus", "1".to_owned() + &"\\pm 1".repeat(200)),
        ("long list", "1,".repeat(400) + "1"),
        ("1 MB of digits", "1".repeat(mb)),
        ("1 MB of open braces", "{".repeat(mb)),
        ("1 MB of boxes", "\\boxed{".repeat(mb / 7)),
        ("1 MB of dollars", "$".repeat(mb)),
        ("1 MB of backslashes", "\\".repeat(mb)),
        ("1 MB of think tags", "</think>".repeat(mb / 8)),
        ("1 MB of answer phrases", "the answer is ".repeat(mb / 14)),
        ("empty", String::new()),
        ("only spaces", "   ".into()),
        ("nul bytes", "\u{0}\u{0}".into()),
    ];
    for (name, pred) in &cases {
        check_not_equal(name, "5", pred);
        // Both sides hostile: identical garbage must not count as a match either.
        if pred.len() < 10_000 && !pred.trim().is_empty() {
            let v = math_equal(pred, pred);
            // Identical strings may match as strings (an unparsable but well-formed answer such as
            // `x < 3` should equal itself), but never by a value rule.
            assert!(
                !v.equal || v.rule == reprolm_scoring::Rule::StringMatch,
                "{name} equals itself by {:?}",
                v.rule
            );
        }
    }
}

#[test]
fn one_megabyte_response_is_graded_quickly() {
    let mut response = "Let me think. ".repeat(80_000);
    response.push_str("</think> The final answer is $\\boxed{\\frac{1}{2}}$.");
    assert!(response.len() > 1 << 20);
    let t = Instant::now();
    let g = grade_math("0.5", &response);
    assert!(g.correct, "{g:?}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
}
