//! `libbproc.so`: BProc 4's C API (`sys/bproc.h`, in `include/`) over the
//! Rust libbproc. Every function follows BProc's convention: -1 and errno on
//! failure (BProc's own `BE_*` codes where BProc has one).
//!
//! A call that needs the master opens its own connection and closes it
//! before returning, so no thread or socket of ours outlives a call (a later
//! fork or rfork copies none).

use std::ffi::{c_char, c_int, CStr};

use libbproc::error::errno as be;
use libbproc::migrate::{self, block_on, Forked, NODE_MASTER, NODE_SELF};
use libbproc::{BprocError, Client, NodeStatus};

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

fn fail(e: c_int) -> c_int {
    set_errno(e);
    -1
}

fn nodes() -> Result<Vec<NodeStatus>, BprocError> {
    block_on(async { Client::connect().await?.nodes().await })
}

fn node_status(node: c_int) -> Result<NodeStatus, c_int> {
    let node = if node == NODE_SELF { migrate::currnode() } else { node };
    if node < 0 {
        return Err(be::BE_INVALIDNODE);
    }
    let all = nodes().map_err(|e| e.errno())?;
    all.into_iter().find(|n| n.node as c_int == node).ok_or(be::BE_INVALIDNODE)
}

/// The number of nodes (the front end not counted).
#[no_mangle]
pub extern "C" fn bproc_numnodes() -> c_int {
    match nodes() {
        Ok(n) => n.len() as c_int,
        Err(e) => fail(e.errno()),
    }
}

/// The caller's node number, or `BPROC_NODE_MASTER` on the front end.
#[no_mangle]
pub extern "C" fn bproc_currnode() -> c_int {
    migrate::currnode()
}

/// Copies node `node`'s state ("up", "down") into `status`; returns the
/// bytes used, NUL included.
///
/// # Safety
/// `status` must point to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn bproc_nodestatus(node: c_int, status: *mut c_char, len: c_int) -> c_int {
    if node == NODE_MASTER {
        return fail(libc::ENODATA);
    }
    let n = match node_status(node) {
        Ok(n) => n,
        Err(e) => return fail(if e == be::BE_INVALIDNODE { libc::ENOENT } else { e }),
    };
    let bytes = n.state.as_bytes();
    if status.is_null() || len < 0 || bytes.len() + 1 > len as usize {
        return fail(libc::ERANGE);
    }
    // SAFETY: the caller gave `len` bytes at `status`; we write at most
    // bytes.len() + 1 <= len of them.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), status.cast::<u8>(), bytes.len());
        *status.add(bytes.len()) = 0;
    }
    bytes.len() as c_int + 1
}

/// The C layout of `struct bproc_node_info_t`.
#[repr(C)]
pub struct NodeInfo {
    pub node: c_int,
    pub status: [c_char; 16],
    pub mode: u32,
    pub user: u32,
    pub group: u32,
    pub addr: libc::sockaddr,
}

