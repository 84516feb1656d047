//! Stand-ins for `bpmaster`, `bpslave` and `bpstat`, picked by the name this program is called
//! by (the harness's own tests link it under those names). They speak just enough to exercise
//! the harness: slaves send a heartbeat line over TCP, the master marks a node up while its
//! heartbeats are fresh, and `bpstat --json` asks the master over its Unix socket.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

const HEARTBEAT: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let argv0 = std::env::args().next().unwrap_or_default();
    let name = Path::new(&argv0).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let result = match name.as_str() {
        "bpmaster" => master(),
        "bpslave" => slave(),
        "bpstat" => bpstat(),
        other => Err(format!("called as {other:?}: link me as bpmaster, bpslave or bpstat")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The value after `flag` on the command line.
fn arg(flag: &str) -> Result<String, String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1).cloned()).ok_or_else(|| format!("missing {flag}"))
}

fn num<T: std::str::FromStr>(flag: &str) -> Result<T, String> {
    arg(flag)?.parse().map_err(|_| format!("bad number after {flag}"))
}

type Table = Arc<Mutex<HashMap<u32, (Instant, String)>>>;

fn master() -> Result<(), String> {
    let listen = arg("--listen")?;
    let socket = arg("--socket")?;
    let nodes: u32 = num("--nodes")?;
    let timeout = Duration::from_millis(num("--node-timeout-ms")?);
    let table: Table = Arc::default();

    let tcp = TcpListener::bind(&listen).map_err(|e| format!("bind {listen}: {e}"))?;
    let slaves = Arc::clone(&table);
    thread::spawn(move || {
        for conn in tcp.incoming().flatten() {
            let table = Arc::clone(&slaves);
            thread::spawn(move || heartbeats(conn, &table));
        }
    });

    let _ = std::fs::remove_file(&socket);
    let unix = UnixListener::bind(&socket).map_err(|e| format!("bind {socket}: {e}"))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777))
        .map_err(|e| format!("chmod {socket}: {e}"))?;
    eprintln!("bpmaster: listening on {listen} and {socket}");
    for mut client in unix.incoming().flatten() {
        let now = Instant::now();
        let seen = table.lock().map_err(|_| "poisoned")?.clone();
        let list: Vec<String> = (0..nodes)
            .map(|n| {
                let (state, addr) = match seen.get(&n) {
                    Some((at, addr)) if now.duration_since(*at) < timeout => ("up", addr.as_str()),
                    Some((_, addr)) => ("down", addr.as_str()),
                    None => ("down", ""),
                };
                format!(r#"{{"node":{n},"state":"{state}","addr":"{addr}","mode":"---x--x--x"}}"#)
            })
            .collect();
        let _ = writeln!(client, r#"{{"nodes":[{}]}}"#, list.join(","));
    }
    Ok(())
}

/// Records every "hb N" line from one slave connection.
fn heartbeats(conn: TcpStream, table: &Table) {
    let addr = conn.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    for line in BufReader::new(conn).lines().map_while(Result::ok) {
        if let Some(node) = line.strip_prefix("hb ").and_then(|n| n.parse().ok()) {
            if let Ok(mut t) = table.lock() {
                t.insert(node, (Instant::now(), addr.clone()));
            }
        }
    }
}

extern "C" fn exit_now(_: nix::libc::c_int) {
    // SAFETY: _exit is async-signal-safe and takes no pointers.
    unsafe { nix::libc::_exit(0) }
}

fn slave() -> Result<(), String> {
    let master = arg("--master")?;
    let node: u32 = num("--node")?;
    let hostname = arg("--hostname")?;
    // As PID 1 of its namespace the slave only gets SIGTERM if it has a handler.
    let action = SigAction::new(SigHandler::Handler(exit_now), SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler only calls _exit, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGTERM, &action) }.map_err(|e| format!("sigaction: {e}"))?;
    nix::unistd::sethostname(&hostname).map_err(|e| format!("sethostname: {e}"))?;
    // A process for host_pid() to find: pid 2 in the node's PID namespace.
    let _child = Command::new("sleep").arg("100000").spawn().map_err(|e| format!("spawn sleep: {e}"))?;
    eprintln!("bpslave {node}: connecting to {master}");
    loop {
        let Ok(mut conn) = TcpStream::connect(&master) else {
            thread::sleep(HEARTBEAT);
            continue;
        };
        while conn.write_all(format!("hb {node}\n").as_bytes()).is_ok() {
            thread::sleep(HEARTBEAT);
        }
    }
}

fn bpstat() -> Result<(), String> {
    if !std::env::args().any(|a| a == "--json") {
        return Err("only --json is faked".to_owned());
    }
    let socket = std::env::var("BPROC_SOCKET").map_err(|_| "BPROC_SOCKET unset")?;
    let mut conn = UnixStream::connect(&socket).map_err(|e| format!("connect {socket}: {e}"))?;
    let mut text = String::new();
    conn.read_to_string(&mut text).map_err(|e| format!("read {socket}: {e}"))?;
    print!("{text}");
    Ok(())
}
