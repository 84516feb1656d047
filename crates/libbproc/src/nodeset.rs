//! Node lists as users write them: `0-3,7`.

use crate::error::BprocError;

/// Parses a node list such as `0-3,7` into node numbers, in the order given
/// and without duplicates.
pub fn parse(spec: &str) -> Result<Vec<u32>, BprocError> {
    let bad = |why: &str| BprocError::BadNodeList { spec: spec.to_string(), why: why.to_string() };
    let mut nodes = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(bad("empty element"));
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let lo: u32 = lo.parse().map_err(|_| bad(&format!("{lo:?} is not a node number")))?;
        let hi: u32 = hi.parse().map_err(|_| bad(&format!("{hi:?} is not a node number")))?;
        if hi < lo {
            return Err(bad(&format!("range {lo}-{hi} runs backwards")));
        }
        if hi - lo > 1 << 20 {
            return Err(bad("range too large"));
        }
        for n in lo..=hi {
            if !nodes.contains(&n) {
                nodes.push(n);
            }
        }
    }
    Ok(nodes)
}

/// Formats node numbers compactly, BProc style: `0-3,7`.
pub fn format(nodes: &[u32]) -> String {
    let mut sorted = nodes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        assert_eq!(parse("0-3,7").expect("ok"), vec![0, 1, 2, 3, 7]);
        assert_eq!(parse("5").expect("ok"), vec![5]);
        assert_eq!(parse("2,1,2").expect("ok"), vec![2, 1]);
        assert!(parse("3-1").is_err());
        assert!(parse("a").is_err());
        assert!(parse("1,,2").is_err());
        assert!(parse("-1").is_err());
    }

    #[test]
    fn formats_ranges() {
        assert_eq!(format(&[7, 0, 1, 2, 3]), "0-3,7");
        assert_eq!(format(&[1, 3]), "1,3");
        assert_eq!(format(&[]), "");
    }
}