/// Fills `info` with node `node`'s number, state, permissions and address.
///
/// # Safety
/// `info` must point to a writable `struct bproc_node_info_t`.
#[no_mangle]
pub unsafe extern "C" fn bproc_nodeinfo(node: c_int, info: *mut NodeInfo) -> c_int {
    let Ok(n) = node_status(node) else { return fail(be::BE_INVALIDNODE) };
    if info.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: an all-zero sockaddr is valid; the caller's struct is writable.
    let mut out: NodeInfo = unsafe { std::mem::zeroed() };
    out.node = n.node as c_int;
    for (slot, b) in out.status.iter_mut().zip(n.state.bytes().take(15)) {
        *slot = b as c_char;
    }
    out.mode = n.mode & 0o111;
    out.user = n.uid;
    out.group = n.gid;
    if let Ok(ip) = n.addr.parse::<std::net::Ipv4Addr>() {
        // SAFETY: sockaddr_in fits in sockaddr (both 16 bytes).
        let sin = unsafe { &mut *(&mut out.addr as *mut libc::sockaddr).cast::<libc::sockaddr_in>() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from(ip).to_be();
    }
    // SAFETY: checked non-null above.
    unsafe { info.write(out) };
    0
}

/// 0 if the caller may run processes on `node` (`mode` is `BPROC_X_OK`),
/// else -1 with EACCES. Checked like a file's execute bit, with the
/// caller's real ids (the master checks again on every request).
#[no_mangle]
pub extern "C" fn bproc_access(node: c_int, mode: c_int) -> c_int {
    let n = match node_status(node) {
        Ok(n) => n,
        Err(e) => return fail(if e == be::BE_INVALIDNODE { libc::ENOENT } else { e }),
    };
    if mode & !1 != 0 {
        return fail(libc::EINVAL);
    }
    // SAFETY: plain id queries.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut groups = [0 as libc::gid_t; 256];
    // SAFETY: getgroups writes at most 256 entries into the array.
    let count = unsafe { libc::getgroups(256, groups.as_mut_ptr()) }.max(0) as usize;
    let in_group = gid == n.gid || groups[..count].contains(&n.gid);
    let bit = if uid == 0 {
        0o111
    } else if uid == n.uid {
        0o100
    } else if in_group {
        0o010
    } else {
        0o001
    };
    if mode == 0 || n.mode & bit != 0 {
        0
    } else {
        fail(libc::EACCES)
    }
}

/// The node that process `pid` runs on, or `BPROC_NODE_MASTER` if it is
/// local, unknown or gone.
#[no_mangle]
pub extern "C" fn bproc_pidnode(pid: c_int) -> c_int {
    let procs = block_on(async { Client::connect().await?.processes().await });
    procs.ok().and_then(|ps| ps.into_iter().find(|p| p.pid == pid)).map_or(NODE_MASTER, |p| p.node as c_int)
}

/// The C layout of `struct bproc_version_t`.
#[repr(C)]
pub struct Version {
    pub bproc_magic: [c_char; 3],
    pub arch: u8,
    pub magic: u32,
    pub version_string: [c_char; 24],
}

/// Fills `vers` with this implementation's version.
///
/// # Safety
/// `vers` must point to a writable `struct bproc_version_t`.
#[no_mangle]
pub unsafe extern "C" fn bproc_version(vers: *mut Version) -> c_int {
    if vers.is_null() {
        return fail(libc::EFAULT);
    }
    let mut v = Version {
        bproc_magic: [b'B' as c_char, b'P' as c_char, b'r' as c_char],
        arch: 4,
        magic: 0,
        version_string: [0; 24],
    };
    let text = concat!("bproc-rs ", env!("CARGO_PKG_VERSION"));
    for (slot, b) in v.version_string.iter_mut().zip(text.bytes().take(23)) {
        *slot = b as c_char;
    }
    // SAFETY: checked non-null above.
    unsafe { vers.write(v) };
    0
}

/// A message for `err` (or `-err`): BProc's for its `BE_*` codes, else the
/// system's.
#[no_mangle]
pub extern "C" fn bproc_strerror(err: c_int) -> *const c_char {
    let err = err.saturating_abs();
    let text: &'static CStr = match err {
        be::BE_INVALIDNODE => c"Invalid node number",
        be::BE_NODEDOWN => c"Node is down",
        be::BE_SAMENODE => c"Move to same node",
        be::BE_SLAVEDIED => c"Slave node died",
        be::BE_INVALIDPROC => c"Invalid process ID",
        // SAFETY: strerror returns a pointer to a static or thread-local string.
        _ => return unsafe { libc::strerror(err) },
    };
    text.as_ptr()
}

/// Forks the caller onto `node`: the child's global PID in the caller, 0 in
/// the copy on the node, -1 and errno on failure (nothing is left behind).
#[no_mangle]
pub extern "C" fn bproc_rfork(node: c_int) -> c_int {
    match migrate::rfork(node) {
        Ok(Forked::Parent { pid }) => pid,
        Ok(Forked::Child) => 0,
        Err(e) => fail(e.errno()),
    }
}

/// Copies a NULL-terminated array of C strings (none for a null pointer).
///
/// # Safety
/// `list` is null or a NULL-terminated array of NUL-terminated strings.
unsafe fn strings(list: *const *const c_char) -> Vec<std::ffi::CString> {
    let mut out = Vec::new();
    if list.is_null() {
        return out;
    }
    for i in 0.. {
        // SAFETY: the caller promises a NULL-terminated array.
        let p = unsafe { *list.add(i) };
        if p.is_null() {
            break;
        }
        // SAFETY: each entry is a NUL-terminated string.
        out.push(unsafe { CStr::from_ptr(p) }.to_owned());
    }
    out
}

