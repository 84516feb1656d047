//! The breadth of BProc 4's C API in `libbproc.so`: node lists and node
//! specs (BProc's grammar), node addresses and attributes, the remote
//! process list, node set bookkeeping, the `_io` and flag variants of the
//! migration calls, and the calls that give ENOSYS. A C program built with
//! `cc capi.c -lbproc` prints one result per line; every line is checked.

use std::process::Command;
use std::time::Duration;

use tests::{cluster, collect, proc_state, remote_processes, run, spawn_bpsh, text, wait_for, wait_remote};

/// What capi.c prints on 3 nodes with node 2 down, node 0 at `addr` and one
/// remote process (global PID `ghost`) on node 0.
fn expected(addr: &str, ghost: i32) -> Vec<String> {
    let fixed = r#"numnodes 3
nodelist 3 size 3
node 0 up
node 1 up
node 2 down
nodespec "0-1" 0: 0 1
nodespec "1,0" 0: 1 0
nodespec "all" 0: 0 1 2
nodespec "up" 0: 0 1
nodespec "allup" 0: 0 1
nodespec "down" 0: 2
nodespec "notdown" 0: 0 1
nodespec "allnotdown" 0: 0 1
nodespec "master" 0: -1
nodespec "2-" 0: 2
nodespec "1-" 0: 1 2
nodespec "n1,.0" 0: 1 0
nodespec "0x1" 0: 1
nodespec "010" 0:
nodespec "0,0" 0: 0 0
nodespec ",,1,," -1 EINVAL
nodespec "" 0:
nodespec "nothing" 0: 0 1 2
nodespec "1;2" -1 EINVAL
nodespec "0," -1 EINVAL
nodespec "all!up" -1 EINVAL
nodespec "-1" 0:
nodefilter "all" 0: 3 5 7
nodefilter "4-" 0: 5 7
nodefilter "notup" 0: 3
nodefilter "boot,7,3,9" 0: 3 7 3
nodefilter "master,up" 0: -1 5 7
nodefilter "x y" -1 EINVAL
nodefilter "master" 0:
nodefilter "x y" 0:
nodeset_init 5 0
  size 5 alloc 5
nodeset_grow 1 0
  size 5 alloc 128
nodeset_add 0
nodeset_append self 0
  size 12 alloc 128 last 3
nodeset_grow 200 0
  size 12 alloc 256
nodeset_free size 0 alloc 0 node NULL
nodeset_init 0 0
  size 0 alloc 0 node NULL
nodeaddr 0 0 size 16 family AF_INET addr ADDR
nodeaddr 0 small -1 ERANGE
nodeaddr 2 -1 ENODATA
nodeaddr master -1 ENODATA
nodeaddr 9 -1 ENOENT
getnodeattr 0 state 3 up
getnodeattr 2 state 5 down
getnodeattr 0 state size 0 3
getnodeattr 0 state small -1 ERANGE
getnodeattr 0 addr 16
getnodeattr 0 cpus -1 ENODATA
getnodeattr master state -1 ENODATA
getnodeattr 9 state -1 ENOENT
nodestatus 1 3 up
proclist any 1: GHOST@0
proclist 1 0 NULL
proclist 0 1
rfork_io 2 NULL -1: -1 errno 301 (Node is down)
_bproc_rfork 9: -1 errno 300 (Invalid node number)
_bproc_rfork_io 2 io -1: -1 errno 301 (Node is down)
rfork_io 2 io 1: -1 errno 301 (Node is down)
rfork_io 0 io 17 -1 EINVAL
rfork_io 0 memfile -1 EPERM
_bproc_rfork_io 0 type 7 -1 EINVAL
rfork_io 0 inet6 -1 EINVAL
vrfork_io 2 NULL 1 pids[0] -301 (Node is down)
_bproc_vrfork 9 1 pids[0] -300 (Invalid node number)
_bproc_vrfork_io 2 NULL 1 pids[0] -301 (Node is down)
vrfork_io 2 io 1 1 pids[0] -301 (Node is down)
_bproc_vrfork_io 2 io 1 1 pids[0] -301 (Node is down)
vexecmove_io 2 NULL 1 pids[0] -301 (Node is down)
vexecmove_io 2 io 1 1 pids[0] -301 (Node is down)
execmove_io 2 NULL -1: -1 errno 301 (Node is down)
execmove_io 2 io 1: -1 errno 301 (Node is down)
rexec_io 9 NULL -1: -1 errno 300 (Invalid node number)
rexec_io 9 io 1: -1 errno 300 (Invalid node number)
chmod 0 0100 0
chown 0 4242 0
chgrp 0 50 0
perms 0 mode 100 user 4242 group 50
chmod 0 0644 -1 EPERM
chmod 9 0111 -1 300
chmod 0 0111 0
chown 0 0 0
chgrp 0 0 0
nodelist_ -1 ENOSYS
notifier -1 ENOSYS
setnodeattr -1 ENOSYS
nodesetstatus -1 ENOSYS
nodereboot -1 ENOSYS
nodehalt -1 ENOSYS
nodepwroff -1 ENOSYS
nodereboot_async -1 ENOSYS
nodehalt_async -1 ENOSYS
nodepwroff_async -1 ENOSYS
nodechroot -1 ENOSYS
nodereconnect -1 ENOSYS
execve -1 ENOSYS
dump -1 ENOSYS
undump -1 ENOSYS
execdump -1 ENOSYS
libclear -1 ENOSYS
libadd -1 ENOSYS
libdel -1 ENOSYS
liblist -1 ENOSYS
done"#;
    fixed.lines().map(|l| l.replace("ADDR", addr).replace("GHOST", &ghost.to_string())).collect()
}

