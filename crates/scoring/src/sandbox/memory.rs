//! A memory bound for a whole program: all its processes and threads together.
//!
//! `RLIMIT_AS` bounds one process's address space, so a program that forks, starts threads or
//! lets a harness buffer its output inside the interpreter could use `processes x address_space`
//! bytes: with a handful of such programs in flight an evaluation machine runs out of memory and
//! takes the evaluator down with it. Two ways to bound the total, chosen once per sandbox:
//!
//! - **A memory cgroup per run** where the machine lets this process create one (cgroup v2 with
//!   the memory controller delegated to its cgroup, or a cgroup v1 memory hierarchy): created
//!   under this process's own cgroup before the program starts, removed after it ends. The kernel
//!   counts everything the program charges (anonymous memory, its tmpfs files, kernel memory) and
//!   stops it at the bound; the supervisor turns the OOM kill into a verdict and ends the whole
//!   namespace, so no process of the program outlives the bound.
//! - **Resident-set accounting** elsewhere: the supervisor sums the resident memory of the
//!   program's processes (the descendants of its `init`, which is made a child subreaper so
//!   orphans stay among them) every [`ACCOUNTING_PERIOD`] and kills the namespace when the total
//!   passes the bound. It reacts later (a program may overshoot by what it allocates in one
//!   period) and counts shared pages once per process, i.e. errs on the side of stopping.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::{Result, SandboxError};

/// How often resident memory is summed when no cgroup is available, and how often a cgroup's OOM
/// counter is read.
pub(crate) const ACCOUNTING_PERIOD: Duration = Duration::from_millis(20);

/// How the sandbox bounds a program's total memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryControl {
    /// A memory cgroup per run where the machine allows one, otherwise resident-set accounting
    /// (the [`IsolationReport`](crate::sandbox::IsolationReport) says which, and why).
    #[default]
    Auto,
    /// Resident-set accounting even where a cgroup is available.
    Accounting,
}

/// Which mechanism a sandbox uses, found once when it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    /// cgroup v2: run groups are made in `parent` (whose `cgroup.subtree_control` has `memory`).
    V2 { parent: PathBuf },
    /// cgroup v1 memory hierarchy: run groups are made in `parent`.
    V1 { parent: PathBuf },
    /// No usable cgroup; `reason` says why.
    Accounting { reason: String },
}

impl Backend {
    /// Finds a memory cgroup this process may create children in, and checks it by creating and
    /// removing one.
    pub(crate) fn detect(control: MemoryControl) -> Backend {
        if control == MemoryControl::Accounting {
            return Backend::Accounting {
                reason: "resident-set accounting was chosen in the sandbox configuration".into(),
            };
        }
        let (mountinfo, cgroups) = match (
            fs::read_to_string("/proc/self/mountinfo"),
            fs::read_to_string("/proc/self/cgroup"),
        ) {
            (Ok(m), Ok(c)) => (m, c),
            _ => {
                return Backend::Accounting {
                    reason: "/proc/self/mountinfo or /proc/self/cgroup is unreadable".into(),
                }
            }
        };
        let mut reasons = Vec::new();
        match own_cgroup_dir(&mountinfo, &cgroups, Version::V2) {
            Some(dir) => match delegate_v2(&dir) {
                Ok(()) => return Backend::V2 { parent: dir },
                Err(why) => reasons.push(format!("cgroup v2 at {}: {why}", dir.display())),
            },
            None => reasons.push("no cgroup v2 hierarchy".into()),
        }
        match own_cgroup_dir(&mountinfo, &cgroups, Version::V1) {
            Some(dir) => match probe_child(&dir, "memory.limit_in_bytes") {
                Ok(()) => return Backend::V1 { parent: dir },
                Err(why) => reasons.push(format!("cgroup v1 at {}: {why}", dir.display())),
            },
            None => reasons.push("no cgroup v1 memory hierarchy".into()),
        }
        Backend::Accounting {
            reason: reasons.join("; "),
        }
    }

