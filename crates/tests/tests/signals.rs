//! Signals sent to bpsh reach the remote process; Ctrl-Z stops both ends.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use tests::{cluster, collect, kill, proc_state, spawn_bpsh, wait_for, wait_remote};

#[test]
fn sigint_reaches_a_trap_on_the_node() {
    let c = cluster(1);
    let script = "trap 'echo got-int; exit 5' INT; echo ready; while :; do sleep 0.05; done";
    let mut child = spawn_bpsh(&c, &["0", "sh", "-c", script]);
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "ready\n");
    kill(child.id() as i32, libc::SIGINT);
    line.clear();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "got-int\n");
    let out = collect(&mut child, Duration::from_secs(20), "bpsh");
    assert_eq!(out.status.code(), Some(5));

    // The other forwarded signals reach the remote process too.
    for (sig, name) in
        [(libc::SIGTERM, "TERM"), (libc::SIGHUP, "HUP"), (libc::SIGUSR1, "USR1"), (libc::SIGQUIT, "QUIT")]
    {
        let script = format!("trap 'exit 42' {name}; echo ready; while :; do sleep 0.05; done");
        let mut child = spawn_bpsh(&c, &["0", "sh", "-c", &script]);
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read");
        kill(child.id() as i32, sig);
        let out = collect(&mut child, Duration::from_secs(20), "bpsh");
        assert_eq!(out.status.code(), Some(42), "SIG{name} reached the trap");
    }
}

#[test]
fn sigtstp_stops_both_ends_and_sigcont_resumes_both() {
    let c = cluster(1);
    let mut child = spawn_bpsh(&c, &["0", "sleep", "100"]);
    let bpsh = child.id() as i32;
    let remote = wait_remote(&c, 0, "sleep");

    kill(bpsh, libc::SIGTSTP);
    wait_for("the remote process to stop", Duration::from_secs(10), || (proc_state(remote) == Some('T')).then_some(()));
    wait_for("bpsh to stop", Duration::from_secs(10), || (proc_state(bpsh) == Some('T')).then_some(()));

    kill(bpsh, libc::SIGCONT);
    wait_for("the remote process to resume", Duration::from_secs(10), || {
        matches!(proc_state(remote), Some('S' | 'R')).then_some(())
    });
    wait_for("bpsh to resume", Duration::from_secs(10), || matches!(proc_state(bpsh), Some('S' | 'R')).then_some(()));

    kill(bpsh, libc::SIGTERM);
    let out = collect(&mut child, Duration::from_secs(20), "bpsh");
    assert_eq!(out.status.signal(), Some(libc::SIGTERM));
    wait_for("the remote sleep to be gone", Duration::from_secs(10), || proc_state(remote).is_none().then_some(()));
}
