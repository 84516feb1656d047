//! rfork over CRIU (issue 5): a C program linked with `cc prog.c -lbproc`
//! forks itself onto a node; the copy there has the caller's memory, open
//! files and PID, and is the caller's child in the front end's process table.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tests::{cluster, collect, proc_state, remote_processes, text, wait_for};

/// The two front ends of the same checks: the C API (a program built with
/// `cc -lbproc`) and the Rust API (`bproc-rfork-rs`).
#[derive(Clone, Copy, Debug)]
enum Api {
    C,
    Rust,
}

/// `MODE args...` of the rfork program of `api` (rfork.c takes no mode word).
fn rfork_command(c: &tests::Cluster, api: Api) -> Command {
    let mut cmd = match api {
        Api::C => Command::new(tests::c_program("rfork", c.state_dir())),
        Api::Rust => {
            let mut cmd = Command::new(c.bin("bproc-rfork-rs"));
            cmd.arg("rfork");
            cmd
        }
    };
    cmd.envs(cluster_env(c));
    cmd
}

/// What a program needs to use the cluster `c`: its master's socket and
/// ghost program.
fn cluster_env(c: &tests::Cluster) -> [(&'static str, std::ffi::OsString); 2] {
    [("BPROC_SOCKET", c.socket_path().into()), ("BPROC_GHOST_BIN", c.bin("bpghost").into())]
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split_whitespace().nth(1)?.parse().ok()
}

fn read_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).expect("read a line");
    line
}

#[test]
fn a_c_program_rforks_itself_onto_a_node_with_its_memory_files_and_pid() {
    rforks_itself_onto_a_node_with_its_memory_files_and_pid(Api::C);
}

#[test]
fn a_rust_program_rforks_itself_onto_a_node_with_its_memory_files_and_pid() {
    rforks_itself_onto_a_node_with_its_memory_files_and_pid(Api::Rust);
}

fn rforks_itself_onto_a_node_with_its_memory_files_and_pid(api: Api) {
    let c = cluster(2);
    let gate = c.state_dir().join("gate");
    let mut parent = rfork_command(&c, api)
        .arg("1")
        .arg("/etc/services")
        .arg(&gate)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the rfork program");
    let parent_pid = parent.id() as i32;
    let mut out = BufReader::new(parent.stdout.take().expect("stdout"));
    let line = read_line(&mut out);
    let child: i32 = line
        .strip_prefix("parent: child ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("rfork failed: {line}"));

    // While it runs: the child is the parent's child here, and runs on node 1.
    assert_eq!(ppid(child), Some(parent_pid), "ps shows the child under its parent");
    let procs = remote_processes(&c);
    let p = procs.iter().find(|p| p["pid"].as_i64() == Some(child.into())).expect("bpstat -p lists the child");
    assert_eq!(p["node"].as_u64(), Some(1));
    assert_eq!(p["node_pid"].as_i64(), Some(child.into()), "the same PID on the node");
    let remote = c.host_pid(1, child).expect("the restored copy, seen from here");
    assert_ne!(remote, child, "the copy runs in the node's PID namespace");

    std::fs::write(&gate, b"").expect("open the gate");
    let size = std::fs::metadata("/etc/services").expect("stat").len();
    assert_eq!(
        read_line(&mut out),
        format!("child: node 1 pid {child} ppid-was {parent_pid} buffer intact offset {} of {size}\n", size / 2),
        "the child's printf reached the parent's stdout"
    );
    assert_eq!(read_line(&mut out), "parent: status exited=1 code=42\n");
    let done = collect(&mut parent, Duration::from_secs(20), "the rfork program");
    assert!(done.status.success(), "stderr: {}", text(&done.stderr));
    wait_for("the node's copy to be gone", Duration::from_secs(10), || proc_state(remote).is_none().then_some(()));
    assert!(proc_state(child).is_none(), "no ghost or zombie left");
    assert!(remote_processes(&c).is_empty(), "the master forgot it");
    // The node shares the master's host: the image came over a Unix socket.
    let log = std::fs::read_to_string(c.slave_log(1)).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.contains("image fetched") && l.contains("from=master (") && l.contains("images.sock)")),
        "node 1's slave log:\n{log}"
    );
}

