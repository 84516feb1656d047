//! The harness on real namespaces, with stand-in daemons (`examples/fake-daemon.rs`) so it is
//! tested on its own. Needs root (like every cluster test of this project), `ip` and `unshare`.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use vm_harness::{gc, unique_name, Cluster, ClusterSpec, HarnessError};

const WAIT: Duration = Duration::from_secs(20);

fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "these tests make network namespaces: run them as root");
}

/// target/<profile>/ of this test binary (it lives in target/<profile>/deps/).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("test binary in target/<profile>/deps").to_path_buf()
}

/// A bin dir where bpmaster, bpslave and bpstat are links to the fake daemon (built by cargo
/// test as an example); `master` may point bpmaster elsewhere.
fn bin_dir_with(tag: &str, master: Option<&Path>) -> PathBuf {
    let fake = profile_dir().join("examples").join("fake-daemon");
    assert!(
        fake.is_file(),
        "{} missing: `cargo test -p vm-harness` builds it (or `cargo build -p vm-harness --examples`)",
        fake.display()
    );
    let dir = profile_dir().join(format!("vm-harness-{tag}"));
    std::fs::create_dir_all(&dir).expect("create bin dir");
    for name in ["bpmaster", "bpslave", "bpstat"] {
        let link = dir.join(name);
        let target = match (name, master) {
            ("bpmaster", Some(m)) => m.to_path_buf(),
            _ => fake.clone(),
        };
        if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            let _ = std::fs::remove_file(&link);
            symlink(&target, &link).expect("symlink");
        }
    }
    dir
}

fn fake_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| bin_dir_with("fakes", None))
}

fn spec(prefix: &str, nodes: u32) -> ClusterSpec {
    let mut spec = ClusterSpec::new(unique_name(prefix), nodes);
    spec.bin_dir = Some(fake_bin_dir().to_path_buf());
    spec.node_timeout_ms = 400;
    spec
}