    /// `cgroup v2`, `cgroup v1` or `accounting`, for reports.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::V2 { .. } => "cgroup v2",
            Backend::V1 { .. } => "cgroup v1",
            Backend::Accounting { .. } => "accounting",
        }
    }

    /// Starts bounding the program whose `init` is `init_pid` (not yet running the program:
    /// everything it forks afterwards is counted). `name` must be unique among runs in flight.
    pub(crate) fn start(&self, name: &str, bound: u64, init_pid: libc::pid_t) -> Result<RunMemory> {
        match self {
            Backend::Accounting { .. } => Ok(RunMemory::Accounting {
                init_pid,
                bound,
                peak: 0,
                next: Instant::now(),
            }),
            Backend::V2 { parent } | Backend::V1 { parent } => {
                let v2 = matches!(self, Backend::V2 { .. });
                let dir = parent.join(name);
                make_group(&dir)?;
                let group = RunMemory::Cgroup {
                    dir: dir.clone(),
                    v2,
                    next: Instant::now(),
                };
                let settings: &[(&str, String)] = if v2 {
                    &[
                        ("memory.max", bound.to_string()),
                        ("memory.swap.max", "0".into()),
                        // The whole program goes when one of its processes is OOM-killed.
                        ("memory.oom.group", "1".into()),
                    ]
                } else {
                    &[
                        ("memory.limit_in_bytes", bound.to_string()),
                        ("memory.memsw.limit_in_bytes", bound.to_string()),
                        ("memory.swappiness", "0".into()),
                    ]
                };
                for (file, value) in settings {
                    let required = matches!(*file, "memory.max" | "memory.limit_in_bytes");
                    match write_file(&dir.join(file), value) {
                        Ok(()) => {}
                        // Swap accounting and group kill are optional kernel features.
                        Err(_) if !required => {}
                        Err(e) => return Err(e),
                    }
                }
                write_file(&dir.join("cgroup.procs"), &init_pid.to_string())?;
                Ok(group)
            }
        }
    }
}

/// The memory bound of one run in flight.
#[derive(Debug)]
pub(crate) enum RunMemory {
    /// A cgroup of this run only, removed on drop.
    Cgroup {
        dir: PathBuf,
        v2: bool,
        next: Instant,
    },
    /// Resident-set sums of the descendants of `init_pid`.
    Accounting {
        init_pid: libc::pid_t,
        bound: u64,
        peak: u64,
        next: Instant,
    },
}

impl RunMemory {
    /// True once the program has passed its bound (the kernel OOM-killed one of its processes, or
    /// its resident total exceeds the bound). Cheap enough to call on every supervisor wake-up:
    /// it reads the counters at most once per [`ACCOUNTING_PERIOD`] unless `now` is set.
    pub(crate) fn exceeded(&mut self, now: bool) -> bool {
        let t = Instant::now();
        match self {
            RunMemory::Cgroup { dir, v2, next } => {
                if !now && t < *next {
                    return false;
                }
                *next = t + ACCOUNTING_PERIOD;
                // The bound counts as passed as soon as the group's usage reaches it, not only
                // once the kernel has OOM-killed a process: between the two the kernel reclaims
                // what it can (the interpreter's own code pages among it), which with several
                // programs at the bound at once takes seconds of thrashing for nothing.
                if *v2 {
                    let events = fs::read_to_string(dir.join("memory.events")).unwrap_or_default();
                    ["max", "oom_kill", "oom_group_kill"]
                        .iter()
                        .any(|k| counter(&events, k).is_some_and(|n| n > 0))
                } else {
                    let hits = fs::read_to_string(dir.join("memory.failcnt")).unwrap_or_default();
                    // `oom_kill` exists since Linux 4.13; `under_oom` before that.
                    let oom =
                        fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
                    hits.trim().parse::<u64>().is_ok_and(|n| n > 0)
                        || ["oom_kill", "under_oom"]
                            .iter()
                            .any(|k| counter(&oom, k).is_some_and(|n| n > 0))
                }
            }
            RunMemory::Accounting {
                init_pid,
                bound,
                peak,
                next,
            } => {
                if !now && t < *next {
                    return false;
                }
                *next = t + ACCOUNTING_PERIOD;
                let total = resident_bytes(*init_pid);
                *peak = (*peak).max(total);
                total > *bound
            }
        }
    }

    /// The most memory the program held at once, where the kernel or the accounting knows it.
    pub(crate) fn peak(&self) -> Option<u64> {
        match self {
            RunMemory::Cgroup { dir, v2, .. } => {
                let file = if *v2 {
                    "memory.peak"
                } else {
                    "memory.max_usage_in_bytes"
                };
                fs::read_to_string(dir.join(file))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
            }
            RunMemory::Accounting { peak, .. } => Some(*peak),
        }
    }
}

