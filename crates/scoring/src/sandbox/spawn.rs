//! Starting one untrusted process in its own namespaces and supervising it to the end.
//!
//! Process tree of one run:
//!
//! ```text
//! caller thread ──clone(NEWPID|NEWNET|NEWNS|NEWIPC|NEWUTS)──> init (pid 1, root, no exec)
//!                                                              └─fork─> program (uid N, exec python)
//! ```
//!
//! `init` builds a fresh root (tmpfs with read-only binds of the host's system directories and
//! the interpreter, private `/tmp`, `/work`, `/dev/shm`, `/proc`), pivots into it, forks the
//! program, waits for it and exits. When a PID namespace's init exits, the kernel kills every
//! process left in it, including children that `setsid()`ed or double-forked away, and a
//! `kill(-1)` from inside only reaches the namespace. The supervisor kills `init` on timeout
//! or output overflow, which therefore kills everything. The program itself runs as an
//! unprivileged, per-run uid so `RLIMIT_NPROC` binds (it does not bind root).
//!
//! A mount namespace was chosen over Landlock: it works on every kernel that has namespaces
//! (Landlock needs 5.13+ *and* the LSM enabled at boot, which is not visible here), it hides the
//! host's files instead of only denying writes (a program cannot read `$HOME` either), and it
//! gives each run a private `/tmp` and `/proc`.
//!
//! Between `clone` and `execve` the children of this (multi-threaded) process may only make
//! async-signal-safe calls: everything they need (paths, argv, envp) is prepared as C strings
//! beforehand and the child code calls `libc` functions only, never allocates, never calls
//! glibc's `fork` or its set*id wrappers (both touch state of threads that do not exist there).

use std::collections::BTreeSet;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::config::{IsolationPolicy, Limits, SandboxConfig};
use super::error::{Result, SandboxError};
use super::memory::{Backend, RunMemory, ACCOUNTING_PERIOD};

/// Which isolation layers a [`Sandbox`] actually uses on this machine.
///
/// Filled in by probing at [`Sandbox::new`]; a run manifest should copy
/// [`warnings`](IsolationReport::warnings) so that a result obtained without (say) network
/// isolation says so.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IsolationReport {
    /// New PID namespace: timeout kills every descendant; `kill(-1)` stays inside.
    pub pid_namespace: bool,
    /// New network namespace (only a downed loopback): no network at all.
    pub network_namespace: bool,
    /// New mount namespace with a private root: host files invisible or read-only, private
    /// `/tmp`, scratch directory on a size-limited tmpfs.
    pub mount_namespace: bool,
    /// New IPC and UTS namespaces.
    pub ipc_namespace: bool,
    /// The program runs as an unprivileged per-run uid (so `RLIMIT_NPROC` binds).
    pub unprivileged_uid: bool,
    /// Resource limits (address space, CPU, processes, files, file size, stack, no core).
    pub rlimits: bool,
    /// How the program's total memory ([`Limits::memory`]) is bounded: `cgroup v2` or
    /// `cgroup v1` (a memory cgroup per run), or `accounting` (the supervisor sums the
    /// program's resident memory, where no cgroup can be made; a warning says why).
    #[serde(default)]
    pub memory_bound: String,
    /// One line per missing layer, for the run manifest.
    pub warnings: Vec<String>,
}

impl IsolationReport {
    /// True when every layer is active.
    pub fn is_complete(&self) -> bool {
        self.pid_namespace
            && self.network_namespace
            && self.mount_namespace
            && self.ipc_namespace
            && self.unprivileged_uid
            && self.rlimits
    }
}

/// One program to run: a script plus files, stdin and limits.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// Files placed, read-only, in the program's input directory (`/input` inside the sandbox).
    pub files: Vec<(String, Vec<u8>)>,
    /// Which of `files` the interpreter runs.
    pub script: String,
    /// Arguments after the script.
    pub args: Vec<String>,
    /// Bytes fed to stdin (then closed).
    pub stdin: Vec<u8>,
    /// Limits for this run; `None` takes the sandbox's defaults.
    pub limits: Option<Limits>,
    /// How many times the program may restart its wall clock by writing a byte to fd 3
    /// ([`CLOCK_FD`]); each restart grants a fresh `wall_time`. With 0 (the default) fd 3 is not
    /// open. A harness that times steps of one process separately (loading a solution, then
    /// calling it, each under the per-test limit as the reference does) marks each step, so the
    /// limit is enforced from outside on each step, whatever the program does inside.
    pub clock_restarts: u32,
}

/// The file descriptor on which a program with [`RunRequest::clock_restarts`] marks the start of
/// a newly timed step.
pub const CLOCK_FD: i32 = 3;

impl RunRequest {
    /// A run of `source` as `main.py` with the given stdin.
    pub fn script(source: impl Into<Vec<u8>>, stdin: impl Into<Vec<u8>>) -> Self {
        RunRequest {
            files: vec![("main.py".to_string(), source.into())],
            script: "main.py".to_string(),
            args: Vec::new(),
            stdin: stdin.into(),
            limits: None,
            clock_restarts: 0,
        }
    }
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal (including the supervisor's SIGKILL).
    Signal(i32),
    /// The namespace was killed before the program's status could be reported.
    Killed,
}

/// What happened in one run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Exit code or signal.
    pub exit: Exit,
    /// Captured stdout, at most `limits.output` bytes; of a run stopped for its output only the
    /// first [`STDOUT_IN_MEMORY`] bytes are kept.
    pub stdout: Vec<u8>,
    /// The last 64 KiB of stderr.
    pub stderr_tail: Vec<u8>,
    /// The wall-clock limit expired and the program was killed.
    pub timed_out: bool,
    /// stdout or stderr exceeded `limits.output` and the program was killed.
    pub output_limited: bool,
    /// The program's processes together passed `limits.memory` and were killed.
    pub memory_limited: bool,
    /// The most memory the program held at once, in bytes, where the memory bound measures it
    /// (a cgroup's peak, or the largest resident total the accounting saw).
    pub memory_peak: Option<u64>,
    /// Wall-clock time from the program's fork to the end of supervision.
    pub wall: Duration,
    /// Time spent creating namespaces and mounts before the program was forked.
    pub setup: Duration,
}

const STDERR_TAIL: usize = 64 << 10;
/// Bytes of a program's stdout held in the supervisor's memory; the rest of an output that may
/// still be graded goes to a file in the run's scratch directory until the program ends, so that
/// many programs flooding their output at once cannot exhaust the evaluator's memory.
pub const STDOUT_IN_MEMORY: usize = 1 << 20;

/// Uids of runs in flight in this process.
static UIDS_IN_USE: (Mutex<BTreeSet<u32>>, Condvar) = (Mutex::new(BTreeSet::new()), Condvar::new());
const INPUT_DIR: &str = "/input";
const WORK_DIR: &str = "/work";

/// Interpreter facts resolved once on the host.
#[derive(Debug, Clone)]
struct PythonInfo {
    executable: PathBuf,
    prefixes: Vec<PathBuf>,
}

