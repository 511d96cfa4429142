//! Options that change what a task loads or how it prompts: data location, seed, per-task settings.
//!
//! Per-task settings are a string map (`key=value` on the command line) rather than one struct with
//! every task's fields, so a plugin task can take its own settings without changes here. Each task
//! checks the keys it is given against the ones it accepts, so a typo is an error, not a silent
//! default.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::data::DataSource;
use crate::error::{Error, Result};

/// The run seed the reference implementation uses; GPQA's choice shuffle derives from it.
pub const DEFAULT_SEED: u64 = 42;

/// One setting a task accepts (`--task-param KEY=VALUE`), as `reprolm tasks NAME` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TaskOption {
    /// The key.
    pub key: &'static str,
    /// What it does and its default.
    pub help: &'static str,
}

impl TaskOption {
    /// The keys of `options`, for [`TaskOptions::params_for`].
    ///
    /// ```
    /// use reprolm_tasks::TaskOption;
    /// const OPTIONS: [TaskOption; 1] = [TaskOption { key: "n", help: "problems" }];
    /// assert_eq!(TaskOption::keys(&OPTIONS), vec!["n"]);
    /// ```
    pub fn keys(options: &[TaskOption]) -> Vec<&'static str> {
        options.iter().map(|o| o.key).collect()
    }
}

/// Options for building and loading a task.
///
/// ```
/// use reprolm_tasks::TaskOptions;
/// let opts = TaskOptions::default().with_param("difficulty", "easy").with_seed(7);
/// assert_eq!(opts.params["difficulty"], "easy");
/// assert_eq!(opts.seed, 7);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOptions {
    /// Data to read instead of the task's default source.
    pub data: Option<DataSource>,
    /// Seed for anything a task randomises at load time (GPQA's choice order, arith's problems).
    pub seed: u64,
    /// Task-specific settings, e.g. `difficulty=hard`, `release=release_v2`, `password=...`.
    pub params: BTreeMap<String, String>,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            data: None,
            seed: DEFAULT_SEED,
            params: BTreeMap::new(),
        }
    }
}

impl TaskOptions {
    /// Reads data from `source` instead of the default.
    pub fn with_data(mut self, source: DataSource) -> Self {
        self.data = Some(source);
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets one task-specific setting.
    pub fn with_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// Adds a `key=value` setting as typed on a command line.
    ///
    /// ```
    /// let mut o = reprolm_tasks::TaskOptions::default();
    /// o.set_param_str("release=release_v2").unwrap();
    /// assert_eq!(o.params["release"], "release_v2");
    /// assert!(o.set_param_str("release").is_err());
    /// ```
    pub fn set_param_str(&mut self, key_value: &str) -> Result<(), String> {
        let (k, v) = key_value
            .split_once('=')
            .ok_or_else(|| format!("expected KEY=VALUE, got `{key_value}`"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("empty key in `{key_value}`"));
        }
        self.params.insert(k.to_string(), v.trim().to_string());
        Ok(())
    }

    /// The settings for `task`, refusing keys it does not accept.
    ///
    /// Public so plugin tasks validate their settings the same way the built-ins do.
    ///
    /// ```
    /// let o = reprolm_tasks::TaskOptions::default().with_param("n", "5");
    /// let p = o.params_for("arith", &["n"]).unwrap();
    /// assert_eq!(p.parse::<usize>("n").unwrap(), Some(5));
    /// assert!(o.params_for("math500", &[]).is_err());
    /// ```
    pub fn params_for<'a>(&'a self, task: &'a str, accepted: &[&str]) -> Result<Params<'a>> {
        for key in self.params.keys() {
            if !accepted.contains(&key.as_str()) {
                return Err(Error::UnknownOption {
                    task: task.to_string(),
                    key: key.clone(),
                    accepted: if accepted.is_empty() {
                        "(none)".to_string()
                    } else {
                        accepted.join(", ")
                    },
                });
            }
        }
        Ok(Params {
            task,
            map: &self.params,
        })
    }
}

/// A task's validated settings, with typed access.
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    task: &'a str,
    map: &'a BTreeMap<String, String>,
}

impl Params<'_> {
    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// The value of `key` parsed as `T`; an unparsable value is an error naming task, key and value.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|e: T::Err| self.bad(key, v, e.to_string())),
        }
    }

    /// A `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`) setting.
    pub fn flag(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(Some(true)),
                "false" | "no" | "off" | "0" => Ok(Some(false)),
                _ => Err(self.bad(key, v, "expected true or false".into())),
            },
        }
    }

    /// A size in bytes: a number with an optional unit, `KiB`/`MiB`/`GiB` (or `K`/`M`/`G`,
    /// binary) or `kB`/`MB`/`GB` (decimal), e.g. `2GiB`, `512M`, `1500000000`.
    pub fn bytes(&self, key: &str) -> Result<Option<u64>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let t = v.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = (&t[..split], t[split..].trim());
        let scale: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            _ => {
                return Err(self.bad(
                    key,
                    v,
                    format!("unknown unit `{unit}` (use KiB, MiB, GiB, kB, MB or GB)"),
                ))
            }
        };
        match number.parse::<f64>() {
            Ok(n) if n > 0.0 && (n * scale as f64) < u64::MAX as f64 => {
                Ok(Some((n * scale as f64).round() as u64))
            }
            _ => Err(self.bad(key, v, "expected a positive size such as 2GiB".into())),
        }
    }

    /// The error for a refused value of `key`.
    pub fn bad(&self, key: &str, value: &str, reason: String) -> Error {
        Error::BadOption {
            task: self.task.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_binary_and_decimal_units() {
        let size = |v: &str| {
            let opts = TaskOptions::default().with_param("memory_limit", v);
            let params = opts.params_for("t", &["memory_limit"]).unwrap();
            params.bytes("memory_limit").map_err(|e| e.to_string())
        };
        assert_eq!(size("2GiB"), Ok(Some(2 << 30)));
        assert_eq!(size("512M"), Ok(Some(512 << 20)));
        assert_eq!(size("1.5 GB"), Ok(Some(1_500_000_000)));
        assert_eq!(size("4096"), Ok(Some(4096)));
        for bad in ["lots", "2TiB", "0", "-1G", ""] {
            let e = size(bad).unwrap_err();
            assert!(e.contains("memory_limit") && e.contains(bad), "{bad}: {e}");
        }
    }
}