impl Drop for RunMemory {
    fn drop(&mut self) {
        if let RunMemory::Cgroup { dir, v2, .. } = self {
            remove_group(dir, *v2);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The directory of this process's own cgroup in the hierarchy of `version` (for v1, the one
/// with the memory controller), from `/proc/self/mountinfo` and `/proc/self/cgroup`.
fn own_cgroup_dir(mountinfo: &str, cgroups: &str, version: Version) -> Option<PathBuf> {
    let path = cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let wanted = match version {
            Version::V2 => controllers.is_empty() && l.starts_with("0:"),
            Version::V1 => controllers.split(',').any(|c| c == "memory"),
        };
        wanted.then(|| path.to_string())
    })?;
    let (root, mount_point) = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let after: Vec<&str> = right.split(' ').collect();
        let (root, mount_point) = (*fields.get(3)?, *fields.get(4)?);
        let fstype = *after.first()?;
        let options = after.get(2).copied().unwrap_or("");
        let wanted = match version {
            Version::V2 => fstype == "cgroup2",
            Version::V1 => fstype == "cgroup" && options.split(',').any(|o| o == "memory"),
        };
        wanted.then(|| (root.to_string(), mount_point.to_string()))
    })?;
    // A mount of a sub-tree (`root` other than `/`) shows paths below that root.
    let relative = path
        .strip_prefix(root.as_str())
        .filter(|_| root != "/")
        .unwrap_or(&path)
        .trim_start_matches('/');
    let dir = Path::new(&mount_point).join(relative);
    dir.is_dir().then_some(dir)
}

/// Makes sure children of `dir` get the memory controller, then checks by making one.
fn delegate_v2(dir: &Path) -> std::result::Result<(), String> {
    let controllers = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    if !controllers.split_whitespace().any(|c| c == "memory") {
        return Err("the memory controller is not available to this cgroup".into());
    }
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    if !enabled.split_whitespace().any(|c| c == "memory") {
        // Refused (EBUSY) when this cgroup holds processes itself and is not the root: the
        // "no internal processes" rule of cgroup v2. Then a run group could not be bounded.
        write_file(&dir.join("cgroup.subtree_control"), "+memory")
            .map_err(|e| format!("cannot enable the memory controller for children: {e}"))?;
    }
    probe_child(dir, "memory.max")
}

/// Creates and removes a child group of `dir`, checking that `limit_file` is writable in it.
fn probe_child(dir: &Path, limit_file: &str) -> std::result::Result<(), String> {
    let probe = dir.join(format!("reprolm-probe-{}", std::process::id()));
    make_group(&probe).map_err(|e| e.to_string())?;
    let result =
        write_file(&probe.join(limit_file), &(1u64 << 30).to_string()).map_err(|e| e.to_string());
    let _ = fs::remove_dir(&probe);
    result
}

fn make_group(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        // Left by a process that died with the same pid: empty, so it can go.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = fs::remove_dir(dir);
            fs::create_dir(dir).map_err(|source| SandboxError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(SandboxError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Kills whatever is left in the group and removes it. The program's processes die with its
/// PID namespace, but the kernel finishes that asynchronously: retry for a while.
fn remove_group(dir: &Path, v2: bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        if v2 && write_file(&dir.join("cgroup.kill"), "1").is_ok() {
            // Linux 5.14+: kills every process of the group at once.
        } else if let Ok(pids) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn write_file(path: &Path, value: &str) -> Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| SandboxError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// `key N` in a flat-keyed cgroup file.
fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Resident bytes of `pid` and all its descendants (threads share their process's memory, so
/// only processes are counted). Processes that end while being read count as zero.
pub(crate) fn resident_bytes(pid: libc::pid_t) -> u64 {
    let mut total = 0;
    let mut stack = vec![pid];
    let mut seen = 0usize;
    while let Some(p) = stack.pop() {
        seen += 1;
        if seen > 100_000 {
            break;
        }
        let proc_dir = PathBuf::from(format!("/proc/{p}"));
        if let Ok(status) = fs::read_to_string(proc_dir.join("status")) {
            total += status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024);
        }
        let Ok(tasks) = fs::read_dir(proc_dir.join("task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(children) = fs::read_to_string(task.path().join("children")) {
                stack.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<libc::pid_t>().ok()),
                );
            }
        }
    }
    total
}

/// Memory the machine can still give out (`MemAvailable` of `/proc/meminfo`), in bytes.
pub fn available_memory() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// How many programs to run at once: one per core, but no more than the machine's available
/// memory holds at the memory bound each, keeping a quarter of it (at least 1 GiB) for the
/// evaluator and everything else on the machine.
///
/// ```
/// use reprolm_scoring::sandbox::Workers;
/// let w = Workers::plan(8, Some(6 << 30), 2 << 30);
/// assert_eq!(w.count, 2);
/// assert!(w.to_string().starts_with("2 sandbox workers"), "{w}");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers {
    /// Programs run at once.
    pub count: usize,
    /// Cores of this machine (the most workers that can be busy).
    pub cores: usize,
    /// `MemAvailable` when planned, if readable.
    pub available: Option<u64>,
    /// Memory bound of one program.
    pub bound: u64,
}

impl Workers {
    /// The plan for this machine now.
    pub fn for_machine(bound: u64) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::plan(cores, available_memory(), bound)
    }

    /// The plan for `cores` cores and `available` bytes of memory.
    pub fn plan(cores: usize, available: Option<u64>, bound: u64) -> Self {
        let cores = cores.max(1);
        let by_memory = available.map(|a| {
            let usable = a.saturating_sub((a / 4).max(1 << 30));
            (usable / bound.max(1)) as usize
        });
        let count = by_memory.map_or(cores, |m| m.min(cores)).max(1);
        Workers {
            count,
            cores,
            available,
            bound,
        }
    }
}

