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
}

impl GhostSpec {
    pub fn encode(&self) -> String {
        format!("node={};prefix={};stdin_null={}", self.node, u8::from(self.prefix), u8::from(self.stdin_null))
    }

    pub fn decode(s: &str) -> Result<GhostSpec, String> {
        let mut spec = GhostSpec { node: u32::MAX, prefix: false, stdin_null: false };
        for part in s.split(';') {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("bad ghost spec element {part:?}"))?;
            match k {
                "node" => spec.node = v.parse().map_err(|_| format!("bad node {v:?}"))?,
                "prefix" => spec.prefix = v == "1",
                "stdin_null" => spec.stdin_null = v == "1",
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
        let s = GhostSpec { node: 7, prefix: true, stdin_null: false };
        assert_eq!(GhostSpec::decode(&s.encode()), Ok(s));
        assert!(GhostSpec::decode("prefix=1").is_err());
        assert!(GhostSpec::decode("node=x").is_err());
        assert!(GhostSpec::decode("node=1;evil=2").is_err());
    }
}
