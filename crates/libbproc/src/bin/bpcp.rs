//! `bpcp [-p] SOURCE... DEST`: copies files between the front end and nodes,
//! like rcp. A name is `PATH` (on the front end) or `NODE:PATH` (on node
//! NODE, a number). With several sources, DEST is a directory. `-p` keeps
//! the mode. The bytes travel through `bpsh` (`cat` on the node), so a node
//! needs no file server and the user's permissions apply there as here.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Local(PathBuf),
    Node(u32, String),
}

fn parse_place(s: &str) -> Place {
    match s.split_once(':') {
        Some((node, path)) if !node.is_empty() && node.bytes().all(|b| b.is_ascii_digit()) => match node.parse() {
            Ok(n) => Place::Node(n, path.to_string()),
            Err(_) => Place::Local(s.into()),
        },
        _ => Place::Local(s.into()),
    }
}

/// `bpsh` beside this program.
fn bpsh() -> PathBuf {
    std::env::current_exe().map(|me| me.with_file_name("bpsh")).unwrap_or_else(|_| "bpsh".into())
}

fn base_name(p: &str) -> String {
    Path::new(p).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.to_string())
}

/// The destination of `src` given `dest` (a directory when copying several).
fn target(src: &Place, dest: &Place, into_dir: bool) -> Place {
    if !into_dir {
        return dest.clone();
    }
    let name = match src {
        Place::Local(p) => base_name(&p.to_string_lossy()),
        Place::Node(_, p) => base_name(p),
    };
    match dest {
        Place::Local(d) => Place::Local(d.join(name)),
        Place::Node(n, d) => Place::Node(*n, format!("{}/{name}", d.trim_end_matches('/'))),
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what}: failed ({status})"))
    }
}

/// Copies one file. `mode`: the source's permission bits to keep (-p).
fn copy(src: &Place, dst: &Place, keep_mode: bool) -> Result<(), String> {
    let what = format!("{src:?} -> {dst:?}");
    // The source's mode, for -p.
    let mode = if keep_mode {
        match src {
            Place::Local(p) => {
                use std::os::unix::fs::PermissionsExt;
                Some(std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?.permissions().mode() & 0o7777)
            }
            Place::Node(n, p) => {
                let out = Command::new(bpsh())
                    .args([&n.to_string(), "stat", "-c", "%a", p])
                    .output()
                    .map_err(|e| e.to_string())?;
                u32::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 8).ok()
            }
        }
    } else {
        None
    };
    match (src, dst) {
        (Place::Local(a), Place::Local(b)) => {
            std::fs::copy(a, b).map_err(|e| format!("{what}: {e}"))?;
        }
        (Place::Local(a), Place::Node(n, b)) => {
            let file = std::fs::File::open(a).map_err(|e| format!("{}: {e}", a.display()))?;
            run(Command::new(bpsh()).args([&n.to_string(), "sh", "-c", "cat > \"$1\"", "sh", b]).stdin(file), &what)?;
        }
        (Place::Node(n, a), Place::Local(b)) => {
            let file = std::fs::File::create(b).map_err(|e| format!("{}: {e}", b.display()))?;
            run(Command::new(bpsh()).args([&n.to_string(), "cat", a]).stdin(Stdio::null()).stdout(file), &what)?;
        }
        (Place::Node(m, a), Place::Node(n, b)) => {
            let mut reader = Command::new(bpsh())
                .args([&m.to_string(), "cat", a])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("{what}: {e}"))?;
            let pipe = reader.stdout.take().ok_or("no pipe")?;
            let written = run(
                Command::new(bpsh()).args([&n.to_string(), "sh", "-c", "cat > \"$1\"", "sh", b]).stdin(pipe),
                &what,
            );
            let read = reader.wait().map_err(|e| e.to_string())?;
            written?;
            if !read.success() {
                return Err(format!("{what}: reading failed ({read})"));
            }
        }
    }
    if let Some(mode) = mode {
        let octal = format!("{mode:o}");
        match dst {
            Place::Local(b) => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(b, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())?;
            }
            Place::Node(n, b) => run(Command::new(bpsh()).args([&n.to_string(), "chmod", &octal, b]), &what)?,
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let keep_mode = args.first().is_some_and(|a| a == "-p");
    if keep_mode {
        args.remove(0);
    }
    if args.len() < 2 {
        eprintln!("usage: bpcp [-p] SOURCE... DEST   (a name is PATH or NODE:PATH)");
        return ExitCode::from(2);
    }
    let dest = parse_place(&args[args.len() - 1]);
    let sources: Vec<Place> = args[..args.len() - 1].iter().map(|s| parse_place(s)).collect();
    let into_dir = sources.len() > 1
        || match &dest {
            Place::Local(d) => d.is_dir(),
            Place::Node(n, d) => {
                Command::new(bpsh()).args([&n.to_string(), "test", "-d", d]).status().is_ok_and(|s| s.success())
            }
        };
    let mut failed = false;
    for src in &sources {
        if let Err(e) = copy(src, &target(src, &dest, into_dir), keep_mode) {
            eprintln!("bpcp: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_and_targets() {
        assert_eq!(parse_place("3:/tmp/x"), Place::Node(3, "/tmp/x".into()));
        assert_eq!(parse_place("/tmp/a:b"), Place::Local("/tmp/a:b".into()));
        assert_eq!(parse_place("x:y"), Place::Local("x:y".into()));
        let src = Place::Local("/etc/hosts".into());
        assert_eq!(target(&src, &Place::Node(1, "/tmp/".into()), true), Place::Node(1, "/tmp/hosts".into()));
        assert_eq!(target(&src, &Place::Node(1, "/tmp/f".into()), false), Place::Node(1, "/tmp/f".into()));
    }
}