#[test]
fn the_c_api_lists_nodes_parses_node_specs_and_gives_enosys_for_what_it_lacks() {
    let c = cluster(3);
    c.kill_slave(2, libc::SIGKILL).expect("kill node 2's slave");
    c.wait_node_state(2, "down", Duration::from_secs(10)).expect("node 2 down");
    let addr = c.node_addr(0).expect("node 0's address").to_string();
    let program = tests::c_program("capi", c.state_dir());

    let mut bpsh = spawn_bpsh(&c, &["0", "sleep", "100"]);
    let remote = wait_remote(&c, 0, "sleep");
    let ghost = wait_for("the remote sleep's global PID", Duration::from_secs(20), || {
        let procs = remote_processes(&c);
        procs.first().and_then(|p| p["pid"].as_i64()).filter(|p| *p > 0).map(|p| p as i32)
    });

    let out = run(Command::new(&program).env("BPROC_SOCKET", c.socket_path()).env("BPROC_GHOST_BIN", c.bin("bpghost")));

    // Nothing left running, whatever the program printed: bpsh passes
    // SIGTERM on to the remote sleep, and ends as it ended.
    tests::kill(bpsh.id() as i32, libc::SIGTERM);
    let ended = collect(&mut bpsh, Duration::from_secs(20), "bpsh 0 sleep 100");
    wait_for("the remote sleep to be gone", Duration::from_secs(10), || proc_state(remote).is_none().then_some(()));
    wait_for("its ghost to be gone", Duration::from_secs(10), || proc_state(ghost).is_none().then_some(()));
    wait_for("the master to forget it", Duration::from_secs(10), || remote_processes(&c).is_empty().then_some(()));
    assert!(ended.status.code().is_none(), "bpsh ended by a signal, as the sleep did: {:?}", ended.status);

    assert!(
        out.status.success(),
        "capi: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    let got = text(&out.stdout);
    let got: Vec<&str> = got.lines().collect();
    let want = expected(&addr, ghost);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "line {} of capi's output (stderr: {})", i + 1, text(&out.stderr));
    }
    assert_eq!(got.len(), want.len(), "capi printed {} lines, expected {}", got.len(), want.len());
    // Only root changes a node's permissions: the kernel's word (SO_PEERCRED).
    let prepared = Command::new("setpriv")
        .args(["--reuid=4242", "--regid=4242", "--clear-groups"])
        .arg(&program)
        .arg("chmod")
        .env("BPROC_SOCKET", c.socket_path())
        .output()
        .expect("run setpriv");
    assert_eq!(text(&prepared.stdout), "chmod 0 0111 -1 EPERM\n", "{}", text(&prepared.stderr));
}