/// Everything of cluster `name` still present.
fn traces_of(name: &str) -> Vec<String> {
    let prefix = format!("bp-{name}-");
    let mut found: Vec<String> = vm_harness::leftovers()
        .into_iter()
        .filter(|l| {
            l.contains(&format!("netns {prefix}"))
                || l.contains(&format!("clusters/{name}"))
                || l.ends_with(&format!("({name})"))
        })
        .collect();
    let netns = Command::new("ip").args(["netns", "list"]).output().expect("ip");
    found.extend(String::from_utf8_lossy(&netns.stdout).lines().filter(|l| l.starts_with(&prefix)).map(str::to_owned));
    found
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn lifecycle_and_fault_injection() {
    require_root();
    let start = Instant::now();
    let mut cluster = Cluster::up(spec("life", 3)).expect("up");
    eprintln!("3 nodes up in {:?}", start.elapsed());
    let name = cluster.name().to_owned();

    // Layout.
    assert!(cluster.socket_path().exists());
    assert!(cluster.state_dir().join("state.json").is_file());
    assert_eq!(cluster.node_states().expect("states"), [(0, "up".into()), (1, "up".into()), (2, "up".into())]);
    let addr = run(Command::new("ip").args(["-n", &format!("bp-{name}-1"), "-4", "-o", "addr"]));
    let want = format!("{}/24", cluster.node_addr(1).expect("addr"));
    assert!(addr.contains(&want) && addr.contains("eth0"), "{addr}");
    let status = cluster.node_status().expect("status");
    assert_eq!(status[1].addr.as_deref(), cluster.node_addr(1).map(|a| a.to_string()).as_deref());

    // Pids: the slave is PID 1 of its node, its first child PID 2.
    let slave = cluster.slave_pid(0).expect("slave 0 runs");
    assert_eq!(cluster.host_pid(0, 1), Some(slave));
    let two = vm_harness::wait_for(WAIT, Duration::from_millis(5), || cluster.host_pid(0, 2)).expect("pid 2 in node 0");
    let comm = std::fs::read_to_string(format!("/proc/{two}/comm")).expect("comm");
    assert_eq!(comm.trim(), "sleep");
    assert_ne!(cluster.host_pid(1, 2), Some(two), "other node, other namespace");
    assert_eq!(cluster.host_pid(0, 99_999), None);
    assert!(cluster.master_pid().is_some());

    // The node's own namespaces.
    let host = run(&mut cluster.node_command(2, "hostname").expect("node command"));
    assert_eq!(host.trim(), "n2");

    // Cut and restore a link.
    cluster.cut_link(1).expect("cut");
    let took = cluster.wait_node_state(1, "down", WAIT).expect("node 1 down");
    eprintln!("cut link: down after {took:?}");
    assert_eq!(cluster.node_states().expect("states")[0].1, "up");
    cluster.restore_link(1).expect("restore");
    cluster.wait_node_state(1, "up", WAIT).expect("node 1 up");

    // Kill and restart a slave.
    cluster.kill_slave(2, libc_sigkill()).expect("kill slave");
    assert_eq!(cluster.slave_pid(2), None);
    assert!(matches!(cluster.kill_slave(2, libc_sigkill()), Err(HarnessError::NotRunning { .. })));
    cluster.wait_node_state(2, "down", WAIT).expect("node 2 down");
    cluster.start_slave(2).expect("restart");
    assert!(matches!(cluster.start_slave(2), Err(HarnessError::AlreadyRunning { .. })));
    cluster.wait_node_state(2, "up", WAIT).expect("node 2 up again");

    // Kill and restart the master.
    cluster.kill_master(libc_sigkill()).expect("kill master");
    assert_eq!(cluster.master_pid(), None);
    cluster.start_master().expect("restart master");
    cluster.wait_node_state(0, "up", WAIT).expect("node 0 back");

    // Errors name the node.
    assert!(matches!(cluster.cut_link(3), Err(HarnessError::NoSuchNode { .. })));

    // Attach sees the same cluster and leaves it running when dropped.
    let attached = Cluster::attach(&name).expect("attach");
    assert_eq!(attached.slave_pid(1), cluster.slave_pid(1));
    drop(attached);
    assert!(cluster.master_pid().is_some());

    let start = Instant::now();
    cluster.down().expect("down");
    eprintln!("down in {:?}", start.elapsed());
    assert_eq!(traces_of(&name), Vec::<String>::new());
    assert!(vm_harness::wait_for(WAIT, Duration::from_millis(5), || {
        std::fs::metadata(format!("/proc/{two}")).is_err().then_some(())
    })
    .is_some());
}

#[test]
fn sixteen_nodes_come_up_fast() {
    require_root();
    let start = Instant::now();
    let cluster = Cluster::up(spec("big", 16)).expect("up");
    let up = start.elapsed();
    let name = cluster.name().to_owned();
    let start = Instant::now();
    drop(cluster);
    let down = start.elapsed();
    eprintln!("16 nodes: up in {up:?}, down in {down:?}");
    assert_eq!(traces_of(&name), Vec::<String>::new());
    // Generous bounds: the machine is shared and tests run in parallel.
    assert!(up < Duration::from_secs(10), "up took {up:?}");
    assert!(down < Duration::from_secs(5), "down took {down:?}");
}

#[test]
fn parallel_clusters_get_their_own_subnets() {
    require_root();
    let a = Cluster::up(spec("pa", 1)).expect("up a");
    let b = Cluster::up(spec("pb", 1)).expect("up b");
    assert_ne!(a.subnet(), b.subnet());
    assert_ne!(a.name(), b.name());
    assert!(matches!(
        Cluster::up({
            let mut s = spec("pa", 1);
            s.name = a.name().to_owned();
            s
        }),
        Err(HarnessError::Leftovers { .. } | HarnessError::ClusterExists { .. })
    ));
    // The failed attempt must not have harmed `a`.
    assert_eq!(a.node_states().expect("a states"), [(0, "up".into())]);
    let names = [a.name().to_owned(), b.name().to_owned()];
    a.down().expect("down a");
    assert_eq!(b.node_states().expect("b still fine"), [(0, "up".into())]);
    drop(b);
    for name in names {
        assert_eq!(traces_of(&name), Vec::<String>::new());
    }
}

#[test]
fn gc_removes_a_crashed_cluster() {
    require_root();
    let cluster = Cluster::up(spec("crash", 2)).expect("up").into_detached();
    let name = cluster.name().to_owned();
    let slave = cluster.slave_pid(1).expect("slave");
    drop(cluster); // as if the test had crashed: everything stays
    assert!(!traces_of(&name).is_empty());
    let removed = gc(Some(&name)).expect("gc");
    eprintln!("gc removed: {removed:#?}");
    assert!(removed.iter().any(|r| r == &format!("netns bp-{name}-hub")));
    assert!(removed.iter().any(|r| r.starts_with("state dir")));
    assert!(removed.iter().any(|r| r.starts_with("subnet claim")));
    assert_eq!(traces_of(&name), Vec::<String>::new());
    assert!(
        std::fs::metadata(format!("/proc/{slave}")).is_err() || {
            // Reaped by init an instant later.
            vm_harness::wait_for(WAIT, Duration::from_millis(5), || {
                std::fs::metadata(format!("/proc/{slave}")).is_err().then_some(())
            })
            .is_some()
        }
    );
    assert_eq!(gc(Some(&name)).expect("gc again"), Vec::<String>::new());
    // down of a cluster that is gone is no error either.
    assert!(matches!(Cluster::attach(&name), Err(HarnessError::NoSuchCluster { .. })));
}

#[test]
fn failed_up_leaves_nothing() {
    require_root();
    let mut spec = spec("fail", 2);
    spec.bin_dir = Some(bin_dir_with("false-master", Some(Path::new("/bin/false"))));
    let name = spec.name.clone();
    let err = Cluster::up(spec).expect_err("master exits at once");
    assert!(matches!(err, HarnessError::DaemonDied { .. }), "{err}");
    assert!(err.to_string().contains("master.log"), "{err}");
    assert_eq!(traces_of(&name), Vec::<String>::new());

    let mut spec = self::spec("fail", 1);
    spec.bin_dir = Some(profile_dir().join("no-such-dir"));
    let err = Cluster::up(spec).expect_err("no binaries");
    assert!(matches!(err, HarnessError::MissingBinary { .. }), "{err}");
}

fn libc_sigkill() -> i32 {
    nix::sys::signal::Signal::SIGKILL as i32
}