#[test]
fn rfork_to_a_bad_node_fails_with_bprocs_errno_and_leaves_nothing() {
    // Node 0 lets only its owner (root) and group 0 run processes.
    let c = tests::cluster_with_config(2, Some("[[node]]\nnumber = 0\nmode = 0o110\n"));
    c.kill_slave(1, libc::SIGKILL).expect("kill node 1's slave");
    c.wait_node_state(1, "down", Duration::from_secs(10)).expect("node 1 down");
    for api in [Api::C, Api::Rust] {
        let run = |node: &str, uid: Option<u32>| {
            let prepared = rfork_command(&c, api);
            let mut cmd = match uid {
                Some(uid) => {
                    let mut cmd = Command::new("setpriv");
                    cmd.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()]);
                    cmd.arg(prepared.get_program()).args(prepared.get_args());
                    cmd.envs(cluster_env(&c));
                    cmd
                }
                None => prepared,
            };
            let out = cmd.args([node, "/etc/services"]).stdin(Stdio::null()).output().expect("run the rfork program");
            assert_eq!(out.status.code(), Some(3), "{api:?}: {} {}", text(&out.stdout), text(&out.stderr));
            text(&out.stdout)
        };
        assert!(run("7", None).contains("errno 300 (Invalid node number)"), "{api:?}: out of range");
        assert!(run("1", None).contains("errno 301 (Node is down)"), "{api:?}: down");
        let denied = run("0", Some(4242));
        assert!(denied.contains(&format!("errno {} (", libc::EPERM)), "{api:?}: no permission: {denied}");
    }
    // Nothing left: no ghost, no zombie here, no process or image anywhere.
    assert!(remote_processes(&c).is_empty());
    let master = c.master_pid().expect("the master's pid");
    let ours = |e: &std::fs::DirEntry| e.file_name().to_string_lossy().starts_with(&format!("{master}-"));
    let leftovers = std::fs::read_dir("/run/bproc/images").map(|d| d.flatten().filter(ours).count());
    assert_eq!(leftovers.unwrap_or(0), 0, "no checkpoint image of this master left");
}

/// Clears close-on-exec on `fd`, so that a child inherits it.
fn inheritable(fd: std::os::fd::RawFd) {
    // SAFETY: F_SETFD on a descriptor the caller owns.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
}

#[test]
fn an_rfork_caller_with_sockets_deleted_files_and_proc_files_open_and_its_output_on_a_socket_still_rforks() {
    // A caller started by a service may hold sockets (here a socket pair, a
    // TCP connection and an epoll set that watches it), a big deleted log
    // file and a file of /proc, and write to a socket.
    let c = cluster(1);
    let deleted = big_deleted_file();
    let proc_file = std::fs::File::open("/proc/self/status").expect("open a /proc file");
    for fd in [deleted.as_raw_fd(), proc_file.as_raw_fd()] {
        inheritable(fd);
    }
    let (held, _peer) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen on loopback");
    let tcp = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    // SAFETY: epoll_create1 and epoll_ctl on descriptors we own.
    let epoll = unsafe {
        let ep = libc::epoll_create1(0);
        assert!(ep >= 0, "epoll_create1");
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 0 };
        assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, tcp.as_raw_fd(), &mut ev), 0);
        std::os::fd::OwnedFd::from_raw_fd(ep)
    };
    for fd in [held.as_raw_fd(), listener.as_raw_fd(), tcp.as_raw_fd(), epoll.as_raw_fd()] {
        inheritable(fd);
    }
    let (out_here, out_there) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let mut parent = rfork_command(&c, Api::C)
        .args(["0", "/etc/services"])
        .stdin(Stdio::null())
        .stdout(std::os::fd::OwnedFd::from(out_there))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the rfork program");
    let mut out = BufReader::new(out_here);
    let line = read_line(&mut out);
    assert!(line.starts_with("parent: child "), "rfork failed: {line}");
    let line = read_line(&mut out);
    assert!(line.starts_with("child: node 0 pid ") && line.contains("buffer intact"), "{line}");
    assert_eq!(read_line(&mut out), "parent: status exited=1 code=42\n");
    let done = collect(&mut parent, Duration::from_secs(20), "the rfork program");
    assert!(done.status.success(), "stderr: {}", text(&done.stderr));
    wait_for("the master to forget it", Duration::from_secs(10), || remote_processes(&c).is_empty().then_some(()));
}