/// A reusable, thread-safe launcher of isolated Python programs.
///
/// ```no_run
/// use reprolm_scoring::sandbox::{RunRequest, Sandbox, SandboxConfig};
/// let sandbox = Sandbox::new(SandboxConfig::default())?;
/// let out = sandbox.run(&RunRequest::script("print(int(input()) * 2)", "21\n"))?;
/// assert_eq!(out.stdout, b"42\n");
/// # Ok::<(), reprolm_scoring::sandbox::SandboxError>(())
/// ```
#[derive(Debug)]
pub struct Sandbox {
    config: SandboxConfig,
    python: PythonInfo,
    report: IsolationReport,
    layers: Layers,
    memory: Backend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layers {
    namespaces: bool,
    drop_uid: bool,
}

impl Sandbox {
    /// Resolves the interpreter, probes which isolation works, and checks a trivial run.
    pub fn new(config: SandboxConfig) -> Result<Self> {
        if config.uid_slots == 0 {
            return Err(SandboxError::Config {
                field: "uid_slots",
                reason: "must be at least 1".into(),
            });
        }
        if config.uid_base == 0 || config.uid_base.checked_add(config.uid_slots).is_none() {
            return Err(SandboxError::Config {
                field: "uid_base",
                reason: format!(
                    "{} + {} slots must be a non-root uid range",
                    config.uid_base, config.uid_slots
                ),
            });
        }
        let python = resolve_python(&config.python)?;
        let is_root = unsafe { libc::geteuid() } == 0;
        let full = Layers {
            namespaces: true,
            drop_uid: true,
        };
        let memory = Backend::detect(config.memory_control);
        let mut sandbox = Sandbox {
            report: report_for(full, &[], &memory),
            layers: full,
            python,
            config,
            memory,
        };
        let probe = RunRequest::script("import os\nprint(os.getuid())\n", "");
        let first_failure = if is_root {
            match sandbox.run(&probe) {
                Ok(out) if out.exit == Exit::Code(0) => return Ok(sandbox),
                Ok(out) => format!(
                    "probe exited with {:?}: {}",
                    out.exit,
                    String::from_utf8_lossy(&out.stderr_tail)
                ),
                Err(e) => e.to_string(),
            }
        } else {
            "not running as root (namespaces and the uid drop need CAP_SYS_ADMIN and CAP_SETUID)"
                .to_string()
        };
        if sandbox.config.isolation == IsolationPolicy::Required {
            return Err(SandboxError::IsolationUnavailable {
                layer: "pid+net+mount+ipc namespaces and uid drop",
                reason: first_failure,
            });
        }
        let degraded = Layers {
            namespaces: false,
            drop_uid: is_root,
        };
        sandbox.layers = degraded;
        sandbox.report = report_for(degraded, &[first_failure], &sandbox.memory);
        let uid = sandbox.config.uid_base;
        let out = sandbox
            .run(&probe)
            .map_err(|e| SandboxError::IsolationUnavailable {
                layer: "rlimits only",
                reason: format!(
                "{e} (without a mount namespace the interpreter must be reachable by uid {uid}: \
                 one under /root usually is not; configure another `python`)"
            ),
            })?;
        if out.exit != Exit::Code(0) {
            return Err(SandboxError::IsolationUnavailable {
                layer: "rlimits only",
                reason: format!(
                    "probe exited with {:?}: {}",
                    out.exit,
                    String::from_utf8_lossy(&out.stderr_tail)
                ),
            });
        }
        Ok(sandbox)
    }

    /// Which isolation layers are active.
    pub fn isolation(&self) -> &IsolationReport {
        &self.report
    }

    /// The interpreter's real path on the host.
    pub fn python(&self) -> &Path {
        &self.python.executable
    }

    /// The configuration this sandbox was built with.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Runs one program to completion, timeout or output overflow.
    ///
    /// Blocks the calling thread (which must stay alive for the run: the child is bound to it by
    /// `PR_SET_PDEATHSIG`). Safe to call from many threads at once; at most `uid_slots` runs
    /// proceed concurrently.
    pub fn run(&self, req: &RunRequest) -> Result<RunOutcome> {
        let limits = req.limits.as_ref().unwrap_or(&self.config.limits);
        let slot = self.acquire_slot();
        let result = self.run_in_slot(req, limits, slot);
        self.release_slot(slot);
        result
    }

    /// Takes a uid no other run of this process uses (sandboxes with overlapping uid ranges
    /// share the registry), waiting while all of this sandbox's uids are busy.
    fn acquire_slot(&self) -> u32 {
        let (lock, freed) = &UIDS_IN_USE;
        let mut in_use = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let base = self.config.uid_base;
            if let Some(slot) = (0..self.config.uid_slots).find(|s| !in_use.contains(&(base + s))) {
                in_use.insert(base + slot);
                return slot;
            }
            in_use = freed.wait(in_use).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn release_slot(&self, slot: u32) {
        let (lock, freed) = &UIDS_IN_USE;
        lock.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(self.config.uid_base + slot));
        freed.notify_all();
    }

    fn run_in_slot(&self, req: &RunRequest, limits: &Limits, slot: u32) -> Result<RunOutcome> {
        let uid = self.config.uid_base + slot;
        let scratch = tempfile::Builder::new()
            .prefix("reprolm-sandbox-")
            .tempdir_in(&self.config.scratch_root)
            .map_err(|source| SandboxError::Io {
                path: self.config.scratch_root.clone(),
                source,
            })?;
        let host = scratch.path();
        let input = host.join("input");
        mkdir(&input, 0o755)?;
        for (name, bytes) in &req.files {
            if name.contains('/') || name == ".." || name.is_empty() {
                return Err(SandboxError::Config {
                    field: "files",
                    reason: format!("bad file name {name:?}"),
                });
            }
            let path = input.join(name);
            std::fs::write(&path, bytes).map_err(|source| SandboxError::Io {
                path: path.clone(),
                source,
            })?;
            set_mode(&path, 0o644)?;
        }
        let (input_dir, work_dir) = if self.layers.namespaces {
            mkdir(&host.join("root"), 0o755)?;
            (PathBuf::from(INPUT_DIR), PathBuf::from(WORK_DIR))
        } else {
            // Without a mount namespace the program sees host paths; let the uid reach them.
            set_mode(host, 0o711)?;
            let work = host.join("work");
            mkdir(&work, 0o700)?;
            chown(&work, uid)?;
            (input, work)
        };
        let plan_strings = self.plan_strings(req, limits, uid, host, &input_dir, &work_dir)?;
        let bound = Bound {
            backend: &self.memory,
            name: format!("reprolm-{}-{uid}", std::process::id()),
            spill: host.join("stdout.spill"),
        };
        let outcome = supervise(&plan_strings, req, limits, self.layers, &bound);
        if !self.layers.namespaces && self.layers.drop_uid {
            kill_uid(uid);
        }
        drop(scratch);
        outcome
    }

