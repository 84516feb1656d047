//! The ssh peer: an `sshd` inside a node's network namespace (its own keys and config in a temp
//! dir) and `ssh` client commands for it, with a fresh connection or through a ControlMaster.
//! [`Ssh`] is a guard: dropping it closes the master, kills sshd (and its sessions) and removes
//! the temp dir, also on error or panic.
//!
//! The client must run in the cluster's hub network namespace (10.77.x.x is not reachable from
//! the host): spawn its commands from a thread inside [`crate::bench::sys::in_netns`].

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vm_harness::Cluster;

use super::sys::{in_netns, kill_tree, run_ok, runs, wait_with_deadline};

/// The OpenSSH server binary (Debian package openssh-server).
pub const SSHD: &str = "/usr/sbin/sshd";

/// How long sshd may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Fails with a message naming the Debian packages unless sshd, ssh and ssh-keygen are there.
pub fn check_installed() -> Result<()> {
    if !Path::new(SSHD).is_file() {
        bail!("{SSHD} is missing: install the Debian package openssh-server (x.sh installs it)");
    }
    for prog in ["ssh", "ssh-keygen"] {
        if which(prog).is_none() {
            bail!("`{prog}` is not in PATH: install the Debian package openssh-client (x.sh installs it)");
        }
    }
    Ok(())
}

fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(prog)).find(|p| p.is_file())
}

/// A running sshd on one node and the client settings to reach it.
#[derive(Debug)]
pub struct Ssh {
    dir: PathBuf,
    key: PathBuf,
    addr: Ipv4Addr,
    sshd: Option<Child>,
    master_pid: Option<i32>,
}

