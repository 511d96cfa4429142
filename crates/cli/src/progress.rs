//! What a command tells the user while it works: a progress bar for people, nothing with `--quiet`,
//! JSON lines with `--json-log` for scripts.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
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

/// Progress of one run: samples done out of the total, generation speed and the time left.
///
/// On a terminal a bar (with ETA) is drawn on stderr; when stderr is not a terminal (a log file,
/// a batch job) plain lines are printed there instead, at every tenth of the samples and at least
/// once a minute, so that a redirected run still says how far it is.
pub struct Progress {
    mode: OutputMode,
    bar: Option<ProgressBar>,
    /// Plain progress lines instead of the bar (stderr is not a terminal).
    plain: Option<PlainLines>,
    started: Instant,
    last_event: Instant,
    tokens: u64,
}

/// What the plain progress lines need.
struct PlainLines {
    label: String,
    total: u64,
    /// Samples done, earlier sessions included.
    done: u64,
    /// Samples done by earlier sessions (not counted in the speed).
    before: u64,
    last_line: Instant,
}

/// `h:mm:ss`.
pub(crate) fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// One plain progress line: samples, share, tokens and speed, elapsed time and the time left at
/// this session's pace.
fn plain_line(p: &PlainLines, tokens: u64, elapsed: f64) -> String {
    let session = p.done - p.before;
    let eta = if session > 0 {
        clock(elapsed / session as f64 * (p.total - p.done) as f64)
    } else {
        "?".into()
    };
    format!(
        "{}: {}/{} samples ({:.0}%), {tokens} tokens, {:.0} tok/s, elapsed {}, ETA {eta}",
        p.label,
        p.done,
        p.total,
        100.0 * p.done as f64 / p.total.max(1) as f64,
        tokens as f64 / elapsed.max(1e-9),
        clock(elapsed),
    )
}

/// The bar's time left: `?` until a sample of this session has finished. indicatif's own `{eta}`
/// reads 0s before it has a rate, which looks like a run about to end.
fn bar_eta(session_done: u64, eta: Duration) -> String {
    if session_done == 0 {
        "?".into()
    } else {
        indicatif::HumanDuration(eta).to_string()
    }
}

impl Progress {
    /// Start showing progress; `done` samples were finished by earlier sessions.
    pub fn new(mode: OutputMode, label: &str, total: u64, done: u64) -> Progress {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        let bar = (mode == OutputMode::Human && terminal).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} samples, ETA {left}  {msg}",
                )
                .expect("valid template")
                .with_key("left", move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&bar_eta(s.pos() - done.min(s.pos()), s.eta()));
                }),
            );
            bar.set_prefix(label.to_string());
            bar.set_position(done);
            bar.reset_eta();
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        let plain = (mode == OutputMode::Human && !terminal).then(|| PlainLines {
            label: label.to_string(),
            total,
            done,
            before: done,
            last_line: Instant::now(),
        });
        Progress {
            mode,
            bar,
            plain,
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
        let (tokens, elapsed) = (self.tokens, self.started.elapsed().as_secs_f64());
        if let Some(p) = &mut self.plain {
            p.done += 1;
            let tenth = |d: u64| d * 10 / p.total.max(1);
            let new_tenth = tenth(p.done) > tenth(p.done - 1);
            if new_tenth || p.done == p.total || p.last_line.elapsed() > Duration::from_secs(60) {
                p.last_line = Instant::now();
                eprintln!("{}", plain_line(p, tokens, elapsed));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_gives_the_share_speed_and_time_left() {
        let p = PlainLines {
            label: "run".into(),
            total: 40,
            done: 30,
            before: 20,
            last_line: Instant::now(),
        };
        // 10 samples in 100 s this session: the 10 left take another 100 s.
        let line = plain_line(&p, 5000, 100.0);
        assert_eq!(
            line,
            "run: 30/40 samples (75%), 5000 tokens, 50 tok/s, elapsed 0:01:40, ETA 0:01:40"
        );
        assert_eq!(clock(3725.0), "1:02:05");
    }

    #[test]
    fn the_bar_shows_no_time_left_before_a_sample_of_this_session_finishes() {
        assert_eq!(bar_eta(0, Duration::ZERO), "?");
        assert_eq!(bar_eta(1, Duration::from_secs(90)), "2 minutes");
    }
}
