//! What a ghost needs to know besides its command line, passed in one
//! environment variable (removed before the environment goes to the node).

/// The environment variable that carries a [`GhostSpec`].
pub const GHOST_ENV: &str = "BPROC_GHOST";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GhostSpec {
    /// The node to run on.
    pub node: u32,
    /// Prefix each output line with the node number (`bpsh -p`).
    pub prefix: bool,
    /// Give the remote process /dev/null as stdin.
    pub stdin_null: bool,
    /// Become the ghost of this existing process (after a re-exec, or as the
    /// ghost of a process forked on the node) instead of starting one.
    pub attach: Option<u64>,
    /// The ghost of a process forked on the node: it shares its parent's
    /// stdio there, so this ghost relays none (and never reads stdin).
    pub forked: bool,
    /// Signals the previous ghost caught while it re-exec'd, for this one to
    /// pass on.
    pub pending: Vec<i32>,
}

impl GhostSpec {
    /// A ghost that starts a new process on `node`.
    pub fn start(node: u32, prefix: bool, stdin_null: bool) -> GhostSpec {
        GhostSpec { node, prefix, stdin_null, attach: None, forked: false, pending: Vec::new() }
    }

    pub fn encode(&self) -> String {
        let mut s =
            format!("node={};prefix={};stdin_null={}", self.node, u8::from(self.prefix), u8::from(self.stdin_null));
        if let Some(id) = self.attach {
            s.push_str(&format!(";attach={id};forked={}", u8::from(self.forked)));
        }
        if !self.pending.is_empty() {
            let list: Vec<String> = self.pending.iter().map(i32::to_string).collect();
            s.push_str(&format!(";pending={}", list.join(",")));
        }
        s
    }

    pub fn decode(s: &str) -> Result<GhostSpec, String> {
        let mut spec = GhostSpec::start(u32::MAX, false, false);
        for part in s.split(';') {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("bad ghost spec element {part:?}"))?;
            match k {
                "node" => spec.node = v.parse().map_err(|_| format!("bad node {v:?}"))?,
                "prefix" => spec.prefix = v == "1",
                "stdin_null" => spec.stdin_null = v == "1",
                "attach" => spec.attach = Some(v.parse().map_err(|_| format!("bad process id {v:?}"))?),
                "forked" => spec.forked = v == "1",
                "pending" => {
                    spec.pending = v
                        .split(',')
                        .map(|n| {
                            n.parse().ok().filter(|s| (1..=64).contains(s)).ok_or_else(|| format!("bad signal {n:?}"))
                        })
                        .collect::<Result<_, _>>()?
                }
                _ => return Err(format!("unknown ghost spec key {k:?}")),
            }
        }
        if spec.node == u32::MAX {
            return Err("ghost spec names no node".into());
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = GhostSpec::start(7, true, false);
        assert_eq!(GhostSpec::decode(&s.encode()), Ok(s.clone()));
        let attach = GhostSpec { attach: Some(1 << 63 | 5), forked: true, pending: vec![15, 2], ..s };
        assert_eq!(GhostSpec::decode(&attach.encode()), Ok(attach));
        assert!(GhostSpec::decode("node=1;pending=99").is_err());
        assert!(GhostSpec::decode("node=1;attach=x").is_err());
        assert!(GhostSpec::decode("prefix=1").is_err());
        assert!(GhostSpec::decode("node=x").is_err());
        assert!(GhostSpec::decode("node=1;evil=2").is_err());
    }
}
