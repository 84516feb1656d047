//! Ghosts: a remote process is a process of the master, with the global PID
//! that `getpid()` returns on the node, its command line, its parent, and
//! the signals anyone sends it (issue 4, first part).

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use tests::{cluster, collect, kill, proc_state, remote_processes, run, sh, spawn_bpsh, text, wait_for};

fn read_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).expect("read a line");
    line
}

fn ppid(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    stat[stat.rfind(')').expect(")") + 2..].split_whitespace().nth(1).expect("ppid").parse().expect("int")
}

#[test]
fn the_remote_pid_is_a_process_on_the_master_that_acts_for_it() {
    let c = cluster(2);
    let script = "trap 'echo got-usr1' USR1; echo $$; while :; do sleep 0.05; done";
    let mut child = spawn_bpsh(&c, &["1", "sh", "-c", script]);
    let bpsh = child.id() as i32;
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let pid: i32 = read_line(&mut out).trim().parse().expect("the remote shell prints its PID");

    // getpid() on the node is a process here: the ghost, under bpsh, with
    // the remote command line and name.
    assert_eq!(ppid(pid), bpsh, "the ghost is bpsh's child");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the ghost exists");
    assert_eq!(cmdline, format!("sh\0-c\0{script}\0").into_bytes());
    assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm").trim(), "sh");
    let procs = remote_processes(&c);
    let p = procs.iter().find(|p| p["pid"].as_i64() == Some(pid.into())).expect("bpstat -p lists the global PID");
    assert_eq!(p["node"].as_u64(), Some(1));
    assert_eq!(p["node_pid"].as_i64(), Some(pid.into()), "same PID on the node");

    // Another user may not signal it; the kernel says so.
    let other = run(&mut sh(&c, &format!("setpriv --reuid=4444 --regid=4444 --clear-groups kill -USR1 {pid}")));
    assert!(!other.status.success());
    assert!(text(&other.stderr).contains("Operation not permitted"), "{}", text(&other.stderr));

    // An unrelated process signals the ghost: the remote process gets it.
    kill(pid, libc::SIGUSR1);
    assert_eq!(read_line(&mut out), "got-usr1\n", "USR1 reached the remote trap, and only once");

    // SIGTSTP to the ghost stops the remote process, then the ghost; SIGCONT resumes both.
    let remote = c.host_pid(1, pid).expect("the remote process, seen from here");
    kill(pid, libc::SIGTSTP);
    wait_for("the remote process to stop", Duration::from_secs(10), || (proc_state(remote) == Some('T')).then_some(()));
    wait_for("the ghost to stop", Duration::from_secs(10), || (proc_state(pid) == Some('T')).then_some(()));
    kill(pid, libc::SIGCONT);
    wait_for("the remote process to run", Duration::from_secs(10), || {
        matches!(proc_state(remote), Some('S' | 'R')).then_some(())
    });
    wait_for("the ghost to run", Duration::from_secs(10), || matches!(proc_state(pid), Some('S' | 'R')).then_some(()));

    // SIGTERM to the ghost ends the remote process; the ghost dies of it,
    // and so does bpsh.
    kill(pid, libc::SIGTERM);
    let status = collect(&mut child, Duration::from_secs(20), "bpsh").status;
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    wait_for("the remote process to be gone", Duration::from_secs(10), || proc_state(remote).is_none().then_some(()));
    assert!(proc_state(pid).is_none(), "no ghost or zombie left");
    assert!(remote_processes(&c).is_empty(), "the master forgot it");
}

