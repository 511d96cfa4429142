//! What a sandbox may use: resource limits, interpreter, uid range and isolation policy.

use std::path::PathBuf;
use std::time::Duration;

pub use super::memory::MemoryControl;

/// Resource limits for one program run.
///
/// Defaults follow LiveCodeBench where it has a value (6 s per test) and are otherwise chosen so
/// that a correct competitive-programming solution never meets them while a hostile one is
/// stopped within seconds: the reference sets no memory limit at all, which on a shared machine
/// lets one memory bomb take the evaluation down. Judges of the contests the problems come from
/// allow 256 MB to 1 GB; the default total of 2 GiB leaves room for the interpreter and harness.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Wall-clock time after which the whole program (every process it made) is killed.
    pub wall_time: Duration,
    /// `RLIMIT_CPU`, rounded up to whole seconds. Catches busy loops even if the wall clock
    /// supervisor were delayed.
    pub cpu_time: Duration,
    /// Bytes of memory the whole program (all its processes and threads, and the files it keeps
    /// in its tmpfs where a cgroup counts them) may hold at once; past it the program is stopped
    /// with a [`memory limit`](crate::sandbox::RunOutcome::memory_limited). Enforced by a memory
    /// cgroup per run, or by resident-set accounting where none is available (see
    /// [`MemoryControl`](crate::sandbox::MemoryControl)).
    pub memory: u64,
    /// `RLIMIT_AS` in bytes: virtual memory per process. A second line behind
    /// [`memory`](Self::memory): a single huge allocation fails at once (`MemoryError`) instead of
    /// being faulted in up to the bound.
    pub address_space: u64,
    /// `RLIMIT_NPROC`: processes and threads of the sandbox uid (binds because it is not root).
    pub processes: u64,
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
    /// `RLIMIT_FSIZE` in bytes: largest file the program may write.
    pub file_size: u64,
    /// `RLIMIT_STACK` in bytes. Set explicitly so deep recursion behaves the same on every host.
    pub stack: u64,
    /// Bytes of stdout (and separately of stderr) after which the run is stopped as
    /// [`output limit`](crate::sandbox::RunOutcome::output_limited).
    pub output: usize,
    /// Size of each private tmpfs (`/work`, `/tmp`, `/dev/shm`) in bytes.
    pub scratch: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall_time: Duration::from_secs(6),
            cpu_time: Duration::from_secs(7),
            memory: 2 << 30,
            address_space: 4 << 30,
            processes: 32,
            open_files: 256,
            file_size: 16 << 20,
            stack: 8 << 20,
            output: 16 << 20,
            scratch: 64 << 20,
        }
    }
}

/// Whether a run may proceed when the kernel refuses part of the isolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationPolicy {
    /// Refuse to run unless PID, network, mount and IPC namespaces and the uid drop all work.
    #[default]
    Required,
    /// Run with whatever works and say what is missing in the
    /// [`IsolationReport`](crate::sandbox::IsolationReport), so the run manifest can carry the
    /// warning.
    BestEffort,
}

/// Everything a [`Sandbox`](crate::sandbox::Sandbox) needs to know before its first run.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Python interpreter: a name looked up on `PATH` or a path. Its real location is resolved
    /// once (pyenv shims are scripts that would not work inside the sandbox).
    pub python: String,
    /// Default limits for each run.
    pub limits: Limits,
    /// First uid/gid used for sandboxed programs. Each concurrent run takes its own uid
    /// `uid_base + slot`, so `RLIMIT_NPROC` (counted per uid) of one run never starves another.
    pub uid_base: u32,
    /// Number of distinct uids, i.e. the most runs that may be in flight at once.
    pub uid_slots: u32,
    /// Host directories made visible read-only inside the sandbox, besides the interpreter's
    /// prefix. Missing ones are skipped.
    pub read_only_paths: Vec<PathBuf>,
    /// What to do when isolation is unavailable.
    pub isolation: IsolationPolicy,
    /// `PYTHONHASHSEED` for the program. LiveCodeBench leaves hashing random, which makes the
    /// order of printed sets vary between runs; a fixed seed keeps scores reproducible.
    pub python_hash_seed: u32,
    /// Host directory under which per-run scratch directories are created (and removed).
    pub scratch_root: PathBuf,
    /// How [`Limits::memory`] is enforced.
    pub memory_control: MemoryControl,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        // Spread processes over the uid space by pid so two evaluations on one machine rarely
        // share uids (sharing would only couple their RLIMIT_NPROC, not break isolation).
        let pid = std::process::id();
        SandboxConfig {
            python: "python3".to_string(),
            limits: Limits::default(),
            uid_base: 1_000_000 + (pid % 4096) * 256,
            uid_slots: 256,
            read_only_paths: [
                "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
            isolation: IsolationPolicy::Required,
            python_hash_seed: 0,
            scratch_root: std::env::temp_dir(),
            memory_control: MemoryControl::Auto,
        }
    }
}