#[test]
fn a_failed_move_gives_the_caller_back_the_sockets_it_could_not_carry() {
    let c = cluster(1);
    let out = Command::new(c.bin("bproc-rfork-rs"))
        .args(["move-keeps-sockets", "7"])
        .envs(cluster_env(&c))
        .stdin(Stdio::null())
        .output()
        .expect("run bproc-rfork-rs");
    let stdout = text(&out.stdout);
    assert_eq!(stdout, "move failed: Invalid node number\nsocket still works\n", "{}", text(&out.stderr));
    assert!(out.status.success());
    // From a node: its slave starts the dump and the stream, the master
    // refuses the target; the process goes on where it was.
    let program = c.bin("bproc-rfork-rs");
    let mut bpsh = tests::spawn_bpsh(&c, &["0", program.to_str().expect("utf-8 path"), "move-keeps-sockets", "7"]);
    let out = collect(&mut bpsh, Duration::from_secs(60), "bpsh");
    assert_eq!(text(&out.stdout), "move failed: Invalid node number\nsocket still works\n", "{}", text(&out.stderr));
    assert!(out.status.success());
    assert!(remote_processes(&c).is_empty(), "nothing left");
}

/// A 2 MiB file already deleted (over CRIU's 1 MiB limit for copying one
/// into a checkpoint), as a log file rotated away may be.
fn big_deleted_file() -> std::fs::File {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!("bproc-deleted-{}", std::process::id()));
    let mut f = std::fs::File::options().read(true).write(true).create_new(true).open(&path).expect("create");
    std::fs::remove_file(&path).expect("delete it");
    f.write_all(&vec![b'x'; 2 << 20]).expect("fill it");
    f
}

/// Runs `program args...` on a terminal of its own (`script`), with the
/// cluster's environment; returns what the terminal showed.
fn on_terminal(c: &tests::Cluster, program: &Path, args: &[&str]) -> String {
    let line = std::iter::once(program.to_str().expect("utf-8 path")).chain(args.iter().copied()).collect::<Vec<_>>();
    let mut script = Command::new("script")
        .args(["-qec", &line.join(" "), "/dev/null"])
        .envs(cluster_env(c))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script (util-linux)");
    let out = collect(&mut script, Duration::from_secs(60), "script");
    assert!(out.status.success(), "{:?}: {} {}", out.status, text(&out.stdout), text(&out.stderr));
    text(&out.stdout).replace('\r', "")
}

#[test]
fn a_caller_on_a_terminal_rforks_and_moves_and_its_output_reaches_the_terminal() {
    // CRIU cannot restore a terminal that is a session's controlling one
    // elsewhere: the stdio is swapped for pipes before the checkpoint, and
    // the ghost takes the terminal back.
    let c = cluster(1);
    let rfork = tests::c_program("rfork", c.state_dir());
    let shown = on_terminal(&c, &rfork, &["0", "/etc/services"]);
    assert!(shown.contains("child: node 0 pid ") && shown.contains("buffer intact"), "{shown}");
    assert!(shown.contains("parent: status exited=1 code=42"), "{shown}");
    // bproc_move of a process of the front end whose output is a terminal:
    // it counts here, moves to node 0 and counts on there.
    let counter = vector(&c, Api::C);
    let shown = on_terminal(&c, &counter, &["counter", "0"]);
    let counts: Vec<(i32, i32)> = shown
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 6 && f[0] == "count").then(|| (f[3].parse().expect("node"), f[5].parse().expect("pid")))
        })
        .collect();
    let nodes: Vec<i32> = counts.iter().map(|(n, _)| *n).collect();
    assert_eq!(nodes, [-1, -1, -1, -1, -1, 0, 0, 0, 0, 0], "{shown}");
    assert!(counts.iter().all(|(_, p)| *p == counts[0].1), "the PID never changes: {shown}");
    wait_for("the master to forget them", Duration::from_secs(10), || remote_processes(&c).is_empty().then_some(()));
}

