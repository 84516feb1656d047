//! bpsh runs programs on nodes: exit statuses, stdio, node lists.

use std::os::unix::process::ExitStatusExt;

use tests::{cluster, run, run_with_input, sh, text};

#[test]
fn exit_statuses_are_the_remote_ones() {
    let c = cluster(4);
    let out = run(c.command("bpsh").args(["2", "sh", "-c", "exit 7"]));
    assert_eq!(out.status.code(), Some(7), "stderr: {}", text(&out.stderr));

    // A death by SIGTERM on the node is a death by SIGTERM here: the calling shell sees 143.
    let bpsh = c.bin("bpsh");
    let script = format!("{} 0 sh -c 'kill -TERM $$'; echo status=$?", bpsh.display());
    let out = run(&mut sh(&c, &script));
    assert_eq!(text(&out.stdout).trim(), "status=143", "stderr: {}", text(&out.stderr));
    let out = run(c.command("bpsh").args(["0", "sh", "-c", "kill -TERM $$"]));
    assert_eq!(out.status.signal(), Some(libc::SIGTERM));

    // A death by SIGSEGV is a death by SIGSEGV here, without a core file.
    let out = run(c.command("bpsh").args(["1", "sh", "-c", "kill -SEGV $$"]));
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV));
    assert!(!out.status.core_dumped());
    // The remote process leads a process group of its own.
    let out = run(c.command("bpsh").args(["1", "sh", "-c", "test \"$(ps -o pgid= -p $$ | tr -d ' ')\" = $$"]));
    assert_eq!(out.status.code(), Some(0), "not a process group leader: {}", text(&out.stderr));

    let out = run(c.command("bpsh").args(["0", "/nonexistent"]));
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("/nonexistent"), "stderr: {}", text(&out.stderr));
    let out = run(c.command("bpsh").args(["0", "/etc/passwd"]));
    assert_eq!(out.status.code(), Some(126), "not executable");

    let out = run(c.command("bpsh").args(["9", "true"]));
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("node 9"), "stderr names the node: {}", text(&out.stderr));

    c.kill_slave(3, libc::SIGKILL).expect("kill slave 3");
    c.wait_node_state(3, "down", std::time::Duration::from_secs(10)).expect("node 3 down");
    let out = run(c.command("bpsh").args(["3", "true"]));
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("node 3 is down"), "stderr: {}", text(&out.stderr));

    // Several nodes: the worst status wins.
    let out = run(c.command("bpsh").args(["0-2", "sh", "-c", "exit $(hostname | tr -d n)"]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn stdio_is_byte_exact_and_streams_stay_apart() {
    let c = cluster(1);
    let mut data = vec![0u8; 100 << 20];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for chunk in data.chunks_mut(8) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
    }
    let out = run_with_input(c.command("bpsh").args(["0", "cat"]), Some(data.clone()));
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "100 MB came back different");

    // Output far beyond the credit window, from a process that exits long
    // before its output is drained, all arrives.
    let out = run(c.command("bpsh").args(["0", "head", "-c", "67108864", "/dev/zero"]));
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(out.stdout.len(), 64 << 20);

    let out = run(c.command("bpsh").args(["0", "sh", "-c", "echo out; echo err >&2; echo out2"]));
    assert_eq!(text(&out.stdout), "out\nout2\n");
    assert_eq!(text(&out.stderr), "err\n");

    // EOF propagates: wc sees the end of its input and answers.
    let out = run_with_input(c.command("bpsh").args(["0", "wc", "-c"]), Some(b"12345".to_vec()));
    assert_eq!(text(&out.stdout).trim(), "5");
    // -n: stdin is /dev/null even though we offer input.
    let out = run_with_input(c.command("bpsh").args(["-n", "0", "wc", "-c"]), Some(b"12345".to_vec()));
    assert_eq!(text(&out.stdout).trim(), "0");
}

#[test]
fn node_lists_prefix_and_serial() {
    let c = cluster(4);
    let out = run(c.command("bpsh").args(["-ap", "hostname"]));
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let mut lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, ["0: n0", "1: n1", "2: n2", "3: n3"]);

    let out = run(c.command("bpsh").args(["-p", "0-1,3", "hostname"]));
    let mut lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, ["0: n0", "1: n1", "3: n3"]);

    // -s: one node after another, in node order; a lock directory proves
    // that no two run at once.
    let lock = format!("/tmp/bproc-serial-{}", c.name());
    let script = format!("mkdir {lock} || exit 9; hostname; sleep 0.05; rmdir {lock}");
    let out = run(c.command("bpsh").args(["-s", "3,1,0,2", "sh", "-c", &script]));
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "n0\nn1\nn2\nn3\n");

    // -A with a node down is an error naming it; -a skips it.
    c.kill_slave(2, libc::SIGKILL).expect("kill slave");
    c.wait_node_state(2, "down", std::time::Duration::from_secs(10)).expect("down");
    let out = run(c.command("bpsh").args(["-A", "true"]));
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("node 2"), "stderr: {}", text(&out.stderr));
    let out = run(c.command("bpsh").args(["-ap", "hostname"]));
    let mut lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, ["0: n0", "1: n1", "3: n3"]);
}