/// Replaces the caller by `cmd` running on `node` (its PID and parent stay:
/// the caller becomes the new process's ghost). Returns -1 and errno only
/// on failure.
///
/// # Safety
/// `cmd` is a C string; `argv` and `envp` are NULL-terminated arrays of them.
#[no_mangle]
pub unsafe extern "C" fn bproc_execmove(
    node: c_int,
    cmd: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    if cmd.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: as the caller promises.
    let (cmd, argv, envp) = unsafe { (CStr::from_ptr(cmd).to_owned(), strings(argv), strings(envp)) };
    fail(migrate::execmove(node, &cmd, &argv, &envp).errno())
}

/// BProc's remote exec: here the same as [`bproc_execmove`] (both run the
/// node's copy of the program).
///
/// # Safety
/// As for [`bproc_execmove`].
#[no_mangle]
pub unsafe extern "C" fn bproc_rexec(
    node: c_int,
    cmd: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: the same contract.
    unsafe { bproc_execmove(node, cmd, argv, envp) }
}

/// Writes a vector call's per-node results into `pids` (PID, or -errno).
///
/// # Safety
/// `pids` has room for `results.len()` ints.
unsafe fn put_pids(pids: *mut c_int, results: &[Result<i32, i32>]) {
    for (i, r) in results.iter().enumerate() {
        // SAFETY: the caller gave nnodes slots; results has nnodes entries.
        unsafe { *pids.add(i) = r.unwrap_or_else(|e| -e) };
    }
}

/// Runs `cmd` on each of `nodes[0..nnodes]` as a child of the caller, with
/// `BPROC_RANK` set to its index. Returns `nnodes`; `pids[i]` is the child's
/// PID or minus the errno why node i got none.
///
/// # Safety
/// `nodes` and `pids` have `nnodes` ints; `cmd`, `argv`, `envp` as for
/// [`bproc_execmove`].
#[no_mangle]
pub unsafe extern "C" fn bproc_vexecmove(
    nnodes: c_int,
    nodes: *const c_int,
    pids: *mut c_int,
    cmd: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    if nnodes <= 0 || nodes.is_null() || pids.is_null() || cmd.is_null() {
        return fail(libc::EINVAL);
    }
    // SAFETY: as the caller promises.
    let (targets, cmd, argv, envp) = unsafe {
        (
            std::slice::from_raw_parts(nodes, nnodes as usize).to_vec(),
            CStr::from_ptr(cmd).to_owned(),
            strings(argv),
            strings(envp),
        )
    };
    match migrate::vexecmove(&targets, &cmd, &argv, &envp) {
        Ok(results) => {
            // SAFETY: pids has nnodes slots.
            unsafe { put_pids(pids, &results) };
            nnodes
        }
        Err(e) => fail(e.errno()),
    }
}

/// Forks the caller onto each of `nodes[0..nnodes]`: returns `nnodes` in the
/// caller (with `pids[i]` the child's PID or minus an errno) and its index in
/// `nodes` in each child.
///
/// # Safety
/// `nodes` and `pids` have `nnodes` ints.
#[no_mangle]
pub unsafe extern "C" fn bproc_vrfork(nnodes: c_int, nodes: *const c_int, pids: *mut c_int) -> c_int {
    if nnodes <= 0 || nodes.is_null() || pids.is_null() {
        return fail(libc::EINVAL);
    }
    // SAFETY: nodes has nnodes ints.
    let targets = unsafe { std::slice::from_raw_parts(nodes, nnodes as usize) }.to_vec();
    match migrate::vrfork(&targets) {
        Ok(migrate::VForked::Parent { pids: results }) => {
            // SAFETY: pids has nnodes slots.
            unsafe { put_pids(pids, &results) };
            nnodes
        }
        Ok(migrate::VForked::Child { rank }) => rank as c_int,
        Err(e) => fail(e.errno()),
    }
}