    fn plan_strings(
        &self,
        req: &RunRequest,
        limits: &Limits,
        uid: u32,
        host: &Path,
        input_dir: &Path,
        work_dir: &Path,
    ) -> Result<PlanStrings> {
        let exe = cstr(self.python.executable.as_os_str())?;
        let mut argv = vec![
            exe.clone(),
            cstr("-s")?,
            cstr("-B")?,
            cstr(input_dir.join(&req.script).as_os_str())?,
        ];
        for a in &req.args {
            argv.push(cstr(a.as_str())?);
        }
        let home = work_dir.to_string_lossy();
        let tmp = if self.layers.namespaces {
            "/tmp".to_string()
        } else {
            home.to_string()
        };
        let envp = [
            "PATH=/usr/local/bin:/usr/bin:/bin".to_string(),
            format!("HOME={home}"),
            format!("TMPDIR={tmp}"),
            "LANG=C.UTF-8".to_string(),
            "LC_ALL=C.UTF-8".to_string(),
            format!("PYTHONHASHSEED={}", self.config.python_hash_seed),
            "PYTHONDONTWRITEBYTECODE=1".to_string(),
            "OMP_NUM_THREADS=1".to_string(),
            "OPENBLAS_NUM_THREADS=1".to_string(),
            "MKL_NUM_THREADS=1".to_string(),
        ]
        .iter()
        .map(|s| cstr(s.as_str()))
        .collect::<Result<Vec<_>>>()?;
        let mounts = if self.layers.namespaces {
            Some(self.mount_plan(host, limits, uid)?)
        } else {
            None
        };
        let mut step_names = Vec::new();
        if let Some(m) = &mounts {
            step_names.extend(m.ops.iter().map(|op| op.describe()));
        }
        Ok(PlanStrings {
            exe,
            argv,
            envp,
            workdir: cstr(work_dir.as_os_str())?,
            mounts,
            uid,
            rlimits: rlimits(limits),
            step_names,
        })
    }

    fn mount_plan(&self, host: &Path, limits: &Limits, uid: u32) -> Result<MountPlan> {
        let root = host.join("root");
        let mut ops = Vec::new();
        let mut made: Vec<PathBuf> = Vec::new();
        let tmpfs = |mode: &str| format!("size={},nr_inodes=4096,mode={mode}", limits.scratch);
        ops.push(MountOp::Tmpfs {
            dst: cpath(&root)?,
            data: cstr("size=4m,nr_inodes=4096,mode=755")?,
        });
        let mut ro: Vec<PathBuf> = self.config.read_only_paths.clone();
        ro.extend(self.python.prefixes.iter().cloned());
        ro.sort();
        ro.dedup();
        // Skip paths already covered by an earlier bind (e.g. a prefix under /usr).
        let mut bound: Vec<PathBuf> = Vec::new();
        for p in ro {
            if bound.iter().any(|b| p.starts_with(b)) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let inside = root.join(p.strip_prefix("/").unwrap_or(&p));
            push_mkdirs(&mut ops, &mut made, &root, inside.parent().unwrap_or(&root))?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).map_err(|source| SandboxError::Io {
                    path: p.clone(),
                    source,
                })?;
                ops.push(MountOp::Symlink {
                    target: cpath(&target)?,
                    link: cpath(&inside)?,
                });
            } else if meta.is_dir() {
                push_mkdirs(&mut ops, &mut made, &root, &inside)?;
                ops.push(MountOp::Bind {
                    src: cpath(&p)?,
                    dst: cpath(&inside)?,
                });
                ops.push(MountOp::ReadOnly {
                    dst: cpath(&inside)?,
                });
                bound.push(p);
            }
        }
        let input = root.join("input");
        push_mkdirs(&mut ops, &mut made, &root, &input)?;
        ops.push(MountOp::Bind {
            src: cpath(&host.join("input"))?,
            dst: cpath(&input)?,
        });
        ops.push(MountOp::ReadOnly {
            dst: cpath(&input)?,
        });
        for (dir, mode) in [("work", "700"), ("tmp", "1777")] {
            let d = root.join(dir);
            push_mkdirs(&mut ops, &mut made, &root, &d)?;
            ops.push(MountOp::Tmpfs {
                dst: cpath(&d)?,
                data: cstr(tmpfs(mode).as_str())?,
            });
        }
        ops.push(MountOp::Chown {
            path: cpath(&root.join("work"))?,
            uid,
        });
        let dev = root.join("dev");
        push_mkdirs(&mut ops, &mut made, &root, &dev)?;
        for node in ["null", "zero", "full", "random", "urandom"] {
            let src = Path::new("/dev").join(node);
            if src.exists() {
                let dst = dev.join(node);
                ops.push(MountOp::Touch { path: cpath(&dst)? });
                ops.push(MountOp::Bind {
                    src: cpath(&src)?,
                    dst: cpath(&dst)?,
                });
            }
        }
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            ops.push(MountOp::Symlink {
                target: cstr(target)?,
                link: cpath(&dev.join(name))?,
            });
        }
        let shm = dev.join("shm");
        push_mkdirs(&mut ops, &mut made, &root, &shm)?;
        ops.push(MountOp::Tmpfs {
            dst: cpath(&shm)?,
            data: cstr(tmpfs("1777").as_str())?,
        });
        let proc_dir = root.join("proc");
        push_mkdirs(&mut ops, &mut made, &root, &proc_dir)?;
        ops.push(MountOp::Proc {
            dst: cpath(&proc_dir)?,
        });
        let old = root.join(".oldroot");
        push_mkdirs(&mut ops, &mut made, &root, &old)?;
        Ok(MountPlan {
            ops,
            new_root: cpath(&root)?,
            put_old: cpath(&old)?,
            old_inside: cstr("/.oldroot")?,
            slash: cstr("/")?,
        })
    }
}

fn report_for(layers: Layers, reasons: &[String], memory: &Backend) -> IsolationReport {
    let ns = layers.namespaces;
    let mut warnings = Vec::new();
    if !ns {
        let why = reasons
            .first()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        warnings.push(format!(
            "network is NOT isolated: no network namespace{why}"
        ));
        warnings
            .push("filesystem is NOT isolated: no mount namespace; only file permissions protect host files".into());
        warnings.push(
            "no PID namespace: leftover processes are killed by process group and uid scan".into(),
        );
    }
    if !layers.drop_uid {
        warnings.push("program runs as the caller's uid: RLIMIT_NPROC does not bind root, kill(-1) reaches the caller's processes".into());
    }
    if let Backend::Accounting { reason } = memory {
        warnings.push(format!(
            "memory is bounded by summing the program's resident memory every {} ms, not by a \
             cgroup ({reason}): a program may overshoot its bound by what it allocates in that time",
            ACCOUNTING_PERIOD.as_millis()
        ));
    }
    IsolationReport {
        pid_namespace: ns,
        network_namespace: ns,
        mount_namespace: ns,
        ipc_namespace: ns,
        unprivileged_uid: layers.drop_uid,
        rlimits: true,
        memory_bound: memory.name().to_string(),
        warnings,
    }
}

