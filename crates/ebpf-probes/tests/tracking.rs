//! The probes, for real: load them into the running kernel, track process trees started here and
//! check the events. Needs root (CI runs as root) and the probe toolchain (`bash x.sh setup`); a test
//! never skips, it fails saying what is missing. No fixed sleeps: every wait is for an event, with a
//! deadline.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::process::ExitStatusExt as _,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ebpf_probes::{Event, Probes};

const DEADLINE: Duration = Duration::from_secs(20);

fn load() -> Probes {
    match Probes::load() {
        Ok(probes) => probes,
        Err(err) => panic!(
            "loading the eBPF probes failed: {err}\nthese tests run as root, on a machine prepared with \
             `bash x.sh setup` (llvm-22-dev, the pinned nightly with rust-src, bpf-linker 0.13)"
        ),
    }
}

/// `sh -c script` that first blocks reading one line from stdin, so the test can track its pid
/// before it forks or execs anything; [`release`] lets it go. Returns once the shell runs its script
/// (it says so on stdout): spawn() returns as soon as the exec releases the parent, before the exec
/// tracepoint of the shell itself has fired, and that exec is not what the tests look for.
fn gated(script: &str) -> Child {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("echo ready; read gate; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("piped stdout")).read_line(&mut line).expect("read ready");
    assert_eq!(line, "ready\n");
    child
}

fn release(child: &mut Child) {
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(b"go\n").expect("release the gated shell");
}

/// Reads events until `done` holds for what was read, failing at the deadline.
fn collect_until(probes: &mut Probes, mut done: impl FnMut(&[Event]) -> bool) -> Vec<Event> {
    let end = Instant::now() + DEADLINE;
    let mut events = Vec::new();
    while !done(&events) {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out waiting for events; got {events:#?}");
        if let Some(event) = probes.next_event(left).expect("read probe events") {
            events.push(event);
        }
    }
    events
}

fn pid(child: &Child) -> u32 {
    child.id()
}

#[test]
fn fork_exec_exit_of_a_tracked_tree_and_nothing_of_an_untracked_one() {
    let mut probes = load();

    // The untracked process runs (forks, execs, exits) while the tracked shell is alive and tracked.
    let mut shell = gated("sleep 0.01 & wait; exit 3");
    let shell_pid = pid(&shell);
    probes.track(shell_pid).expect("track");
    assert!(probes.is_tracked(shell_pid).expect("is_tracked"));
    let untracked = Command::new("sh").args(["-c", "sleep 0.01 & wait; exit 4"]).status().expect("run sh");
    assert_eq!(untracked.code(), Some(4));

    release(&mut shell);
    let events =
        collect_until(&mut probes, |evs| evs.iter().any(|e| matches!(e, Event::Exit { pid, .. } if *pid == shell_pid)));
    assert_eq!(shell.wait().expect("wait shell").into_raw(), 3 << 8);

    let child = events
        .iter()
        .find_map(|e| match e {
            Event::Fork { parent, child, .. } if *parent == shell_pid => Some(*child),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no fork of the grandchild in {events:#?}"));
    assert!(events.contains(&Event::Exec { pid: child, ns_pid: child, comm: "sleep".into() }), "{events:#?}");
    assert!(events.contains(&Event::Exit { pid: child, ns_pid: child, wait_status: 0 }), "{events:#?}");
    assert!(events.contains(&Event::Exit { pid: shell_pid, ns_pid: shell_pid, wait_status: 3 << 8 }), "{events:#?}");
    // The grandchild's exit comes before the shell's (the shell waited for it).
    let pos = |target: &Event| events.iter().position(|e| e == target).expect("present");
    assert!(
        pos(&Event::Exit { pid: child, ns_pid: child, wait_status: 0 })
            < pos(&Event::Exit { pid: shell_pid, ns_pid: shell_pid, wait_status: 768 })
    );

    // Exactly the tracked tree, nothing else: the untracked sh and its sleep never appear (they ran and
    // exited before the tracked shell was released, so their events would have come first).
    for event in &events {
        assert!(event.pid() == shell_pid || event.pid() == child, "event about an untracked process: {event:?}");
    }
    assert!(!probes.is_tracked(shell_pid).expect("is_tracked"), "exit removes the pid");
    assert!(!probes.is_tracked(child).expect("is_tracked"), "exit removes the pid");
}

#[test]
fn exec_reports_the_new_comm_and_exit_codes_are_exact() {
    let mut probes = load();
    let mut shell = gated("exec sh -c 'exit 7'");
    let shell_pid = pid(&shell);
    probes.track(shell_pid).expect("track");
    release(&mut shell);
    let events = collect_until(&mut probes, |evs| evs.iter().any(|e| matches!(e, Event::Exit { .. })));
    assert_eq!(
        events,
        vec![
            Event::Exec { pid: shell_pid, ns_pid: shell_pid, comm: "sh".into() },
            Event::Exit { pid: shell_pid, ns_pid: shell_pid, wait_status: 7 << 8 }
        ]
    );
    assert_eq!(shell.wait().expect("wait").into_raw(), 7 << 8);

    let mut shell = gated("exec true");
    let shell_pid = pid(&shell);
    probes.track(shell_pid).expect("track");
    release(&mut shell);
    let events = collect_until(&mut probes, |evs| evs.iter().any(|e| matches!(e, Event::Exit { .. })));
    assert_eq!(
        events,
        vec![
            Event::Exec { pid: shell_pid, ns_pid: shell_pid, comm: "true".into() },
            Event::Exit { pid: shell_pid, ns_pid: shell_pid, wait_status: 0 }
        ]
    );
    assert!(shell.wait().expect("wait").success());
}

/// `sh -c 'kill -SIG pid'`: the builtin kill, so the sender is the sh itself. Returns its pid.
fn send(sig: &str, target: u32) -> u32 {
    let mut kill = Command::new("sh").args(["-c", &format!("kill -{sig} {target}")]).spawn().expect("spawn kill");
    let sender = kill.id();
    assert!(kill.wait().expect("wait kill").success());
    sender
}

#[test]
fn signals_to_a_tracked_pid_are_reported_with_sender_and_a_kill_gives_status_9() {
    let mut probes = load();
    let mut victim = gated("exec sleep 100");
    let victim_pid = pid(&victim);
    probes.track(victim_pid).expect("track");
    release(&mut victim);
    collect_until(&mut probes, |evs| {
        evs.contains(&Event::Exec { pid: victim_pid, ns_pid: victim_pid, comm: "sleep".into() })
    });

    let sender = send("STOP", victim_pid);
    let events =
        collect_until(&mut probes, |evs| evs.contains(&Event::Signal { target: victim_pid, sender, signo: 19 }));
    // The victim acts on it by default: it stops (the delivery may come after the generation).
    let stopped = Event::Deliver { pid: victim_pid, ns_pid: victim_pid, signo: 19, default_action: true };
    if !events.contains(&stopped) {
        collect_until(&mut probes, |evs| evs.contains(&stopped));
    }

    // A signal to an untracked process is not reported; the KILL after it is, in order.
    let mut bystander = Command::new("sleep").arg("100").spawn().expect("spawn sleep");
    let bystander_sender = send("TERM", bystander.id());
    let sender = send("KILL", victim_pid);
    let events = collect_until(&mut probes, |evs| {
        evs.iter().any(|e| matches!(e, Event::Exit { pid, .. } if *pid == victim_pid))
    });
    assert!(events.contains(&Event::Signal { target: victim_pid, sender, signo: 9 }), "{events:#?}");
    assert!(events.contains(&Event::Exit { pid: victim_pid, ns_pid: victim_pid, wait_status: 9 }), "{events:#?}");
    assert!(
        events.iter().all(|e| e.pid() == victim_pid),
        "bystander (pid {}, signalled by {bystander_sender}) leaked: {events:#?}",
        bystander.id()
    );
    assert_eq!(victim.wait().expect("wait victim").into_raw(), 9);
    assert_eq!(bystander.wait().expect("wait bystander").signal(), Some(15));
}

#[test]
fn threads_of_a_tracked_process_are_not_processes() {
    let mut probes = load();
    let me = std::process::id();
    probes.track(me).expect("track self");

    let tid = std::thread::spawn(|| nix::unistd::gettid().as_raw() as u32).join().expect("thread");
    assert_ne!(tid, me);
    // A real child after the thread: once its fork is seen, any event about the thread came before.
    let mut child = Command::new("true").spawn().expect("spawn true");
    let child_pid = child.id();
    let events = collect_until(&mut probes, |evs| {
        evs.contains(&Event::Fork { parent: me, child: child_pid, ns_parent: me, ns_child: child_pid })
    });
    child.wait().expect("wait true");
    probes.untrack(me).expect("untrack self");
    assert!(!probes.is_tracked(me).expect("is_tracked"));
    assert!(
        events.iter().all(|e| !matches!(e, Event::Fork { child, .. } if *child == tid)),
        "a thread was reported as a process: {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stream_reports_the_exit_status_of_a_signal_death() {
    let probes = load();
    let mut probes = probes.into_async().expect("register the ring buffer with tokio");
    let tracker = probes.tracker();
    let mut shell = gated("kill -SEGV $$");
    let shell_pid = pid(&shell);
    tracker.track(shell_pid).expect("track");
    release(&mut shell);
    let mut seen = Vec::new();
    let exit = tokio::time::timeout(DEADLINE, async {
        loop {
            let event = probes.next_event().await.expect("read events");
            seen.push(event.clone());
            if let Event::Exit { wait_status, .. } = event {
                return wait_status;
            }
        }
    })
    .await
    .expect("exit event within the deadline");
    // Death by SIGSEGV: status 11, plus 0x80 if a core was dumped.
    let status = shell.wait().expect("wait").into_raw();
    assert_eq!(exit, status);
    assert_eq!(exit & 0x7f, 11);
    assert!(seen.contains(&Event::Signal { target: shell_pid, sender: shell_pid, signo: 11 }), "{seen:#?}");
}

/// Set in the copy of this test binary that runs as PID 1 of a new PID namespace.
const IN_NAMESPACE: &str = "BPROC_PROBES_TEST_IN_NAMESPACE";

/// A daemon that is PID 1 of a namespace node tracks itself without knowing its global pid, and
/// gets its children's pids as its namespace numbers them. The test binary runs itself under
/// `unshare --pid --fork --mount-proc`; that copy loads the probes, starts `sh -c 'sleep 0 & wait;
/// exit 3'` and prints what it saw.
#[test]
fn a_pid_namespace_init_tracks_itself_with_its_own_pids() {
    if std::env::var_os(IN_NAMESPACE).is_some() {
        assert_eq!(std::process::id(), 1, "runs as PID 1 of its namespace");
        let mut probes = match Probes::load_tracking_self() {
            Ok(p) => p,
            Err(err) => panic!("loading the eBPF probes failed: {err}"),
        };
        let mut child = Command::new("sh").args(["-c", "sleep 0 & wait; exit 3"]).spawn().expect("spawn sh");
        let sh = child.id();
        let events = collect_until(&mut probes, |evs| {
            evs.iter().any(|e| matches!(e, Event::Exit { ns_pid, .. } if *ns_pid == sh))
        });
        assert_eq!(child.wait().expect("wait sh").into_raw(), 3 << 8);
        for event in events {
            println!("EVENT {event:?}");
        }
        println!("SH {sh}");
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(exe)
        .args(["a_pid_namespace_init_tracks_itself_with_its_own_pids", "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NAMESPACE, "1")
        .output()
        .expect("run unshare (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the copy in the namespace failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    let sh: u32 = text.lines().find_map(|l| l.strip_prefix("SH ")).and_then(|v| v.trim().parse().ok()).expect("sh pid");
    assert!(sh < 100, "the namespace numbers its own processes: sh is {sh}");
    let fork = text
        .lines()
        .find(|l| l.contains("Fork") && l.contains(&format!("ns_child: {sh} ")) && l.contains("ns_parent: 1,"))
        .unwrap_or_else(|| panic!("no fork of sh by PID 1 in:\n{text}"));
    assert!(!fork.contains(&format!("child: {sh},")), "the global pid differs from the namespace one: {fork}");
    assert!(text.contains(&format!("ns_pid: {sh}, comm: \"sh\"")), "exec of sh:\n{text}");
    assert!(text.contains(&format!("ns_pid: {sh}, wait_status: 768")), "exit of sh:\n{text}");
    assert!(text.contains(&format!("ns_parent: {sh},")), "the sleep forked by sh:\n{text}");
}