#[test]
fn every_node_process_has_its_ghost_and_the_same_pid() {
    let c = cluster(3);
    let mut child = spawn_bpsh(&c, &["-p", "0-2", "sh", "-c", "echo $$; exec sleep 100"]);
    let bpsh = child.id() as i32;
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let line = read_line(&mut out);
        let (node, pid) = line.trim().split_once(": ").expect("prefixed line");
        seen.push((node.parse::<u64>().expect("node"), pid.parse::<i32>().expect("pid")));
    }
    seen.sort();
    let procs = wait_for("three remote sleeps", Duration::from_secs(20), || {
        let p = remote_processes(&c);
        (p.len() == 3).then_some(p)
    });
    for (node, pid) in &seen {
        assert_eq!(ppid(*pid), bpsh, "ghost {pid} of node {node} is bpsh's child");
        let p = procs.iter().find(|p| p["pid"].as_i64() == Some((*pid).into())).expect("listed");
        assert_eq!(p["node"].as_u64(), Some(*node));
        assert_eq!(p["node_pid"].as_i64(), Some((*pid).into()));
    }
    // SIGTERM to bpsh reaches every remote process through its ghost.
    kill(bpsh, libc::SIGTERM);
    let status = collect(&mut child, Duration::from_secs(20), "bpsh").status;
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    for (_, pid) in &seen {
        assert!(proc_state(*pid).is_none(), "ghost {pid} is gone");
    }
}

/// Compiles the C helper that forks, execs and waitpid()s a command.
fn waitstatus_program() -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("c/waitstatus.c");
    let out = std::env::temp_dir().join(format!("bproc-waitstatus-{}", std::process::id()));
    let cc = std::process::Command::new("cc").arg("-O2").arg("-o").arg(&out).arg(&src).status();
    assert!(
        cc.is_ok_and(|s| s.success()),
        "cannot compile {} (install build-essential: bash x.sh setup)",
        src.display()
    );
    out
}

#[test]
fn a_c_parent_sees_exactly_the_status_of_a_local_child() {
    let c = cluster(1);
    let prog = waitstatus_program();
    let cases = ["exit 0", "exit 1", "exit 255", "kill -TERM $$", "kill -SEGV $$", "kill -KILL $$"];
    for script in cases {
        let local = run(std::process::Command::new(&prog).args(["sh", "-c", script]));
        let remote = run(std::process::Command::new(&prog)
            .arg(c.bin("bpsh"))
            .args(["0", "sh", "-c", script])
            .env("BPROC_SOCKET", c.socket_path()));
        // Core dumps are off for the ghost and for bpsh, so compare with a
        // local child that dumped no core either.
        let norm = |s: String| s.replace("core=1", "core=0").replace("status=139", "status=11");
        assert_eq!(norm(text(&remote.stdout)), norm(text(&local.stdout)), "for `{script}`: {}", text(&remote.stderr));
    }
    let _ = std::fs::remove_file(prog);
}

/// An interactive bash in a tmux pane of its own tmux server, killed on drop.
struct Tmux {
    server: String,
}

impl Tmux {
    fn start(c: &tests::Cluster) -> Tmux {
        let server = format!("bproc-{}", c.name());
        let path = format!("{}:{}", c.bin_dir().display(), std::env::var("PATH").unwrap_or_default());
        let shell = format!(
            "env -i HOME=/root TERM=screen PATH={path} BPROC_SOCKET={} PS1='bp$ ' bash --norc --noprofile -i",
            c.socket_path().display()
        );
        let ok = std::process::Command::new("tmux")
            .args(["-L", &server, "new-session", "-d", "-x", "160", "-y", "40", &shell])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot start tmux (install it: bash x.sh setup)");
        let t = Tmux { server };
        t.wait_screen("the prompt", |s| s.contains("bp$"));
        t
    }

    fn keys(&self, keys: &[&str]) {
        let ok = std::process::Command::new("tmux")
            .args(["-L", &self.server, "send-keys"])
            .args(keys)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "tmux send-keys {keys:?}");
    }

    fn screen(&self) -> String {
        let out = std::process::Command::new("tmux")
            .args(["-L", &self.server, "capture-pane", "-p"])
            .output()
            .expect("tmux capture-pane");
        text(&out.stdout)
    }

    fn wait_screen(&self, what: &str, f: impl Fn(&str) -> bool) {
        let mut last = String::new();
        let found = vm_harness::wait_for(Duration::from_secs(20), Duration::from_millis(20), || {
            last = self.screen();
            f(&last).then_some(())
        });
        assert!(found.is_some(), "timed out waiting for {what}; screen:\n{last}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux").args(["-L", &self.server, "kill-server"]).status();
    }
}

