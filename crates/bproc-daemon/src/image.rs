//! Rewriting a CRIU image for another PID: vrfork restores one child's
//! checkpoint as each of its siblings (copies of one process, told apart by
//! their PIDs and by what their marker pipes say).
//!
//! A CRIU image file is two magic numbers (4 bytes each) and then entries,
//! each a 4-byte little-endian length and a protobuf message. The process
//! tree (`pstree.img`) holds the PIDs; the per-process files carry the PID
//! in their names (`core-PID.img`, `mm-PID.img`, ...).

use std::path::Path;

/// CRIU's `PstreeEntry` (images/pstree.proto), the fields it has.
#[derive(Clone, PartialEq, prost::Message)]
struct PstreeEntry {
    #[prost(uint32, required, tag = "1")]
    pid: u32,
    #[prost(uint32, required, tag = "2")]
    ppid: u32,
    #[prost(uint32, required, tag = "3")]
    pgid: u32,
    #[prost(uint32, required, tag = "4")]
    sid: u32,
    #[prost(uint32, repeated, packed = "false", tag = "5")]
    threads: Vec<u32>,
}

/// The magic numbers and the entries of an image file.
fn entries(data: &[u8]) -> Result<(&[u8], Vec<&[u8]>), String> {
    if data.len() < 8 {
        return Err("shorter than its magic numbers".into());
    }
    let (magic, mut rest) = data.split_at(8);
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = rest.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        let Some(entry) = len.and_then(|len| rest.get(4..4 + len)) else {
            return Err("an entry runs past the end".into());
        };
        rest = &rest[4 + entry.len()..];
        out.push(entry);
    }
    Ok((magic, out))
}

/// Makes the one-process image in `dir` restore with PID `pid`; returns the
/// PID it had. A process that leads its own group or session (its pgid or
/// sid is its PID) keeps doing so under the new PID.
pub fn retarget(dir: &Path, pid: u32) -> Result<u32, String> {
    let path = dir.join("pstree.img");
    let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (magic, found) = entries(&data).map_err(|e| format!("pstree.img: {e}"))?;
    let [entry] = found.as_slice() else {
        return Err(format!("pstree.img holds {} processes, not one", found.len()));
    };
    let mut e = <PstreeEntry as prost::Message>::decode(*entry).map_err(|e| format!("pstree.img: {e}"))?;
    let old = e.pid;
    if e.threads != [old] {
        return Err(format!("process {old} has {} threads; only a single thread can be copied", e.threads.len()));
    }
    if old == pid {
        return Ok(old);
    }
    let swap = |v: &mut u32| {
        if *v == old {
            *v = pid;
        }
    };
    e.pid = pid;
    swap(&mut e.pgid);
    swap(&mut e.sid);
    e.threads = vec![pid];
    let body = prost::Message::encode_to_vec(&e);
    let mut out = magic.to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    std::fs::write(&path, out).map_err(|e| format!("{}: {e}", path.display()))?;
    let suffix = format!("-{old}.img");
    for f in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?.flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(&suffix) {
            std::fs::rename(f.path(), dir.join(format!("{stem}-{pid}.img")))
                .map_err(|e| format!("renaming {name}: {e}"))?;
        }
    }
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entries: &[PstreeEntry]) -> Vec<u8> {
        let mut out = vec![0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50];
        for e in entries {
            let body = prost::Message::encode_to_vec(e);
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(&body);
        }
        out
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("bproc-image-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    #[test]
    fn a_process_is_retargeted_in_the_tree_and_in_its_file_names() {
        let d = dir("one");
        let e = PstreeEntry { pid: 700, ppid: 0, pgid: 650, sid: 700, threads: vec![700] };
        std::fs::write(d.join("pstree.img"), image(&[e])).expect("write");
        for f in ["core-700.img", "mm-700.img", "pages-1.img", "fdinfo-2.img", "core-7000.img"] {
            std::fs::write(d.join(f), b"x").expect("write");
        }
        assert_eq!(retarget(&d, 4242), Ok(700));
        let data = std::fs::read(d.join("pstree.img")).expect("read");
        let (magic, found) = entries(&data).expect("entries");
        assert_eq!(magic, &image(&[])[..8]);
        let got = <PstreeEntry as prost::Message>::decode(found[0]).expect("decode");
        assert_eq!(got, PstreeEntry { pid: 4242, ppid: 0, pgid: 650, sid: 4242, threads: vec![4242] });
        let mut names: Vec<String> =
            std::fs::read_dir(&d).expect("ls").flatten().map(|f| f.file_name().to_string_lossy().into()).collect();
        names.sort();
        assert_eq!(
            names,
            ["core-4242.img", "core-7000.img", "fdinfo-2.img", "mm-4242.img", "pages-1.img", "pstree.img"]
        );
        assert_eq!(retarget(&d, 4242), Ok(4242), "again: nothing to do");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn trees_threads_and_garbage_are_refused() {
        let d = dir("bad");
        let one = PstreeEntry { pid: 5, ppid: 0, pgid: 5, sid: 5, threads: vec![5] };
        std::fs::write(d.join("pstree.img"), image(&[one.clone(), one.clone()])).expect("write");
        assert!(retarget(&d, 9).unwrap_err().contains("2 processes"));
        let threaded = PstreeEntry { threads: vec![5, 6], ..one };
        std::fs::write(d.join("pstree.img"), image(&[threaded])).expect("write");
        assert!(retarget(&d, 9).unwrap_err().contains("2 threads"));
        let mut cut = image(&[PstreeEntry { pid: 5, ppid: 0, pgid: 5, sid: 5, threads: vec![5] }]);
        cut.truncate(cut.len() - 2);
        std::fs::write(d.join("pstree.img"), cut).expect("write");
        assert!(retarget(&d, 9).unwrap_err().contains("past the end"));
        std::fs::write(d.join("pstree.img"), b"abc").expect("write");
        assert!(retarget(&d, 9).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
