//! bpsh's command line, parsed as BProc's bpsh does: options, then a node
//! list (unless -a or -A), then the command and its arguments verbatim.

use std::ffi::OsString;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Opts {
    /// -a: every node that is up.
    pub all_up: bool,
    /// -A: every node; one that is not up is an error.
    pub all: bool,
    /// -p: prefix each output line with the node number.
    pub prefix: bool,
    /// -s: one node after another, in node order.
    pub serial: bool,
    /// -n: stdin from /dev/null.
    pub null_stdin: bool,
    pub nodes: Option<String>,
    pub argv: Vec<OsString>,
}

pub const USAGE: &str = "usage: bpsh [-aApsn] NODES|-a|-A command [args...]
  NODES   node list, e.g. 0-3,7
  -a      run on every node that is up
  -A      run on every node (a node that is not up is an error)
  -p      prefix each line of output with the node number
  -s      run on one node after another, in node order
  -n      take stdin from /dev/null
Exit status: the remote one (the worst of several); 255 for bpsh's own failures.";

pub enum Parsed {
    Run(Opts),
    Help,
    Version,
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    let mut opts = Opts::default();
    let mut it = args.into_iter().peekable();
    while let Some(arg) = it.peek() {
        let s = arg.to_string_lossy();
        if s == "--" {
            it.next();
            break;
        }
        if s == "--help" || s == "-h" {
            return Ok(Parsed::Help);
        }
        if s == "--version" || s == "-V" {
            return Ok(Parsed::Version);
        }
        if !s.starts_with('-') || s.len() < 2 {
            break;
        }
        for c in s[1..].chars() {
            match c {
                'a' => opts.all_up = true,
                'A' => opts.all = true,
                'p' => opts.prefix = true,
                's' => opts.serial = true,
                'n' => opts.null_stdin = true,
                other => return Err(format!("unknown option -{other}")),
            }
        }
        it.next();
    }
    if !(opts.all_up || opts.all) {
        let nodes = it.next().ok_or("no node list given")?;
        opts.nodes = Some(nodes.to_string_lossy().into_owned());
    }
    opts.argv = it.collect();
    if opts.argv.is_empty() {
        return Err("no command given".into());
    }
    Ok(Parsed::Run(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Opts {
        match parse(args.iter().map(OsString::from)) {
            Ok(Parsed::Run(o)) => o,
            _ => panic!("expected a run for {args:?}"),
        }
    }

    #[test]
    fn options_then_nodes_then_command() {
        let o = run(&["-ap", "hostname", "-f"]);
        assert!(o.all_up && o.prefix && o.nodes.is_none());
        assert_eq!(o.argv, ["hostname", "-f"]);
        let o = run(&["-s", "0-3,7", "sh", "-c", "exit 7"]);
        assert_eq!(o.nodes.as_deref(), Some("0-3,7"));
        assert_eq!(o.argv, ["sh", "-c", "exit 7"]);
        let o = run(&["2", "ls", "-l"]);
        assert_eq!(o.argv, ["ls", "-l"]);
        assert!(parse(["-x", "0", "ls"].map(OsString::from)).is_err());
        assert!(parse(["0"].map(OsString::from)).is_err());
        assert!(parse(["-a"].map(OsString::from)).is_err());
    }
}