fn resolve_python(name: &str) -> Result<PythonInfo> {
    let err = |reason: String| SandboxError::Interpreter {
        interpreter: name.to_string(),
        reason,
    };
    let out = std::process::Command::new(name)
        .args(["-c", "import sys,os\nfor p in (sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix): print(os.path.realpath(p))"])
        .env_remove("PYTHONPATH")
        .output()
        .map_err(|e| err(format!("cannot start: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "query failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<PathBuf> = text.lines().map(PathBuf::from).collect();
    if lines.len() != 5 || !lines.iter().all(|p| p.is_absolute()) {
        return Err(err(format!(
            "unexpected answer to the path query: {text:?}"
        )));
    }
    let mut prefixes: Vec<PathBuf> = lines[1..].to_vec();
    if let Some(dir) = lines[0].parent() {
        prefixes.push(dir.to_path_buf());
    }
    prefixes.sort();
    prefixes.dedup();
    Ok(PythonInfo {
        executable: lines[0].clone(),
        prefixes,
    })
}

fn push_mkdirs(
    ops: &mut Vec<MountOp>,
    made: &mut Vec<PathBuf>,
    root: &Path,
    dir: &Path,
) -> Result<()> {
    let mut chain = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d == root || !d.starts_with(root) {
            break;
        }
        chain.push(d.to_path_buf());
        cur = d.parent();
    }
    for d in chain.into_iter().rev() {
        if !made.contains(&d) {
            ops.push(MountOp::Mkdir { path: cpath(&d)? });
            made.push(d);
        }
    }
    Ok(())
}

fn rlimits(l: &Limits) -> Vec<(libc::__rlimit_resource_t, libc::rlim_t)> {
    let cpu = l.cpu_time.as_secs() + u64::from(l.cpu_time.subsec_nanos() > 0);
    vec![
        (libc::RLIMIT_AS, l.address_space),
        (libc::RLIMIT_CPU, cpu.max(1)),
        (libc::RLIMIT_NPROC, l.processes),
        (libc::RLIMIT_NOFILE, l.open_files),
        (libc::RLIMIT_FSIZE, l.file_size),
        (libc::RLIMIT_STACK, l.stack),
        (libc::RLIMIT_CORE, 0),
        (libc::RLIMIT_MEMLOCK, 0),
        (libc::RLIMIT_MSGQUEUE, 0),
    ]
}

fn cstr(s: impl AsRef<OsStr>) -> Result<CString> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| SandboxError::Config {
        field: "path or argument",
        reason: format!("contains a NUL byte: {:?}", s.as_ref()),
    })
}

fn cpath(p: &Path) -> Result<CString> {
    cstr(p.as_os_str())
}

fn mkdir(p: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir(p).map_err(|source| SandboxError::Io {
        path: p.to_path_buf(),
        source,
    })?;
    set_mode(p, mode)
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        SandboxError::Io {
            path: p.to_path_buf(),
            source,
        }
    })
}

fn chown(p: &Path, uid: u32) -> Result<()> {
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).map_err(|source| SandboxError::Io {
        path: p.to_path_buf(),
        source,
    })
}

/// Mount steps executed by `init`, in order, on paths below the new root (host view).
#[derive(Debug)]
enum MountOp {
    Mkdir { path: CString },
    Touch { path: CString },
    Symlink { target: CString, link: CString },
    Bind { src: CString, dst: CString },
    ReadOnly { dst: CString },
    Tmpfs { dst: CString, data: CString },
    Proc { dst: CString },
    Chown { path: CString, uid: u32 },
}

impl MountOp {
    fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            MountOp::Mkdir { path } => format!("mkdir {}", s(path)),
            MountOp::Touch { path } => format!("create {}", s(path)),
            MountOp::Symlink { target, link } => format!("symlink {} -> {}", s(link), s(target)),
            MountOp::Bind { src, dst } => format!("bind {} on {}", s(src), s(dst)),
            MountOp::ReadOnly { dst } => format!("remount read-only {}", s(dst)),
            MountOp::Tmpfs { dst, data } => format!("mount tmpfs ({}) on {}", s(data), s(dst)),
            MountOp::Proc { dst } => format!("mount proc on {}", s(dst)),
            MountOp::Chown { path, uid } => format!("chown {uid} {}", s(path)),
        }
    }
}

#[derive(Debug)]
struct MountPlan {
    ops: Vec<MountOp>,
    new_root: CString,
    put_old: CString,
    old_inside: CString,
    slash: CString,
}

/// Everything the children need, owned by the supervisor for the duration of the run.
#[derive(Debug)]
struct PlanStrings {
    exe: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    workdir: CString,
    mounts: Option<MountPlan>,
    uid: u32,
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlim_t)>,
    step_names: Vec<String>,
}

// Child -> supervisor messages on the report pipe: [kind, a, b] as native-endian i32.
const MSG_SETUP_FAILED: i32 = 1;
const MSG_STATUS: i32 = 2;
const MSG_STARTED: i32 = 3;
/// Longest time namespace and mount setup may take before the run counts as a sandbox failure.
/// Setup time is not charged to the program: its wall clock starts when it has been forked.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
// Setup step ids beyond the mount ops (which use their index).
const STEP_PRIVATE: i32 = 100_000;
const STEP_PIVOT: i32 = 100_001;
const STEP_CHDIR_ROOT: i32 = 100_002;
const STEP_UMOUNT_OLD: i32 = 100_003;
const STEP_RO_ROOT: i32 = 100_004;
const STEP_FORK: i32 = 100_005;
const STEP_FDS: i32 = 100_006;
const STEP_RLIMIT: i32 = 100_007;
const STEP_SETGROUPS: i32 = 100_008;
const STEP_SETGID: i32 = 100_009;
const STEP_SETUID: i32 = 100_010;
const STEP_CHDIR_WORK: i32 = 100_011;
const STEP_EXEC: i32 = 100_012;
const STEP_NO_NEW_PRIVS: i32 = 100_013;
const STEP_GO: i32 = 100_014;

fn step_name(plan: &PlanStrings, step: i32) -> String {
    match step {
        STEP_PRIVATE => "make / private".into(),
        STEP_PIVOT => "pivot_root".into(),
        STEP_CHDIR_ROOT => "chdir /".into(),
        STEP_UMOUNT_OLD => "detach old root".into(),
        STEP_RO_ROOT => "remount new root read-only".into(),
        STEP_FORK => "fork program".into(),
        STEP_FDS => "arrange stdio".into(),
        STEP_RLIMIT => "setrlimit".into(),
        STEP_SETGROUPS => "setgroups".into(),
        STEP_SETGID => "setgid".into(),
        STEP_SETUID => format!("setuid {}", plan.uid),
        STEP_CHDIR_WORK => format!("chdir {}", plan.workdir.to_string_lossy()),
        STEP_EXEC => format!("execve {}", plan.exe.to_string_lossy()),
        STEP_NO_NEW_PRIVS => "PR_SET_NO_NEW_PRIVS".into(),
        STEP_GO => "wait for the memory bound".into(),
        i => plan
            .step_names
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| format!("step {i}")),
    }
}

/// Raw view of [`PlanStrings`] for the child (pointers stay valid: the supervisor keeps the
/// owners alive, and the child works on a copy of this address space).
struct ChildPlan<'a> {
    strings: &'a PlanStrings,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// stdin read end, stdout write end, stderr write end, report write end, go read end (one
    /// byte once the memory bound covers `init`), clock write end.
    fds: [libc::c_int; 6],
    drop_uid: bool,
    /// Whether the clock pipe becomes the program's [`CLOCK_FD`].
    clock: bool,
}

