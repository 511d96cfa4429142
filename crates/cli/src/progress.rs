//! What a command tells the user while it works: a progress bar for people, nothing with `--quiet`,
//! JSON lines with `--json-log` for scripts.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

/// How messages are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Progress bar on stderr, notes and results as text.
    Human,
    /// Only errors and the final result.
    Quiet,
    /// One JSON object per line on stdout.
    Json,
}

impl OutputMode {
    /// A note for the user (a repair done, a fallback taken).
    pub fn note(self, msg: &str) {
        match self {
            OutputMode::Human => eprintln!("{msg}"),
            OutputMode::Quiet => {}
            OutputMode::Json => event("note", json!({ "message": msg })),
        }
    }

    /// A result line: text for people (shown even when quiet), an event for scripts.
    pub fn result(self, text: &str, name: &str, fields: Value) {
        match self {
            OutputMode::Json => event(name, fields),
            _ => println!("{text}"),
        }
    }
}

/// Print one JSON-log event: `{"event": name, ...fields}`.
pub fn event(name: &str, fields: Value) {
    let mut obj = serde_json::Map::new();
    obj.insert("event".into(), name.into());
    if let Value::Object(f) = fields {
        obj.extend(f);
    }
    println!("{}", Value::Object(obj));
}

/// Progress of one run: samples done out of the total, and generation speed.
pub struct Progress {
    mode: OutputMode,
    bar: Option<ProgressBar>,
    started: Instant,
    last_event: Instant,
    tokens: u64,
}

impl Progress {
    /// Start showing progress; `done` samples were finished by earlier sessions.
    pub fn new(mode: OutputMode, label: &str, total: u64, done: u64) -> Progress {
        let bar = (mode == OutputMode::Human).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} samples  {msg}",
                )
                .expect("valid template"),
            );
            bar.set_prefix(label.to_string());
            bar.set_position(done);
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        Progress {
            mode,
            bar,
            started: Instant::now(),
            last_event: Instant::now(),
            tokens: 0,
        }
    }

    /// Tokens generated so far in this session.
    pub fn tokens(&mut self, tokens: u64) {
        self.tokens = tokens;
        let rate = self.rate();
        if let Some(b) = &self.bar {
            b.set_message(format!("{tokens} tokens, {rate:.0} tok/s"));
        }
    }

    /// Generation speed of this session.
    pub fn rate(&self) -> f64 {
        self.tokens as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    /// One sample finished and was recorded.
    pub fn sample_done(
        &mut self,
        problem_id: &str,
        sample_index: u32,
        n_tokens: usize,
        correct: bool,
    ) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        if self.mode == OutputMode::Json {
            event(
                "sample",
                json!({
                    "problem_id": problem_id,
                    "sample_index": sample_index,
                    "tokens": n_tokens,
                    "correct": correct,
                }),
            );
            if self.last_event.elapsed() > Duration::from_secs(5) {
                self.last_event = Instant::now();
                event(
                    "progress",
                    json!({ "tokens": self.tokens, "tok_s": self.rate() }),
                );
            }
        }
    }

    /// A note shown above the bar.
    pub fn note(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None => self.mode.note(msg),
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
