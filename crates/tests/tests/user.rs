//! A process runs on the node as its caller: uid, gid, groups, environment,
//! directory and umask, and no more rights than the caller has.

use std::os::unix::fs::PermissionsExt;

use tests::{cluster, run, sh, text};

const UID: u32 = 4242;
const GID: u32 = 4343;

/// A directory of mode `mode` holding a root-only (0600) file `secret`.
fn secret_dir(name: &str, mode: u32) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
    let secret = dir.join("secret");
    std::fs::write(&secret, "root only\n").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (dir, secret)
}

#[test]
fn remote_process_has_the_callers_identity_and_rights() {
    let c = cluster(2);
    let (dir, _secret) = secret_dir(&format!("bproc-user-{}", c.name()), 0o777);

    let bpsh = c.bin("bpsh");
    let remote = "id -u; id -g; id -G; echo \"$BPROC_TEST_VAR\"; pwd; umask";
    // As an unprivileged user with supplementary groups, a umask and a
    // directory of its own: the remote process gets all of them.
    let script = format!(
        "cd {dir} && umask 027 && exec setpriv --reuid={UID} --regid={GID} --groups=4444,4545 \
         env BPROC_TEST_VAR='hello there' {bpsh} 1 sh -c '{remote}'",
        dir = dir.display(),
        bpsh = bpsh.display(),
    );
    let out = run(&mut sh(&c, &script));
    let result = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines[0], UID.to_string());
    assert_eq!(lines[1], GID.to_string());
    let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["4343", "4444", "4545"]);
    assert_eq!(lines[3], "hello there");
    assert_eq!(lines[4], dir.display().to_string());
    assert_eq!(lines[5], "0027");
    result.expect("cleanup");
}

#[test]
fn a_file_the_user_cannot_read_here_cannot_be_read_through_bpsh() {
    let c = cluster(1);
    let (dir, secret) = secret_dir(&format!("bproc-secret-{}", c.name()), 0o755);

    let script = format!(
        "exec setpriv --reuid={UID} --regid={GID} --clear-groups {} 0 cat {}",
        c.bin("bpsh").display(),
        secret.display()
    );
    let out = run(&mut sh(&c, &script));
    // Root can, through the same path.
    let root = run(c.command("bpsh").args(["0", "cat"]).arg(&secret));
    std::fs::remove_dir_all(&dir).expect("cleanup");
    assert_eq!(out.status.code(), Some(1), "cat must fail: stdout {:?}", text(&out.stdout));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("Permission denied"), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&root.stdout), "root only\n");
}