#[test]
fn an_rforked_copy_writes_to_its_callers_deleted_log_file() {
    // The caller's stdout and stderr: a deleted file of 2 MiB. Its content
    // does not travel; the copy's output still ends up in it.
    use std::io::{Read, Seek};
    let c = cluster(1);
    let mut log = big_deleted_file();
    let mut child = rfork_command(&c, Api::C)
        .args(["0", "/etc/services"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log.try_clone().expect("dup"))
        .spawn()
        .expect("run the rfork program");
    let out = collect(&mut child, Duration::from_secs(60), "the rfork program");
    assert!(out.status.success(), "{:?}", out.status);
    let mut written = String::new();
    log.seek(std::io::SeekFrom::Start(2 << 20)).expect("seek");
    log.read_to_string(&mut written).expect("read the log");
    assert!(written.contains("child: node 0 pid ") && written.contains("buffer intact"), "{written}");
    assert!(written.contains("parent: status exited=1 code=42"), "{written}");
    wait_for("the master to forget it", Duration::from_secs(10), || remote_processes(&c).is_empty().then_some(()));
}

/// The vector program of `api`.
fn vector(c: &tests::Cluster, api: Api) -> PathBuf {
    match api {
        Api::C => tests::c_program("vector", c.state_dir()),
        Api::Rust => c.bin("bproc-rfork-rs"),
    }
}

fn run_vector(c: &tests::Cluster, program: &Path, args: &[&str]) -> (String, std::process::ExitStatus) {
    let out = Command::new(program)
        .args(args)
        .envs(cluster_env(c))
        .stdin(Stdio::null())
        .output()
        .expect("run the vector program");
    (text(&out.stdout), out.status)
}

/// A cluster of nine nodes whose last one is down.
fn nine_nodes_one_down() -> tests::Cluster {
    let c = cluster(9);
    c.kill_slave(8, libc::SIGKILL).expect("kill node 8's slave");
    c.wait_node_state(8, "down", Duration::from_secs(10)).expect("node 8 down");
    c
}

const NODES: [&str; 9] = ["0", "1", "2", "3", "4", "5", "6", "7", "8"];

#[test]
fn vrfork_to_eight_nodes_gives_eight_waitable_children_and_an_errno_for_a_down_node() {
    let c = nine_nodes_one_down();
    for api in [Api::C, Api::Rust] {
        let program = vector(&c, api);
        let mut args = vec!["vrfork"];
        args.extend(NODES);
        let (out, status) = run_vector(&c, &program, &args);
        // On failure, what the master said too.
        let log = std::fs::read_to_string(c.master_log()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let out = format!("{out}\n--- master log, last lines first:\n{}", tail.join("\n"));
        assert!(status.success(), "{api:?}: {out}");
        for i in 0..8 {
            assert!(out.contains(&format!("vrfork child {i} on node {i} pid ")), "child {i} on its own node:\n{out}");
            assert!(out.contains(&format!("pids[{i}] = 0\n")), "a PID for node {i}:\n{out}");
            assert!(out.contains(&format!("child {i} exit {}\n", 10 + i)), "child {i} waited for:\n{out}");
        }
        assert!(out.contains("pids[8] = -301 Node is down"), "the down node's slot:\n{out}");
        let mut pids: Vec<&str> =
            out.lines().filter(|l| l.starts_with("vrfork child ")).filter_map(|l| l.split(" pid ").nth(1)).collect();
        pids.sort();
        pids.dedup();
        assert_eq!(pids.len(), 8, "every copy has a PID of its own:\n{out}");
        wait_for("the master to forget them", Duration::from_secs(10), || {
            remote_processes(&c).is_empty().then_some(())
        });
    }
    // One image for all: it left the front end once per vrfork, to one
    // node; the others fetched it from nodes that had it (a tree).
    let fetches: Vec<String> = (0..8)
        .flat_map(|n| {
            let log = std::fs::read_to_string(c.slave_log(n)).unwrap_or_default();
            log.lines().filter(|l| l.contains("image fetched")).map(String::from).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(fetches.len(), 16, "8 copies, twice: {fetches:#?}");
    let from_master = fetches.iter().filter(|l| l.contains("from=master")).count();
    assert_eq!(from_master, 2, "the master sent the image once per vrfork: {fetches:#?}");
    // All on one host: over Unix sockets (the master's, the peers').
    assert!(
        fetches.iter().all(|l| (l.contains("from=master (") && l.contains("images.sock)"))
            || (l.contains("from=10.77.") && l.contains("peer-") && l.contains(".sock)"))),
        "{fetches:#?}"
    );
}

#[test]
fn execmove_and_vexecmove_run_programs_on_nodes_with_bproc_rank() {
    let c = nine_nodes_one_down();
    for api in [Api::C, Api::Rust] {
        let program = vector(&c, api);
        // execmove: the caller becomes the program on node 3, keeping its PID.
        let (out, status) = run_vector(&c, &program, &["execmove", "3"]);
        let caller = out.lines().find_map(|l| l.strip_prefix("caller pid ")).expect("caller pid");
        assert!(out.contains(&format!("execmove pid {caller} on n3\n")), "{out}");
        assert_eq!(status.code(), Some(9), "the caller ends as the program did");
        // vexecmove: one program per node, ranked; the down node gets its errno.
        let mut args = vec!["vexecmove"];
        args.extend(NODES);
        let (out, status) = run_vector(&c, &program, &args);
        assert!(status.success(), "{out}");
        for i in 0..8 {
            assert!(out.contains(&format!("rank {i:07} on n{i}\n")), "rank {i} on node {i}:\n{out}");
            assert!(out.contains(&format!("child {i} exit {}\n", 10 + i)), "{out}");
        }
        assert!(out.contains("pids[8] = -301 Node is down"), "{out}");
        wait_for("the master to forget them", Duration::from_secs(10), || {
            remote_processes(&c).is_empty().then_some(())
        });
    }
}

#[test]
fn killing_the_slave_during_a_one_gib_migration_fails_the_rfork_and_leaves_nothing() {
    let mut c = cluster(2);
    let program = tests::c_program("rfork", c.state_dir());
    let master = c.master_pid().expect("the master's pid");
    let mut parent = Command::new(&program)
        .args(["1", "/etc/services"])
        .env("RFORK_MB", "1024")
        .envs(cluster_env(&c))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the rfork program");
    // The image is dumped; the node is fetching and restoring it: kill the node's slave now.
    wait_for("the 1 GiB checkpoint to be written", Duration::from_secs(60), || {
        let dirs = std::fs::read_dir("/run/bproc/images").ok()?;
        dirs.flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{master}-")))
            // CRIU writes its statistics last.
            .find(|e| e.path().join("stats-dump").exists())
            .map(|_| ())
    });
    c.kill_slave(1, libc::SIGKILL).expect("kill node 1's slave");
    let out = collect(&mut parent, Duration::from_secs(60), "the rfork program");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "rfork failed: {stdout} {}", text(&out.stderr));
    assert!(stdout.contains("errno 303 (Slave node died)"), "{stdout}");
    // No ghost or zombie (the program reaped its child), nothing in the tables, no image.
    assert!(remote_processes(&c).is_empty());
    let ours = |e: &std::fs::DirEntry| e.file_name().to_string_lossy().starts_with(&format!("{master}-"));
    wait_for("the image to be removed", Duration::from_secs(20), || {
        (std::fs::read_dir("/run/bproc/images").map(|d| d.flatten().filter(ours).count()).unwrap_or(0) == 0)
            .then_some(())
    });
    // The node comes back and works.
    c.start_slave(1).expect("restart the slave");
    c.wait_node_state(1, "up", Duration::from_secs(20)).expect("node 1 up again");
    let ok = Command::new(c.bin("bpsh")).args(["1", "true"]).env("BPROC_SOCKET", c.socket_path()).status();
    assert!(ok.expect("bpsh").success());
}

#[test]
fn bproc_move_takes_a_c_counter_from_node_to_node_to_the_front_end_and_back() {
    move_counter(Api::C);
}

#[test]
fn bproc_move_takes_a_rust_counter_from_node_to_node_to_the_front_end_and_back() {
    move_counter(Api::Rust);
}

fn move_counter(api: Api) {
    let c = tests::cluster_with_config(3, Some("front_end_node = true\n"));
    // The front end's own node registers as node -1 (u32::MAX on the wire).
    wait_for("the front end's node to be up", Duration::from_secs(20), || {
        let log = std::fs::read_to_string(c.master_log()).ok()?;
        log.lines().any(|l| l.contains("node up") && l.contains("4294967295")).then_some(())
    });
    let counter = vector(&c, api);
    let counter = counter.to_str().expect("utf-8 path");
    let mut bpsh = tests::spawn_bpsh(&c, &["0", counter, "counter", "1", "2", "-1", "0"]);
    let bpsh_pid = bpsh.id() as i32;
    let mut out = BufReader::new(bpsh.stdout.take().expect("stdout"));
    let mut seen = Vec::new();
    for expected in 1..=25u64 {
        let line = read_line(&mut out);
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(f.len() == 6 && f[0] == "count" && f[2] == "node" && f[4] == "pid", "line {expected}: {line:?}");
        let (count, node, pid): (u64, i32, i32) =
            (f[1].parse().expect("count"), f[3].parse().expect("node"), f[5].parse().expect("pid"));
        assert_eq!(count, expected, "the count never goes back (or skips)");
        // ps shows it all along: its ghost, under bpsh, with the same PID.
        assert_eq!(ppid(pid), Some(bpsh_pid), "line {line:?}: the ghost is bpsh's child");
        seen.push((node, pid));
    }
    let route: Vec<i32> = seen.iter().map(|(n, _)| *n).collect();
    let expected: Vec<i32> = [0, 1, 2, -1, 0].iter().flat_map(|n| [*n; 5]).collect();
    assert_eq!(route, expected, "0 -> 1 -> 2 -> front end -> 0");
    assert!(seen.iter().all(|(_, p)| *p == seen[0].1), "the PID never changes: {seen:?}");
    let done = collect(&mut bpsh, Duration::from_secs(20), "bpsh");
    assert!(done.status.success(), "its parent's wait works at the end: {:?} {}", done.status, text(&done.stderr));
    assert!(proc_state(seen[0].1).is_none(), "no ghost left");
    wait_for("the master to forget it", Duration::from_secs(10), || remote_processes(&c).is_empty().then_some(()));
}

/// Accepts one connection on the front end's address in the cluster (in its
/// hub network namespace): returns the port, and a thread that gives what
/// came.
fn front_end_listener(c: &tests::Cluster) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    use std::io::Read;
    let ns = std::fs::File::open(format!("/run/netns/{}", c.hub_netns())).expect("hub netns");
    let ip = *c.master_addr().ip();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns into the hub");
        let listener = std::net::TcpListener::bind((ip, 0)).expect("listen on the front end's address");
        tx.send(listener.local_addr().expect("addr").port()).expect("send the port");
        // Nothing, if no connection comes within 30 s.
        listener.set_nonblocking(true).expect("nonblocking");
        let Some(mut conn) = vm_harness::wait_for(Duration::from_secs(30), Duration::from_millis(10), || {
            listener.accept().ok().map(|(conn, _)| conn)
        }) else {
            return Vec::new();
        };
        conn.set_nonblocking(false).expect("blocking");
        conn.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let mut got = Vec::new();
        let _ = conn.read_to_end(&mut got);
        got
    });
    (rx.recv_timeout(Duration::from_secs(10)).expect("the listener's port"), thread)
}