#[test]
fn job_control_from_an_interactive_shell() {
    let c = cluster(1);
    let tmux = Tmux::start(&c);
    tmux.keys(&["bpsh 0 sleep 100", "Enter"]);
    let remote = tests::wait_remote(&c, 0, "sleep");

    tmux.keys(&["C-z"]);
    wait_for("Ctrl-Z to stop the remote process", Duration::from_secs(10), || {
        (proc_state(remote) == Some('T')).then_some(())
    });
    tmux.wait_screen("bash to report the job stopped", |s| s.contains("Stopped"));
    tmux.keys(&["jobs", "Enter"]);
    tmux.wait_screen("jobs to list it stopped", |s| s.matches("Stopped").count() >= 2);

    tmux.keys(&["bg", "Enter"]);
    wait_for("bg to resume the remote process", Duration::from_secs(10), || {
        matches!(proc_state(remote), Some('S' | 'R')).then_some(())
    });
    let ghost = wait_for("the remote sleep's global PID", Duration::from_secs(10), || {
        remote_processes(&c).first().and_then(|p| p["pid"].as_i64()).filter(|p| *p > 0).map(|p| p as i32)
    });
    tmux.keys(&["fg", "Enter"]);
    tmux.wait_screen("fg to bring it back", |s| s.lines().any(|l| l.trim() == "bpsh 0 sleep 100"));
    // bash prints the job before it hands it the terminal: Ctrl-C goes to
    // the job only once its group is the terminal's foreground group.
    wait_for("the job to own the terminal", Duration::from_secs(10), || in_foreground(ghost).then_some(()));
    assert!(matches!(proc_state(remote), Some('S' | 'R')), "still running in the foreground");

    tmux.keys(&["C-c"]);
    wait_for("Ctrl-C to end the remote process", Duration::from_secs(10), || {
        proc_state(remote).is_none().then_some(())
    });
    tmux.keys(&["echo status=$?", "Enter"]);
    tmux.wait_screen("the shell to report 130", |s| s.contains("status=130"));
    wait_for("the master to forget it", Duration::from_secs(10), || remote_processes(&c).is_empty().then_some(()));
}

#[test]
fn sigstop_and_sigkill_of_a_ghost_reach_the_remote_process() {
    let c = cluster(1);
    let mut child = spawn_bpsh(&c, &["0", "sh", "-c", "echo $$; exec sleep 100"]);
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let pid: i32 = read_line(&mut out).trim().parse().expect("pid");
    // The master knows it by its command line after the exec, and the ghost
    // has re-exec'd too.
    let remote = tests::wait_remote(&c, 0, "sleep");
    wait_for("the ghost to re-exec", Duration::from_secs(10), || {
        (ps_args(pid).as_deref() == Some("sleep 100")).then_some(())
    });

    // SIGSTOP cannot be caught by the ghost: the master's eBPF probe sees it.
    kill(pid, libc::SIGSTOP);
    wait_for("SIGSTOP of the ghost to stop the remote process", Duration::from_secs(10), || {
        (proc_state(remote) == Some('T')).then_some(())
    });
    // The ghost stops as soon as it is scheduled (on a busy machine the
    // remote process can stop first).
    wait_for("the ghost to be stopped", Duration::from_secs(10), || (proc_state(pid) == Some('T')).then_some(()));
    kill(pid, libc::SIGCONT);
    wait_for("SIGCONT to resume the remote process", Duration::from_secs(10), || {
        matches!(proc_state(remote), Some('S' | 'R')).then_some(())
    });
    wait_for("the ghost to stay running", Duration::from_secs(10), || {
        matches!(proc_state(pid), Some('S' | 'R')).then_some(())
    });

    kill(pid, libc::SIGKILL);
    let status = collect(&mut child, Duration::from_secs(20), "bpsh").status;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    wait_for("SIGKILL of the ghost to end the remote process", Duration::from_secs(10), || {
        proc_state(remote).is_none().then_some(())
    });
    wait_for("the master to forget it", Duration::from_secs(10), || remote_processes(&c).is_empty().then_some(()));
}

