//! Prints what a sandboxed program sees: uid, pid, network, filesystem. Useful to check a host.
use reprolm_scoring::sandbox::{RunRequest, Sandbox, SandboxConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    println!("{:#?}", sandbox.isolation());
    let probe = r#"
import os, socket
print("uid", os.getuid(), "gid", os.getgid(), "pid", os.getpid(), "cwd", os.getcwd())
print("procs", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print("root", sorted(os.listdir("/")))
print("ifaces", open("/proc/net/dev").read().count(":"))
try:
    socket.create_connection(("127.0.0.1", 22), timeout=1); print("connect: OK")
except OSError as e: print("connect:", e)
for p in ["/root", "/tmp", "/work", "/usr"]:
    try: print(p, os.listdir(p)[:5])
    except OSError as e: print(p, e)
for p in ["/tmp/x", "/work/x", "/usr/x"]:
    try: open(p, "w").write("x"); print("write", p, "OK")
    except OSError as e: print("write", p, e)
print("env", dict(os.environ))
"#;
    let out = sandbox.run(&RunRequest::script(probe, ""))?;
    println!(
        "{:?} wall={:?}\n{}\n{}",
        out.exit,
        out.wall,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr_tail)
    );
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let out = sandbox.run(&RunRequest::script("pass", ""))?;
        println!(
            "trivial: {:?} {:?} total {:?}",
            out.exit,
            out.wall,
            t.elapsed()
        );
    }
    Ok(())
}
