//! A node whose slave dies or whose link is cut goes down; its processes are
//! reported killed by SIGKILL; a restarted slave brings the node back.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use tests::{cluster, collect, proc_state, run, spawn_bpsh, text, wait_for, wait_remote, NODE_TIMEOUT_MS};

/// The global PID (the ghost's) of the one remote process.
fn ghost_pid(c: &tests::Cluster) -> i32 {
    let procs = tests::remote_processes(c);
    procs[0]["pid"].as_i64().expect("a global pid") as i32
}

/// "Within the configured timeout": the node timeout, plus one tick of the
/// master's clock (half a heartbeat) and slack for polling on a loaded machine.
fn down_within() -> Duration {
    Duration::from_millis(NODE_TIMEOUT_MS + 1000)
}

#[test]
fn killed_slave_takes_its_node_down_and_a_restart_brings_it_back() {
    let mut c = cluster(2);
    let mut child = spawn_bpsh(&c, &["1", "sleep", "100"]);
    let remote = wait_remote(&c, 1, "sleep");
    let ghost = ghost_pid(&c);

    c.kill_slave(1, libc::SIGKILL).expect("kill -9 the slave");
    c.wait_node_state(1, "down", down_within()).expect("node 1 down within the timeout");
    let out = collect(&mut child, Duration::from_secs(20), "bpsh");
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "stderr: {}", text(&out.stderr));
    assert!(proc_state(ghost).is_none(), "the ghost died (of SIGKILL, as bpsh shows) and was reaped");
    wait_for("the node's process to be gone", Duration::from_secs(10), || proc_state(remote).is_none().then_some(()));

    let out = run(c.command("bpsh").args(["1", "true"]));
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("node 1"));

    c.start_slave(1).expect("restart the slave");
    c.wait_node_state(1, "up", Duration::from_secs(20)).expect("node 1 up again");
    let out = run(c.command("bpsh").args(["1", "hostname"]));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "n1\n");
}

#[test]
fn cut_link_takes_the_node_down_and_the_slave_comes_back_clean() {
    let c = cluster(2);
    let mut probes =
        ebpf_probes::Probes::load().unwrap_or_else(|e| panic!("load the eBPF probes (bash x.sh setup): {e}"));
    // A shell and the sleep it forked: two processes, two ghosts.
    let mut child = spawn_bpsh(&c, &["0", "sh", "-c", "sleep 100 & wait"]);
    let (forked, forked_ghost) = wait_for("the forked sleep and its ghost", Duration::from_secs(20), || {
        let p = tests::remote_processes(&c).into_iter().find(|p| p["argv"][0].as_str() == Some("sleep"))?;
        let ghost = p["pid"].as_i64().filter(|g| *g > 0)? as i32;
        Some((c.host_pid(0, p["node_pid"].as_i64()? as i32)?, ghost))
    });
    let shell = wait_remote(&c, 0, "sh");
    let ghost = tests::remote_processes(&c)
        .iter()
        .find(|p| p["argv"][0].as_str() == Some("sh"))
        .and_then(|p| p["pid"].as_i64())
        .expect("the shell's ghost") as i32;
    probes.track(forked_ghost as u32).expect("watch the forked process's ghost");

    c.cut_link(0).expect("cut the link");
    c.wait_node_state(0, "down", down_within()).expect("node 0 down within the timeout");
    let out = collect(&mut child, Duration::from_secs(20), "bpsh");
    assert_eq!(out.status.signal(), Some(libc::SIGKILL));
    assert!(proc_state(ghost).is_none(), "the ghost died (of SIGKILL, as bpsh shows) and was reaped");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "the forked process's ghost did not exit");
        if let Some(ebpf_probes::Event::Exit { pid, wait_status, .. }) = probes.next_event(left).expect("events") {
            if pid == forked_ghost as u32 {
                break wait_status;
            }
        }
    };
    assert_eq!(status, libc::SIGKILL, "the forked process's ghost died of SIGKILL too");
    wait_for("no zombie of it", Duration::from_secs(10), || proc_state(forked_ghost).is_none().then_some(()));
    // The slave, cut off, ends what it ran for the lost link, forked processes included.
    for remote in [shell, forked] {
        wait_for("the cut-off node to end its processes", down_within() * 3, || {
            proc_state(remote).is_none().then_some(())
        });
    }

    c.restore_link(0).expect("restore the link");
    c.wait_node_state(0, "up", Duration::from_secs(20)).expect("node 0 back up");
    let out = run(c.command("bpsh").args(["0", "true"]));
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
}