/// The memory bound of a run: where and under which name its cgroup goes, and where stdout
/// beyond [`STDOUT_IN_MEMORY`] is kept.
struct Bound<'a> {
    backend: &'a Backend,
    name: String,
    spill: PathBuf,
}

fn pipe() -> Result<(libc::c_int, libc::c_int)> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(SandboxError::last_os("pipe2"));
    }
    Ok((fds[0], fds[1]))
}

struct Fd(libc::c_int);
impl Drop for Fd {
    fn drop(&mut self) {
        if self.0 >= 0 {
            unsafe { libc::close(self.0) };
        }
    }
}

fn supervise(
    plan: &PlanStrings,
    req: &RunRequest,
    limits: &Limits,
    layers: Layers,
    bound: &Bound,
) -> Result<RunOutcome> {
    let (in_r, in_w) = pipe()?;
    let (in_r, in_w) = (Fd(in_r), Fd(in_w));
    let (out_r, out_w) = pipe()?;
    let (out_r, out_w) = (Fd(out_r), Fd(out_w));
    let (err_r, err_w) = pipe()?;
    let (err_r, err_w) = (Fd(err_r), Fd(err_w));
    let (rep_r, rep_w) = pipe()?;
    let (rep_r, rep_w) = (Fd(rep_r), Fd(rep_w));
    let (go_r, go_w) = pipe()?;
    let (go_r, go_w) = (Fd(go_r), Fd(go_w));
    let (clock_r, clock_w) = pipe()?;
    let (clock_r, clock_w) = (Fd(clock_r), Fd(clock_w));

    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.envp.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let child = ChildPlan {
        strings: plan,
        argv,
        envp,
        fds: [in_r.0, out_w.0, err_w.0, rep_w.0, go_r.0, clock_w.0],
        drop_uid: layers.drop_uid,
        clock: req.clock_restarts > 0,
    };

    let flags = if layers.namespaces {
        libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
    } else {
        0
    };
    let mut stack = vec![0u8; 256 << 10];
    let start = Instant::now();
    // SAFETY: the child runs `init_entry` on its own copy of `stack` (no CLONE_VM) and only
    // makes async-signal-safe libc calls on data prepared above.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(stack.len());
        let top = (top as usize & !15) as *mut libc::c_void;
        libc::clone(
            init_entry,
            top,
            flags | libc::SIGCHLD,
            &child as *const ChildPlan as *mut libc::c_void,
        )
    };
    if pid < 0 {
        return Err(SandboxError::last_os(format!("clone(flags={flags:#x})")));
    }
    drop((in_r, out_w, err_w, rep_w, go_r, clock_w));
    let killer = Killer {
        pid,
        namespaces: layers.namespaces,
        uid: layers.drop_uid.then_some(plan.uid),
    };
    // `init` forks the program only after this byte: everything the program ever runs is inside
    // the bound.
    let memory = bound
        .backend
        .start(&bound.name, limits.memory, pid)
        .and_then(|m| {
            let go = [1u8];
            if unsafe { libc::write(go_w.0, go.as_ptr().cast(), 1) } == 1 {
                Ok(m)
            } else {
                Err(SandboxError::last_os("write to the go pipe"))
            }
        });
    drop(go_w);
    let io = match memory {
        Ok(mut memory) => {
            let pipes = Pipes {
                stdin: in_w,
                stdout: out_r,
                stderr: err_r,
                report: rep_r,
                clock: clock_r,
            };
            let io = pump(
                &killer,
                pipes,
                req,
                limits,
                start,
                &mut memory,
                &bound.spill,
            );
            // One last look: the kernel may have OOM-killed the program after the last poll.
            io.map(|mut io| {
                if !io.timed_out && !io.output_limited && memory.exceeded(true) {
                    io.memory_limited = true;
                }
                io.memory_peak = memory.peak();
                (io, memory)
            })
        }
        Err(e) => {
            killer.kill();
            Err(e)
        }
    };
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid
            || (r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
        {
            break;
        }
    }
    // The group is removed (and whatever is left in it killed) once init has been reaped.
    let (io, memory) = io?;
    drop(memory);
    let started = io.started.unwrap_or(start);
    drop(stack);
    if let Some((step, errno)) = io.setup_failure {
        return Err(SandboxError::ChildSetup {
            step: step_name(plan, step),
            source: std::io::Error::from_raw_os_error(errno),
        });
    }
    let exit = match io.program_status {
        Some(st) if libc::WIFEXITED(st) => Exit::Code(libc::WEXITSTATUS(st)),
        Some(st) if libc::WIFSIGNALED(st) => Exit::Signal(libc::WTERMSIG(st)),
        _ => Exit::Killed,
    };
    Ok(RunOutcome {
        exit,
        stdout: io.stdout,
        stderr_tail: io.stderr_tail,
        timed_out: io.timed_out,
        output_limited: io.output_limited,
        memory_limited: io.memory_limited,
        memory_peak: io.memory_peak,
        wall: started.elapsed(),
        setup: started - start,
    })
}

struct Killer {
    pid: libc::pid_t,
    namespaces: bool,
    /// The program's uid when it differs from ours (then every process of it is the program's).
    uid: Option<u32>,
}

impl Killer {
    fn kill(&self) {
        // With a PID namespace, killing its init kills every process in it. Without one the
        // program's process group is killed, then every process of its uid (which catches
        // children that left the group with setsid).
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            if !self.namespaces {
                libc::kill(-self.pid, libc::SIGKILL);
            }
        }
        self.kill_leftovers();
    }

    /// After the program ended: without a PID namespace nothing else ends its descendants.
    fn kill_leftovers(&self) {
        if !self.namespaces {
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
            if let Some(uid) = self.uid {
                kill_uid(uid);
            }
        }
    }
}

/// How long output is still read after the program's end was reported; what a leftover
/// process (only possible without a PID namespace) writes later is not part of the result.
const DRAIN: Duration = Duration::from_millis(500);
/// Same after a kill: a process that escaped the kill (possible only without a PID namespace
/// and without a uid of its own) must not keep the supervisor reading forever.
const KILL_DRAIN: Duration = Duration::from_secs(2);

struct PumpResult {
    stdout: Vec<u8>,
    stderr_tail: Vec<u8>,
    timed_out: bool,
    output_limited: bool,
    memory_limited: bool,
    memory_peak: Option<u64>,
    setup_failure: Option<(i32, i32)>,
    program_status: Option<i32>,
    started: Option<Instant>,
}

/// The supervisor's ends of a run's pipes.
struct Pipes {
    stdin: Fd,
    stdout: Fd,
    stderr: Fd,
    report: Fd,
    clock: Fd,
}

/// A program's stdout: the first [`STDOUT_IN_MEMORY`] bytes in memory, the rest in a file.
struct Capture<'a> {
    head: Vec<u8>,
    spill_path: &'a Path,
    spill: Option<std::fs::File>,
}

