//! The README's demo runs on a clean cluster: 4 nodes up, output from each.

use std::path::PathBuf;
use std::process::Command;

use tests::{run, text};

#[test]
fn demo_shows_four_nodes_and_output_from_each() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = vm_harness::default_bin_dir();
    let out = run(Command::new("bash").arg(root.join("scripts/demo.sh")).arg(&bin));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("cluster demo: 4 nodes up"), "{stdout}");
    for n in 0..4 {
        assert!(stdout.contains(&format!("\n{n}: n{n}\n")), "no prefixed output from node {n}:\n{stdout}");
        assert!(stdout.contains(&format!("\nn{n}: pid ")), "no serial output from node {n}:\n{stdout}");
    }
    assert!(stdout.contains("exit status 7"), "{stdout}");
    assert!(stdout.contains("100000000"), "{stdout}");
    assert!(stdout.contains("status 143"), "{stdout}");
    // The ghost: the PID the remote shell printed is a process here, and
    // SIGSTOP sent to it stopped the remote process.
    let pid =
        stdout.lines().find_map(|l| l.strip_prefix("pid ")).and_then(|l| l.split(' ').next()).expect("remote pid");
    // After the remote exec, the ghost runs `sleep 60` too.
    assert!(stdout.lines().any(|l| l.trim_start().starts_with(pid) && l.ends_with(" sleep 60")), "{stdout}");
    assert!(stdout.lines().any(|l| l.contains(pid) && l.contains("stopped")), "{stdout}");
    // rfork from C: the child reports from node 2, and the parent gets its status.
    assert!(stdout.contains("child: node 2 pid ") && stdout.contains("buffer intact"), "{stdout}");
    assert!(stdout.contains("parent: status exited=1 code=42"), "{stdout}");
    assert!(!Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| text(&o.stdout))
        .unwrap_or_default()
        .contains("bp-demo-"));
}