impl std::fmt::Display for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        write!(
            f,
            "{} sandbox worker{} ({} core{}, ",
            self.count,
            if self.count == 1 { "" } else { "s" },
            self.cores,
            if self.cores == 1 { "" } else { "s" }
        )?;
        match self.available {
            Some(a) => write!(f, "{:.1} GiB of memory available", gib(a))?,
            None => write!(f, "available memory unknown")?,
        }
        write!(f, ", {:.2} GiB per program", gib(self.bound))?;
        if self.count < self.cores {
            write!(
                f,
                ": fewer than the cores, so that every program fits in memory at once"
            )?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:23 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
27 25 0:25 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
31 25 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
32 25 0:30 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu
";
    const CGROUPS: &str = "4:memory:/jobs/a\n1:cpu:/\n0::/user.slice\n";

    #[test]
    fn own_cgroup_is_found_in_either_hierarchy() {
        // Only paths that exist are returned; build the expected ones from the temp dir.
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().display().to_string();
        let info = MOUNTINFO.replace("/sys/fs/cgroup", &base);
        fs::create_dir_all(tmp.path().join("memory/jobs/a")).unwrap();
        fs::create_dir_all(tmp.path().join("unified/user.slice")).unwrap();
        assert_eq!(
            own_cgroup_dir(&info, CGROUPS, Version::V1),
            Some(tmp.path().join("memory/jobs/a"))
        );
        assert_eq!(
            own_cgroup_dir(&info, CGROUPS, Version::V2),
            Some(tmp.path().join("unified/user.slice"))
        );
        // A container that mounts only its own sub-tree shows it at the mount point.
        let sub = info.replace("0:29 / ", "0:29 /jobs/a ");
        fs::create_dir_all(tmp.path().join("memory")).unwrap();
        assert_eq!(
            own_cgroup_dir(&sub, CGROUPS, Version::V1),
            Some(tmp.path().join("memory"))
        );
        assert_eq!(own_cgroup_dir(&info, "1:cpu:/\n", Version::V1), None);
    }

    #[test]
    fn counters_are_read_by_key() {
        let events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(counter(events, "oom_kill"), Some(1));
        assert_eq!(counter(events, "max"), Some(12));
        assert_eq!(counter(events, "oom"), Some(1));
        assert_eq!(counter(events, "missing"), None);
    }

    #[test]
    fn workers_fit_the_memory() {
        let gib = 1u64 << 30;
        // 24 GiB free: 18 usable, 9 programs of 2 GiB, but only 8 cores.
        assert_eq!(Workers::plan(8, Some(24 * gib), 2 * gib).count, 8);
        // 8 GiB free: 6 usable, 3 programs.
        let w = Workers::plan(8, Some(8 * gib), 2 * gib);
        assert_eq!(w.count, 3);
        assert!(w.to_string().contains("fewer than the cores"), "{w}");
        // Never zero, and unknown memory falls back to the cores.
        assert_eq!(Workers::plan(8, Some(gib), 2 * gib).count, 1);
        assert_eq!(Workers::plan(4, None, 2 * gib).count, 4);
        assert_eq!(Workers::plan(0, None, 2 * gib).count, 1);
    }

    #[test]
    fn resident_memory_of_this_process_is_counted() {
        let me = resident_bytes(std::process::id() as libc::pid_t);
        assert!(me > 1 << 20, "{me}");
        assert!(available_memory().is_some_and(|m| m > 0));
    }
}