#[test]
fn the_owning_user_signals_its_ghost_like_a_local_process() {
    let c = cluster(1);
    let as_user = "setpriv --reuid=4242 --regid=4242 --clear-groups";
    let script = format!(
        "exec {as_user} {} 0 sh -c 'trap \"echo got-usr1\" USR1; echo $$; while :; do sleep 0.05; done'",
        c.bin("bpsh").display()
    );
    let mut child = sh(&c, &script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn bpsh as uid 4242");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let pid: i32 = read_line(&mut out).trim().parse().expect("pid");
    let remote = c.host_pid(0, pid).expect("the remote shell");
    let user_kill = |sig: &str| {
        let out = run(&mut sh(&c, &format!("{as_user} kill -{sig} {pid}")));
        assert!(out.status.success(), "uid 4242 may signal its own ghost: {}", text(&out.stderr));
    };

    user_kill("USR1");
    assert_eq!(read_line(&mut out), "got-usr1\n");
    user_kill("STOP");
    wait_for("the owner's SIGSTOP to stop the remote process", Duration::from_secs(10), || {
        (proc_state(remote) == Some('T')).then_some(())
    });
    user_kill("CONT");
    wait_for("the owner's SIGCONT to resume it", Duration::from_secs(10), || {
        matches!(proc_state(remote), Some('S' | 'R')).then_some(())
    });
    user_kill("KILL");
    let status = collect(&mut child, Duration::from_secs(20), "bpsh").status;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    wait_for("the remote process to be gone", Duration::from_secs(10), || proc_state(remote).is_none().then_some(()));
}

/// The command line `ps` shows for `pid`.
/// Whether `pid`'s process group is the foreground group of its terminal.
fn in_foreground(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return false };
    // state ppid pgrp session tty_nr tpgid ...
    let f: Vec<&str> = after.split_whitespace().collect();
    f.len() > 5 && f[2] == f[5]
}

fn ps_args(pid: i32) -> Option<String> {
    let out = run(std::process::Command::new("ps").args(["-o", "args=", "-p", &pid.to_string()]));
    out.status.success().then(|| text(&out.stdout).trim().to_string())
}

/// The master's processes whose parent is `pid`, from /proc.
fn children_of(pid: i32) -> Vec<i32> {
    let mut kids: Vec<i32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|_| ppid_of(*p) == Some(pid)))
        .collect();
    kids.sort_unstable();
    kids
}