impl Ssh {
    /// Starts sshd in node `node`'s network namespace, waits until it accepts connections
    /// (probed from the hub namespace) and opens the ControlMaster connection.
    pub fn start(c: &Cluster, node: u32) -> Result<Ssh> {
        check_installed()?;
        let addr = c.node_addr(node).with_context(|| format!("no node {node}"))?;
        let node_ns = c.node_netns(node).with_context(|| format!("no node {node}"))?;
        let dir = make_temp_dir()?;
        let mut ssh = Ssh { key: dir.join("client_key"), dir, addr, sshd: None, master_pid: None };
        let host_key = ssh.dir.join("host_key");
        for key in [&host_key, &ssh.key] {
            run_ok(Command::new("ssh-keygen").args(["-q", "-N", "", "-t", "ed25519", "-f"]).arg(key))?;
        }
        let authorized = ssh.dir.join("authorized_keys");
        fs::copy(ssh.key.with_extension("pub"), &authorized).context("write authorized_keys")?;
        // sshd runs the command through root's bash, and bash sources ~/.bashrc when it sees it
        // runs under sshd at shell level 1. This machine's ~/.bashrc runs `pyenv init` (~80 ms),
        // which is no part of ssh's cost; SHLVL=1 in the session makes bash skip it, as a stock
        // Debian root (whose ~/.bashrc is all comments) costs nothing there.
        let config = ssh.dir.join("sshd_config");
        let text = format!(
            "Port 22\nListenAddress {addr}\nHostKey {}\nAuthorizedKeysFile {}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {}\nUseDNS no\n\
             SetEnv SHLVL=1\n",
            host_key.display(),
            authorized.display(),
            ssh.dir.join("sshd.pid").display()
        );
        fs::write(&config, text).context("write sshd_config")?;
        // sshd's privilege separation needs this directory.
        match fs::DirBuilder::new().mode(0o755).create("/run/sshd") {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(e).context("create /run/sshd");
            }
            _ => {}
        }
        let log = fs::File::create(ssh.log()).context("create sshd.log")?;
        let child = Command::new("ip")
            .args(["netns", "exec", node_ns, SSHD, "-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("dup sshd.log")?)
            .stderr(log)
            .spawn()
            .context("cannot start sshd through `ip netns exec`")?;
        ssh.sshd = Some(child);
        ssh.wait_ready(c.hub_netns())?;
        in_netns(c.hub_netns(), || ssh.open_master())?;
        Ok(ssh)
    }

    fn log(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }

    fn log_text(&self) -> String {
        fs::read_to_string(self.log()).unwrap_or_default()
    }

    fn wait_ready(&mut self, hub: &str) -> Result<()> {
        let target = SocketAddr::V4(SocketAddrV4::new(self.addr, 22));
        let Some(sshd) = self.sshd.as_mut() else { bail!("sshd not started") };
        let ready = in_netns(hub, || {
            let deadline = Instant::now() + READY_TIMEOUT;
            let found = vm_harness::wait_until(deadline, Duration::from_millis(10), || {
                if let Ok(Some(status)) = sshd.try_wait() {
                    return Some(Err(status));
                }
                TcpStream::connect_timeout(&target, Duration::from_millis(500)).ok().map(|_| Ok(()))
            });
            Ok(found)
        })?;
        match ready {
            Some(Ok(())) => Ok(()),
            Some(Err(status)) => bail!("sshd exited ({status}); its log:\n{}", self.log_text()),
            None => bail!("sshd not reachable at {target} after {READY_TIMEOUT:?}; its log:\n{}", self.log_text()),
        }
    }

    /// `ssh` with this setup's key and options, then `extra` options, then `root@ADDR remote...`.
    fn client(&self, extra: &[String], remote: &[&str]) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-i"]).arg(&self.key);
        for opt in ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes", "LogLevel=ERROR"] {
            cmd.args(["-o", opt]);
        }
        cmd.args(extra).arg(format!("root@{}", self.addr)).args(remote);
        cmd
    }

    /// `ssh root@ADDR remote...` over a new connection.
    pub fn new_conn(&self, remote: &[&str]) -> Command {
        let extra = ["-o", "ControlMaster=no", "-o", "ControlPath=none"].map(String::from);
        self.client(&extra, remote)
    }

    /// `ssh root@ADDR remote...` through the ControlMaster opened by [`Ssh::start`].
    pub fn via_master(&self, remote: &[&str]) -> Command {
        self.client(&self.master_opts(), remote)
    }

    fn master_opts(&self) -> Vec<String> {
        let path = format!("ControlPath={}", self.dir.join("cm").display());
        ["-o", "ControlMaster=auto", "-o", &path, "-o", "ControlPersist=60"].map(String::from).to_vec()
    }

    /// Opens the ControlMaster connection (call from the hub namespace) and notes its pid.
    fn open_master(&mut self) -> Result<()> {
        let log = fs::File::create(self.dir.join("master.log")).context("create master.log")?;
        let mut child = self
            .via_master(&["true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start ssh")?;
        let status = wait_with_deadline(&mut child, READY_TIMEOUT)?;
        // The master forked off and keeps running from here, whatever the status.
        let mut check = self.control(&self.master_opts(), "check");
        let out = check.stdin(Stdio::null()).output().context("ssh -O check")?;
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        self.master_pid =
            said.split("pid=").nth(1).and_then(|t| t.split(')').next()).and_then(|p| p.trim().parse().ok());
        if !status.success() || self.master_pid.is_none() {
            let log = fs::read_to_string(self.dir.join("master.log")).unwrap_or_default();
            bail!("cannot open the ssh ControlMaster ({status}): {log} {said}; sshd log:\n{}", self.log_text());
        }
        Ok(())
    }

    /// `ssh -O OP` on the control socket.
    fn control(&self, opts: &[String], op: &str) -> Command {
        let mut cmd = self.client(opts, &[]);
        cmd.args(["-O", op]);
        cmd
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        if let Some(pid) = self.master_pid.take() {
            // `-O exit` only talks to the control socket: any network namespace will do.
            let mut exit = self.control(&self.master_opts(), "exit");
            exit.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            if let Ok(mut child) = exit.spawn() {
                let _ = wait_with_deadline(&mut child, Duration::from_secs(10));
            }
            let gone = vm_harness::wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
                (!runs(pid, "ssh")).then_some(())
            });
            if gone.is_none() {
                kill_tree(pid);
            }
        }
        if let Some(mut sshd) = self.sshd.take() {
            // Its sessions are its descendants (each in a new session, so not its group).
            kill_tree(sshd.id() as i32);
            let _ = sshd.wait();
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("bproc-bench: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// A new private directory under the system temp dir.
fn make_temp_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir();
    for n in 0..1000 {
        let dir = base.join(format!("bproc-bench-{}-{n}", std::process::id()));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("create {}", dir.display())),
        }
    }
    bail!("no free temp dir name under {}", base.display())
}