#[test]
fn io_lists_put_files_and_sockets_on_the_descriptors_of_processes_on_nodes() {
    let c = cluster(2);
    let program = tests::c_program("io", c.state_dir());
    let run = |args: &[&str]| {
        let out = tests::run(Command::new(&program).args(args).envs(cluster_env(&c)));
        (text(&out.stdout), out.status, text(&out.stderr))
    };
    // rfork_io: stdout a socket back to the front end (address 0.0.0.0),
    // announced by the pid and fd; stderr a file opened on node 1.
    let dir = c.state_dir().join("io-files");
    std::fs::create_dir_all(&dir).expect("dir");
    let err_file = dir.join("stderr");
    let (port, listener) = front_end_listener(&c);
    let (out, status, err) = run(&["rfork", "1", &port.to_string(), err_file.to_str().expect("utf-8")]);
    assert!(status.success(), "{status:?}: {out} {err}");
    let pid: i32 = out
        .lines()
        .find_map(|l| l.strip_prefix("parent: child "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no child: {out} {err}"));
    assert!(out.contains("parent: status 42"), "{out}");
    assert!(!out.contains("rfork child"), "the child's stdout is the socket, not the relay: {out}");
    let got = listener.join().expect("listener");
    assert!(got.len() > 8, "{got:?}");
    assert_eq!(&got[..4], &pid.to_ne_bytes(), "the pid first");
    assert_eq!(&got[4..8], &1i32.to_ne_bytes(), "then the fd");
    assert_eq!(text(&got[8..]), format!("rfork child on node 1 pid {pid}\n"));
    assert_eq!(std::fs::read_to_string(&err_file).expect("stderr file"), format!("to the file from {pid}\n"));
    // execmove_io: the caller itself moves, sets its stdout up on the node
    // and becomes sh there; its parent sees sh's status.
    let log = dir.join("execmove");
    let mut child = Command::new(&program)
        .args(["execmove", "0", log.to_str().expect("utf-8")])
        .envs(cluster_env(&c))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the io program");
    let caller = child.id();
    let done = collect(&mut child, Duration::from_secs(60), "execmove_io");
    assert_eq!(done.status.code(), Some(7), "{} {}", text(&done.stdout), text(&done.stderr));
    assert_eq!(std::fs::read_to_string(&log).expect("log"), format!("execmove pid {caller} on n0\n"));
    // vexecmove_io: every rank's stdout appends to one file.
    let log = dir.join("vexecmove");
    let (out, status, err) = run(&["vexecmove", log.to_str().expect("utf-8"), "0", "1"]);
    assert!(status.success(), "{status:?}: {out} {err}");
    assert!(out.contains("rank 0 pid ") && out.contains("rank 1 pid "), "{out}");
    assert!(out.lines().filter(|l| l.ends_with(" status 0")).count() == 2, "{out}");
    let mut lines: Vec<String> = std::fs::read_to_string(&log).expect("log").lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, ["rank 0000000 on n0", "rank 0000001 on n1"]);
    // The Rust API: rfork_io and vexecmove_io, stdout appended to a file.
    let log = dir.join("rust");
    let out = tests::run(
        Command::new(c.bin("bproc-rfork-rs"))
            .args(["io", log.to_str().expect("utf-8"), "1", "0"])
            .envs(cluster_env(&c)),
    );
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said} {}", text(&out.stderr));
    assert!(said.contains(" status Some(42)") && said.contains("rank 0 status Some(0)"), "{said}");
    assert!(said.contains("rank 1 status Some(0)"), "{said}");
    let written = std::fs::read_to_string(&log).expect("log");
    assert!(written.contains("rfork child on node 1 pid "), "{written}");
    assert!(written.contains("rank 0000000 on n1\n") && written.contains("rank 0000001 on n0\n"), "{written}");
    wait_for("the master to forget them", Duration::from_secs(10), || remote_processes(&c).is_empty().then_some(()));
}