fn ppid_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn when_the_remote_process_execs_its_ghost_does_too_and_stays_connected() {
    let c = cluster(2);
    let script = "echo $$; exec sh -c 'read line; echo \"got $line\"; exec sleep 100'";
    let mut child = c
        .command("bpsh")
        .args(["0", "sh", "-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start bpsh");
    let bpsh = child.id() as i32;
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let pid: i32 = read_line(&mut out).trim().parse().expect("the remote shell prints its PID");

    // The first exec: the ghost shows the new shell, and its stdio still works.
    wait_for("the ghost to re-exec as the inner shell", Duration::from_secs(10), || {
        ps_args(pid).filter(|a| a.starts_with("sh -c read line")).map(|_| ())
    });
    use std::io::Write;
    child.stdin.as_mut().expect("stdin").write_all(b"hello\n").expect("write stdin");
    assert_eq!(read_line(&mut out), "got hello\n", "stdin and stdout survive the ghost's re-exec");

    // The second exec: `ps -o args` shows sleep, under bpsh, and bpstat -p maps it to node 0.
    wait_for("the ghost to re-exec as sleep", Duration::from_secs(10), || {
        (ps_args(pid).as_deref() == Some("sleep 100")).then_some(())
    });
    assert_eq!(ppid(pid), bpsh, "still bpsh's child, with the same PID");
    assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm").trim(), "sleep");
    let procs = remote_processes(&c);
    let p = procs.iter().find(|p| p["pid"].as_i64() == Some(pid.into())).expect("bpstat -p lists it");
    assert_eq!(p["node"].as_u64(), Some(0));
    assert_eq!(p["argv"], serde_json::json!(["sleep", "100"]));

    // The re-exec'd ghost still acts for the remote process.
    let remote = c.host_pid(0, pid).expect("the remote sleep, seen from here");
    assert_eq!(std::fs::read_to_string(format!("/proc/{remote}/comm")).expect("comm").trim(), "sleep");
    kill(pid, libc::SIGTERM);
    let status = collect(&mut child, Duration::from_secs(20), "bpsh").status;
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    wait_for("the remote sleep to be gone", Duration::from_secs(10), || proc_state(remote).is_none().then_some(()));
    assert!(proc_state(pid).is_none(), "no ghost left");
    assert!(remote_processes(&c).is_empty());
}

#[test]
fn processes_forked_on_the_node_get_ghosts_under_their_parents_ghost() {
    let c = cluster(2);
    let mut probes =
        ebpf_probes::Probes::load().unwrap_or_else(|e| panic!("load the eBPF probes (bash x.sh setup): {e}"));
    let mut child = spawn_bpsh(&c, &["0", "sh", "-c", "echo $$; sleep 100 & sleep 100 & wait; echo done"]);
    let bpsh = child.id() as i32;
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let shell: i32 = read_line(&mut out).trim().parse().expect("the remote shell prints its PID");
    assert_eq!(ppid(shell), bpsh);

    // Three ghosts: the shell's under bpsh, its two children's under it.
    let kids = wait_for("two ghosts under the shell's ghost", Duration::from_secs(10), || {
        let kids = children_of(shell);
        (kids.len() == 2 && kids.iter().all(|k| ps_args(*k).as_deref() == Some("sleep 100"))).then_some(kids)
    });
    let procs = remote_processes(&c);
    assert_eq!(procs.len(), 3, "{procs:#?}");
    for ghost in [shell, kids[0], kids[1]] {
        let p = procs.iter().find(|p| p["pid"].as_i64() == Some(ghost.into())).expect("bpstat -p lists each ghost");
        assert_eq!(p["node"].as_u64(), Some(0));
        // The node numbers its forks far from the master's PIDs, so the
        // ghosts got the same PIDs (the common case).
        assert_eq!(p["node_pid"].as_i64(), Some(ghost.into()), "{p}");
    }
    let remote: Vec<i32> = kids.iter().map(|k| c.host_pid(0, *k).expect("the remote child")).collect();
    for r in &remote {
        assert_eq!(std::fs::read_to_string(format!("/proc/{r}/comm")).expect("comm").trim(), "sleep");
    }

    // Killing a remote child on the node: its ghost exits with the same status.
    for k in &kids {
        probes.track(*k as u32).expect("watch the ghost's exit");
    }
    kill(remote[0], libc::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "the ghost of the killed child did not exit");
        match probes.next_event(left).expect("probe events") {
            Some(ebpf_probes::Event::Exit { pid, wait_status, .. }) if pid == kids[0] as u32 => break wait_status,
            _ => {}
        }
    };
    assert_eq!(status, libc::SIGTERM, "the ghost died of SIGTERM, as its process did");
    assert_eq!(proc_state(kids[1]).map(|s| s != 'Z'), Some(true), "the other ghost runs on");

    // Stopped on the node (not through its ghost): the ghost shows it stopped;
    // continued there: the ghost runs again.
    kill(remote[1], libc::SIGSTOP);
    wait_for("the ghost to stop as its process did", Duration::from_secs(10), || {
        (proc_state(kids[1]) == Some('T')).then_some(())
    });
    kill(remote[1], libc::SIGCONT);
    wait_for("the ghost to go on as its process did", Duration::from_secs(10), || {
        matches!(proc_state(kids[1]), Some('S' | 'R')).then_some(())
    });
    assert_eq!(proc_state(remote[1]).map(|s| s != 'T'), Some(true), "the process runs");
    // The same for the shell, which the slave started (and reaps).
    let remote_shell = c.host_pid(0, shell).expect("the remote shell");
    kill(remote_shell, libc::SIGSTOP);
    wait_for("the shell's ghost to stop", Duration::from_secs(10), || (proc_state(shell) == Some('T')).then_some(()));
    kill(remote_shell, libc::SIGCONT);
    wait_for("the shell's ghost to go on", Duration::from_secs(10), || {
        matches!(proc_state(shell), Some('S' | 'R')).then_some(())
    });

    // SIGKILL of the other ghost kills its process; the shell's wait returns and it exits.
    kill(kids[1], libc::SIGKILL);
    assert_eq!(read_line(&mut out), "done\n", "the shell's wait returned");
    let done = collect(&mut child, Duration::from_secs(20), "bpsh");
    assert!(done.status.success(), "{done:?}");
    for pid in [shell, kids[0], kids[1]] {
        wait_for("no ghost left", Duration::from_secs(10), || proc_state(pid).is_none().then_some(()));
    }
    for r in remote {
        wait_for("no process left on the node", Duration::from_secs(10), || proc_state(r).is_none().then_some(()));
    }
    assert!(remote_processes(&c).is_empty());
}