impl Capture<'_> {
    fn push(&mut self, mut bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let room = STDOUT_IN_MEMORY.saturating_sub(self.head.len());
        let now = bytes.len().min(room);
        self.head.extend_from_slice(&bytes[..now]);
        bytes = &bytes[now..];
        if bytes.is_empty() {
            return Ok(());
        }
        let io_err = |source| SandboxError::Io {
            path: self.spill_path.to_path_buf(),
            source,
        };
        if self.spill.is_none() {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(self.spill_path)
                .map_err(io_err)?;
            self.spill = Some(file);
        }
        let file = self.spill.as_mut().expect("just created");
        file.write_all(bytes).map_err(io_err)
    }

    /// Everything captured (only the in-memory head when `head_only`).
    fn finish(mut self, head_only: bool) -> Result<Vec<u8>> {
        use std::io::{Read, Seek};
        if let (Some(mut file), false) = (self.spill.take(), head_only) {
            let io_err = |source| SandboxError::Io {
                path: self.spill_path.to_path_buf(),
                source,
            };
            file.rewind().map_err(io_err)?;
            file.read_to_end(&mut self.head).map_err(io_err)?;
        }
        Ok(self.head)
    }
}

fn pump(
    killer: &Killer,
    pipes: Pipes,
    req: &RunRequest,
    limits: &Limits,
    start: Instant,
    memory: &mut RunMemory,
    spill_path: &Path,
) -> Result<PumpResult> {
    let Pipes {
        stdin: in_w,
        stdout: out_r,
        stderr: err_r,
        report: rep_r,
        clock: clock_r,
    } = pipes;
    let stdin = &req.stdin[..];
    for fd in [in_w.0, out_r.0, err_r.0, rep_r.0, clock_r.0] {
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
    let mut in_w = Some(in_w);
    if stdin.is_empty() {
        in_w = None;
    }
    let mut written = 0usize;
    let mut open = [true; 3]; // stdout, stderr, report
    let mut clock_open = req.clock_restarts > 0;
    let mut restarts_left = req.clock_restarts;
    let mut stdout = Capture {
        head: Vec::new(),
        spill_path,
        spill: None,
    };
    let mut stdout_total = 0usize;
    let mut memory_limited = false;
    let mut stderr_tail = Vec::new();
    let mut stderr_total = 0usize;
    let mut report = Vec::new();
    let mut timed_out = false;
    let mut output_limited = false;
    let mut killed = false;
    let mut deadline = start + SETUP_TIMEOUT;
    let mut started = None;
    let mut parsed = 0usize;
    let mut drain_until: Option<Instant> = None;
    let mut buf = vec![0u8; 64 << 10];
    while open.iter().any(|o| *o) {
        let mut pfds = Vec::with_capacity(4);
        let src = [&out_r, &err_r, &rep_r];
        for (i, fd) in src.iter().enumerate() {
            if open[i] {
                pfds.push(libc::pollfd {
                    fd: fd.0,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        if let Some(w) = &in_w {
            pfds.push(libc::pollfd {
                fd: w.0,
                events: libc::POLLOUT,
                revents: 0,
            });
        }
        if clock_open {
            pfds.push(libc::pollfd {
                fd: clock_r.0,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let now = Instant::now();
        if drain_until.is_some_and(|d| now >= d) {
            break;
        }
        let timeout_ms = if let Some(d) = drain_until {
            (d - now).as_millis() as i32 + 1
        } else if killed {
            1000
        } else if now >= deadline {
            0
        } else {
            // Wake up at least once per accounting period to look at the memory bound.
            (deadline - now).min(ACCOUNTING_PERIOD).as_millis() as i32 + 1
        };
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            killer.kill();
            return Err(SandboxError::last_os("poll"));
        }
        if !killed && started.is_some() && memory.exceeded(false) {
            memory_limited = true;
            killed = true;
            drain_until.get_or_insert(Instant::now() + KILL_DRAIN);
            killer.kill();
        }
        if !killed && Instant::now() >= deadline {
            if started.is_none() {
                killer.kill();
                return Err(SandboxError::ChildSetup {
                    step: format!("namespace and mount setup (over {SETUP_TIMEOUT:?})"),
                    source: std::io::Error::from(std::io::ErrorKind::TimedOut),
                });
            }
            timed_out = true;
            killed = true;
            drain_until.get_or_insert(Instant::now() + KILL_DRAIN);
            killer.kill();
        }
        for p in &pfds {
            if p.revents == 0 {
                continue;
            }
            if in_w.as_ref().is_some_and(|w| w.0 == p.fd) {
                let rest = &stdin[written..];
                let r = unsafe { libc::write(p.fd, rest.as_ptr().cast(), rest.len().min(1 << 16)) };
                if r > 0 {
                    written += r as usize;
                }
                if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                    continue;
                }
                if r < 0 || written == stdin.len() {
                    in_w = None; // closes: EOF for the program (or it stopped reading)
                }
                continue;
            }
            if clock_open && p.fd == clock_r.0 {
                let r = unsafe { libc::read(p.fd, buf.as_mut_ptr().cast(), buf.len()) };
                if r == 0 || (r < 0 && errno() != libc::EAGAIN && errno() != libc::EINTR) {
                    clock_open = false;
                }
                for _ in 0..r.max(0) {
                    if restarts_left > 0 && started.is_some() && !killed {
                        restarts_left -= 1;
                        deadline = Instant::now() + limits.wall_time;
                    }
                }
                continue;
            }
            let idx = if p.fd == out_r.0 {
                0
            } else if p.fd == err_r.0 {
                1
            } else {
                2
            };
            let r = unsafe { libc::read(p.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if r == 0 {
                open[idx] = false;
                if idx == 2 && drain_until.is_none() {
                    // init has exited: the program is over.
                    killer.kill_leftovers();
                    drain_until = Some(Instant::now() + DRAIN);
                }
                continue;
            }
            if r < 0 {
                let e = std::io::Error::last_os_error().raw_os_error();
                if e == Some(libc::EAGAIN) || e == Some(libc::EINTR) {
                    continue;
                }
                open[idx] = false;
                continue;
            }
            let chunk = &buf[..r as usize];
            match idx {
                0 => {
                    let room = limits.output.saturating_sub(stdout_total);
                    let kept = chunk.len().min(room);
                    stdout_total += kept;
                    if let Err(e) = stdout.push(&chunk[..kept]) {
                        killer.kill();
                        return Err(e);
                    }
                    if chunk.len() > room && !killed {
                        output_limited = true;
                        killed = true;
                        drain_until.get_or_insert(Instant::now() + KILL_DRAIN);
                        killer.kill();
                    }
                }
                1 => {
                    stderr_total += chunk.len();
                    stderr_tail.extend_from_slice(chunk);
                    if stderr_tail.len() > 2 * STDERR_TAIL {
                        stderr_tail.drain(..stderr_tail.len() - STDERR_TAIL);
                    }
                    if stderr_total > limits.output && !killed {
                        output_limited = true;
                        killed = true;
                        drain_until.get_or_insert(Instant::now() + KILL_DRAIN);
                        killer.kill();
                    }
                }
                _ => {
                    report.extend_from_slice(chunk);
                    while report.len() >= parsed + 12 {
                        let kind = i32::from_ne_bytes(
                            report[parsed..parsed + 4].try_into().expect("4 bytes"),
                        );
                        parsed += 12;
                        if kind == MSG_STARTED && started.is_none() {
                            let now = Instant::now();
                            started = Some(now);
                            deadline = now + limits.wall_time;
                        }
                    }
                }
            }
        }
    }
    if stderr_tail.len() > STDERR_TAIL {
        stderr_tail.drain(..stderr_tail.len() - STDERR_TAIL);
    }
    let mut setup_failure = None;
    let mut program_status = None;
    for msg in report.chunks_exact(12) {
        let word =
            |i: usize| i32::from_ne_bytes(msg[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        match word(0) {
            MSG_SETUP_FAILED if setup_failure.is_none() => setup_failure = Some((word(1), word(2))),
            MSG_STATUS => program_status = Some(word(1)),
            _ => {}
        }
    }
    Ok(PumpResult {
        stdout: stdout.finish(output_limited)?,
        stderr_tail,
        timed_out,
        output_limited,
        memory_limited,
        memory_peak: None,
        setup_failure,
        program_status,
        started,
    })
}

/// Kills every process owned by `uid` (used only without a PID namespace). Repeats until a
/// scan finds none, because a fork bomb keeps making new ones while we kill.
fn kill_uid(uid: u32) {
    for _ in 0..200 {
        let mut found = false;
        // Zombies keep their uid until reaped by whoever inherited them; they run nothing.
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
                continue;
            };
            let owner = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|u| u.parse::<u32>().ok());
            let zombie = status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'));
            if owner == Some(uid) && !zombie {
                found = true;
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if !found {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// Child side. Everything below runs between clone and execve: libc calls only, no allocation.

fn report(fd: libc::c_int, kind: i32, a: i32, b: i32) {
    let mut msg = [0u8; 12];
    msg[0..4].copy_from_slice(&kind.to_ne_bytes());
    msg[4..8].copy_from_slice(&a.to_ne_bytes());
    msg[8..12].copy_from_slice(&b.to_ne_bytes());
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn fail(fd: libc::c_int, step: i32) -> ! {
    report(fd, MSG_SETUP_FAILED, step, errno());
    unsafe { libc::_exit(127) }
}

extern "C" fn init_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the supervisor's ChildPlan, copied into this address space.
    let plan = unsafe { &*(arg as *const ChildPlan) };
    unsafe { init_main(plan) }
}

/// Moves the plan's fds above every fd of interest and closes all others, so this child does
/// not hold pipes of runs started concurrently by other threads (which would delay their EOF).
unsafe fn isolate_fds(fds: [libc::c_int; 6]) -> Option<[libc::c_int; 6]> {
    let max = *fds.iter().max()?;
    let mut moved = [0; 6];
    for (i, fd) in fds.iter().enumerate() {
        let n = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, max + 1);
        if n < 0 {
            return None;
        }
        moved[i] = n;
    }
    let mut sorted = moved;
    sorted.sort_unstable();
    let mut lo: libc::c_uint = 0;
    for fd in sorted {
        let fd = fd as libc::c_uint;
        if fd > lo {
            libc::syscall(libc::SYS_close_range, lo, fd - 1, 0);
        }
        lo = fd + 1;
    }
    libc::syscall(libc::SYS_close_range, lo, libc::c_uint::MAX, 0);
    Some(moved)
}

unsafe fn init_main(plan: &ChildPlan) -> libc::c_int {
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    // Own session and process group, inherited by the program: without a PID namespace,
    // killing this group is the fallback way to end it.
    libc::setsid();
    // Orphans of the program are re-parented here rather than to the host's init, so that they
    // stay among this process's descendants (which the memory accounting sums) even without a
    // PID namespace.
    libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    // A caller that ignores SIGCHLD would make the kernel reap the program before we can read
    // its status.
    libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    let Some([stdin_r, stdout_w, stderr_w, rep, go, clock]) = isolate_fds(plan.fds) else {
        libc::_exit(127)
    };
    if let Some(m) = &plan.strings.mounts {
        setup_mounts(m, rep);
    }
    // The supervisor has put this process under the memory bound when this byte arrives; EOF
    // means it gave up on the run.
    let mut byte = 0u8;
    loop {
        let r = libc::read(go, (&mut byte as *mut u8).cast(), 1);
        if r == 1 {
            break;
        }
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        fail(rep, STEP_GO);
    }
    libc::close(go);
    // Not libc::fork(): glibc's fork takes malloc and other internal locks, which another
    // thread of the supervisor may have held at the moment this process was cloned (they are
    // copied locked and nobody here will unlock them). A bare clone syscall takes no locks.
    let pid =
        libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) as libc::pid_t;
    if pid < 0 {
        fail(rep, STEP_FORK);
    }
    if pid == 0 {
        exec_program(plan, [stdin_r, stdout_w, stderr_w], clock, rep);
    }
    report(rep, MSG_STARTED, pid, 0);
    libc::close(stdin_r);
    libc::close(stdout_w);
    libc::close(stderr_w);
    libc::close(clock);
    // Reap everything; report the program's own status once it ends. Returning then ends the
    // namespace, and the kernel kills whatever the program left behind.
    loop {
        let mut st = 0;
        let r = libc::waitpid(-1, &mut st, 0);
        if r == pid {
            report(rep, MSG_STATUS, st, 0);
            break;
        }
        if r < 0 && errno() != libc::EINTR {
            break;
        }
    }
    libc::_exit(0)
}

unsafe fn setup_mounts(m: &MountPlan, rep: libc::c_int) {
    let null = std::ptr::null::<libc::c_char>();
    if libc::mount(
        null,
        m.slash.as_ptr(),
        null,
        libc::MS_REC | libc::MS_PRIVATE,
        std::ptr::null(),
    ) != 0
    {
        fail(rep, STEP_PRIVATE);
    }
    let tmpfs = c"tmpfs".as_ptr();
    let proc_ = c"proc".as_ptr();
    for (i, op) in m.ops.iter().enumerate() {
        let ok = match op {
            MountOp::Mkdir { path } => {
                libc::mkdir(path.as_ptr(), 0o755) == 0 || errno() == libc::EEXIST
            }
            MountOp::Touch { path } => {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                fd >= 0 && libc::close(fd) == 0
            }
            MountOp::Symlink { target, link } => libc::symlink(target.as_ptr(), link.as_ptr()) == 0,
            MountOp::Bind { src, dst } => {
                libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    null,
                    libc::MS_BIND,
                    std::ptr::null(),
                ) == 0
            }
            MountOp::ReadOnly { dst } => {
                let flags = libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV;
                libc::mount(null, dst.as_ptr(), null, flags, std::ptr::null()) == 0
            }
            MountOp::Tmpfs { dst, data } => {
                libc::mount(
                    tmpfs,
                    dst.as_ptr(),
                    tmpfs,
                    libc::MS_NOSUID | libc::MS_NODEV,
                    data.as_ptr().cast(),
                ) == 0
            }
            MountOp::Proc { dst } => {
                let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
                libc::mount(proc_, dst.as_ptr(), proc_, flags, std::ptr::null()) == 0
            }
            MountOp::Chown { path, uid } => libc::chown(path.as_ptr(), *uid, *uid) == 0,
        };
        if !ok {
            fail(rep, i as i32);
        }
    }
    if libc::syscall(
        libc::SYS_pivot_root,
        m.new_root.as_ptr(),
        m.put_old.as_ptr(),
    ) != 0
    {
        fail(rep, STEP_PIVOT);
    }
    if libc::chdir(m.slash.as_ptr()) != 0 {
        fail(rep, STEP_CHDIR_ROOT);
    }
    if libc::umount2(m.old_inside.as_ptr(), libc::MNT_DETACH) != 0 {
        fail(rep, STEP_UMOUNT_OLD);
    }
    libc::rmdir(m.old_inside.as_ptr());
    let flags =
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
    if libc::mount(null, m.slash.as_ptr(), null, flags, std::ptr::null()) != 0 {
        fail(rep, STEP_RO_ROOT);
    }
}

unsafe fn exec_program(
    plan: &ChildPlan,
    stdio: [libc::c_int; 3],
    clock: libc::c_int,
    rep: libc::c_int,
) -> ! {
    for (target, fd) in stdio.iter().enumerate() {
        if libc::dup2(*fd, target as libc::c_int) < 0 {
            fail(rep, STEP_FDS);
        }
    }
    // The moved fds all lie above CLOCK_FD (see isolate_fds), so this overwrites none of them.
    if plan.clock && libc::dup2(clock, CLOCK_FD) < 0 {
        fail(rep, STEP_FDS);
    }
    // Dispositions and the signal mask survive execve; start the program from defaults.
    for sig in 1..=64 {
        libc::signal(sig, libc::SIG_DFL);
    }
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    for (res, value) in &plan.strings.rlimits {
        let lim = libc::rlimit {
            rlim_cur: *value,
            rlim_max: *value,
        };
        // CPU: a soft limit below the hard one sends SIGXCPU first; both end the program.
        if libc::setrlimit(*res, &lim) != 0 {
            fail(rep, STEP_RLIMIT);
        }
    }
    if plan.drop_uid {
        // Raw syscalls: glibc's wrappers would try to change the credentials of every thread it
        // believes exists, i.e. the supervisor's threads, which are not in this process.
        let uid = plan.strings.uid as libc::c_long;
        if libc::syscall(
            libc::SYS_setgroups,
            0 as libc::c_long,
            std::ptr::null::<libc::gid_t>(),
        ) != 0
        {
            fail(rep, STEP_SETGROUPS);
        }
        if libc::syscall(libc::SYS_setresgid, uid, uid, uid) != 0 {
            fail(rep, STEP_SETGID);
        }
        if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
            fail(rep, STEP_SETUID);
        }
    }
    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
        fail(rep, STEP_NO_NEW_PRIVS);
    }
    if libc::chdir(plan.strings.workdir.as_ptr()) != 0 {
        fail(rep, STEP_CHDIR_WORK);
    }
    libc::execve(
        plan.strings.exe.as_ptr(),
        plan.argv.as_ptr(),
        plan.envp.as_ptr(),
    );
    fail(rep, STEP_EXEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Live (non-zombie) processes of `uid`.
    fn uid_processes(uid: u32) -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_to_string(e.path().join("status"))
                    .ok()
                    .is_some_and(|s| {
                        let zombie = s
                            .lines()
                            .any(|l| l.starts_with("State:") && l.contains('Z'));
                        !zombie
                            && s.lines()
                                .find_map(|l| l.strip_prefix("Uid:"))
                                .and_then(|l| l.split_whitespace().next())
                                == Some(&uid.to_string())
                    })
            })
            .count()
    }

    fn small() -> SandboxConfig {
        let limits = Limits {
            wall_time: Duration::from_secs(2),
            address_space: 256 << 20,
            ..Limits::default()
        };
        // Without a mount namespace the interpreter must be reachable by the sandbox uid, which a
        // pyenv interpreter under /root is not: use the system one.
        let python = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        SandboxConfig {
            limits,
            uid_slots: 1,
            python: python.into(),
            ..SandboxConfig::default()
        }
    }

    #[test]
    fn degraded_mode_still_cleans_up_by_uid() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: needs root to drop to a sandbox uid");
            return;
        }
        let Ok(mut sandbox) = Sandbox::new(small()) else {
            eprintln!("SKIP: sandbox unavailable");
            return;
        };
        // What a machine without namespaces gets: uid drop, rlimits, session kill, uid scan.
        let layers = Layers {
            namespaces: false,
            drop_uid: true,
        };
        sandbox.layers = layers;
        sandbox.report = report_for(layers, &["forced by test".into()], &sandbox.memory);
        assert!(!sandbox.isolation().is_complete());
        assert!(sandbox
            .isolation()
            .warnings
            .iter()
            .any(|w| w.contains("network is NOT isolated")));
        let uid = sandbox.config.uid_base;
        let detach = "import os\nif os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sleep', ['sleep', '300'])\nprint(os.getuid(), os.getcwd().startswith('/work'))\n";
        let t = Instant::now();
        let out = sandbox.run(&RunRequest::script(detach, "")).unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "waited for the detached child's output"
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{uid} False\n")
        );
        assert_eq!(uid_processes(uid), 0, "detached child survived");
        let out = sandbox
            .run(&RunRequest::script("import time\ntime.sleep(60)\n", ""))
            .unwrap();
        assert!(out.timed_out);
        assert_eq!(uid_processes(uid), 0);
    }

    #[test]
    fn setup_errors_name_the_step() {
        let Ok(sandbox) = Sandbox::new(small()) else {
            eprintln!("SKIP: sandbox unavailable");
            return;
        };
        let req = RunRequest {
            files: vec![("a/b".into(), vec![])],
            ..RunRequest::script("", "")
        };
        let e = sandbox.run(&req).unwrap_err().to_string();
        assert!(e.contains("files") && e.contains("a/b"), "{e}");
    }

    #[test]
    fn isolation_report_round_trips_for_manifests() {
        let r = report_for(
            Layers {
                namespaces: false,
                drop_uid: false,
            },
            &["EPERM".into()],
            &Backend::Accounting {
                reason: "no memory controller".into(),
            },
        );
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<IsolationReport>(&json).unwrap(), r);
        assert!(r.warnings.iter().any(|w| w.contains("EPERM")));
        assert_eq!(r.memory_bound, "accounting");
        assert!(r
            .warnings
            .iter()
            .any(|w| w.contains("no memory controller")));
        let full = report_for(
            Layers {
                namespaces: true,
                drop_uid: true,
            },
            &[],
            &Backend::V1 {
                parent: "/sys/fs/cgroup/memory".into(),
            },
        );
        assert!(full.is_complete() && full.warnings.is_empty());
        // Manifests written before the memory bound existed still read.
        let mut old = serde_json::to_value(&full).unwrap();
        old.as_object_mut().unwrap().remove("memory_bound");
        assert!(serde_json::from_value::<IsolationReport>(old).is_ok());
    }
}
