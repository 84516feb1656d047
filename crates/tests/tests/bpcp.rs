//! `bpcp`: files to a node, back, and from node to node, byte for byte, with
//! `-p` keeping the mode.

use std::os::unix::fs::PermissionsExt;

use tests::{cluster, run, text};

#[test]
fn bpcp_copies_to_from_and_between_nodes() {
    let c = cluster(3);
    let dir = c.state_dir();
    let src = dir.join("src.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&src, &data).expect("write the source");
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let on_node = dir.join("on-node-1.bin");
    let on_node2 = dir.join("on-node-2.bin");
    let back = dir.join("back.bin");
    let bpcp = |args: &[String]| {
        let out = run(c.command("bpcp").args(args));
        assert!(out.status.success(), "bpcp {args:?}: {}", text(&out.stderr));
    };
    let s = |p: &std::path::Path| p.display().to_string();
    bpcp(&["-p".into(), s(&src), format!("1:{}", s(&on_node))]);
    bpcp(&["-p".into(), format!("1:{}", s(&on_node)), format!("2:{}", s(&on_node2))]);
    bpcp(&["-p".into(), format!("2:{}", s(&on_node2)), s(&back)]);
    for p in [&on_node, &on_node2, &back] {
        assert_eq!(std::fs::read(p).expect("read a copy"), data, "{} is a copy", p.display());
        let mode = std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640, "-p kept the mode of {}", p.display());
    }
    // Several sources into a directory on a node.
    let into = dir.join("into");
    std::fs::create_dir(&into).expect("mkdir");
    bpcp(&[s(&src), s(&back), format!("0:{}", s(&into))]);
    assert_eq!(std::fs::read(into.join("src.bin")).expect("copied"), data);
    assert_eq!(std::fs::read(into.join("back.bin")).expect("copied"), data);
    // A missing source fails clearly.
    let out = run(c.command("bpcp").args([format!("1:{}/nothing", s(dir)), s(&dir.join("x"))]));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("bpcp:"), "{}", text(&out.stderr));
}