#[test]
fn a_forked_process_whose_pid_is_taken_here_gets_a_mapped_ghost() {
    let c = cluster(1);
    // A user's ghost without the capability cannot choose its children's
    // PIDs: every forked process's ghost is then mapped.
    let plain = c.state_dir().join("bpghost-plain");
    std::fs::copy(c.bin("bpghost"), &plain).expect("copy bpghost");
    let _ = std::process::Command::new("setcap").arg("-r").arg(&plain).output();
    let mut child = std::process::Command::new("setpriv")
        .env("BPROC_SOCKET", c.socket_path())
        .args(["--reuid=4242", "--regid=4242", "--clear-groups"])
        .arg(c.bin("bpsh"))
        .args(["0", "sh", "-c", "sleep 100 & p=$!; echo $p; wait $p; echo \"done $?\""])
        .env("BPROC_GHOST_BIN", &plain)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start bpsh");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let node_pid: i64 = read_line(&mut out).trim().parse().expect("the shell prints its child's PID");
    let ghost = wait_for("the child's ghost", Duration::from_secs(10), || {
        let p = remote_processes(&c).into_iter().find(|p| p["node_pid"].as_i64() == Some(node_pid))?;
        p["pid"].as_i64().filter(|pid| *pid > 0 && ps_args(*pid as i32).as_deref() == Some("sleep 100"))
    });
    assert_ne!(ghost, node_pid, "mapped");
    let table = text(&run(c.command("bpstat").arg("-p")).stdout);
    let row = table.lines().find(|l| l.split_whitespace().next() == Some(&ghost.to_string())).expect("a row");
    assert!(row.split_whitespace().any(|w| w == node_pid.to_string()), "bpstat -p shows both PIDs: {row}");
    // The mapped ghost still acts for its process.
    kill(ghost as i32, libc::SIGTERM);
    assert_eq!(read_line(&mut out), "done 143\n", "the remote shell saw its child die of SIGTERM");
    assert!(collect(&mut child, Duration::from_secs(20), "bpsh").status.success());
    wait_for("no ghost left", Duration::from_secs(10), || proc_state(ghost as i32).is_none().then_some(()));
}
