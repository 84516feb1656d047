//! `libbproc.so`: BProc 4's C API (`sys/bproc.h`, in `include/`) over the
//! Rust libbproc. Every function follows BProc's convention: -1 and errno on
//! failure (BProc's own `BE_*` codes where BProc has one).
//!
//! A call that needs the master opens its own connection and closes it
//! before returning, so no thread or socket of ours outlives a call (a later
//! fork or rfork copies none).

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CStr};

use libbproc::error::errno as be;
use libbproc::io::{IoEntry, IoTarget};
use libbproc::migrate::{self, block_on, Forked, NODE_MASTER, NODE_SELF};
use libbproc::{BprocError, Client, NodeStatus};

/// Longest node state (without its NUL), as in `struct bproc_node_info_t`.
const BPROC_STATE_LEN: usize = 15;
/// `BPROC_NODE_ANY`: every node (`bproc_proclist`).
const NODE_ANY: c_int = migrate::NODE_ANY;
/// Most entries an io list may have (`BPROC_IO_MAX_LEN`).
const BPROC_IO_MAX_LEN: c_int = 16;
/// Node sets grow in steps of this many entries.
const ALLOC_CHUNK: i64 = 128;

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
#[derive(Clone, Copy)]
pub struct NodeInfo {
    pub node: c_int,
    pub status: [c_char; 16],
    pub mode: u32,
    pub user: u32,
    pub group: u32,
    pub addr: libc::sockaddr,
}

/// An `AF_INET` address (port 0) for the IP `addr`; None for no or another
/// kind of address (a down node has none).
fn inet_sockaddr(addr: &str) -> Option<libc::sockaddr> {
    let ip = match addr.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(ip) => ip,
        std::net::IpAddr::V6(ip) => ip.to_ipv4_mapped()?,
    };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: both are plain 16-byte C structs, and any bytes make a sockaddr.
    Some(unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) })
}

/// The C record of one node: number, state (cut at 15 bytes), the 0111
/// permission bits, owner, group and address (zero when it has none).
fn node_info(n: &NodeStatus) -> NodeInfo {
    // SAFETY: all zeroes is a valid NodeInfo (integers, chars, a sockaddr).
    let mut out: NodeInfo = unsafe { std::mem::zeroed() };
    out.node = n.node as c_int;
    for (slot, b) in out.status.iter_mut().zip(n.state.bytes().take(BPROC_STATE_LEN)) {
        *slot = b as c_char;
    }
    out.mode = n.mode & 0o111;
    out.user = n.uid;
    out.group = n.gid;
    if let Some(addr) = inet_sockaddr(&n.addr) {
        out.addr = addr;
    }
    out
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
    // SAFETY: checked non-null above; the caller's struct is writable.
    unsafe { info.write(node_info(&n)) };
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

/// A vexecmove's nodes, command, argv and envp, copied (EINVAL for a bad
/// count or a null pointer).
///
/// # Safety
/// As for [`bproc_vexecmove`].
#[allow(clippy::type_complexity)]
unsafe fn vexec_args(
    nnodes: c_int,
    nodes: *const c_int,
    pids: *mut c_int,
    cmd: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> Result<(Vec<c_int>, std::ffi::CString, Vec<std::ffi::CString>, Vec<std::ffi::CString>), c_int> {
    if nnodes <= 0 || nodes.is_null() || pids.is_null() || cmd.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: as the caller promises.
    unsafe {
        Ok((
            std::slice::from_raw_parts(nodes, nnodes as usize).to_vec(),
            CStr::from_ptr(cmd).to_owned(),
            strings(argv),
            strings(envp),
        ))
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
    // SAFETY: as the caller promises.
    let (targets, cmd, argv, envp) = match unsafe { vexec_args(nnodes, nodes, pids, cmd, argv, envp) } {
        Ok(args) => args,
        Err(e) => return fail(e),
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
    // SAFETY: the same contract.
    unsafe { vrfork_with(nnodes, nodes, pids, None) }
}

/// [`bproc_vrfork`], each copy set up by `list` when there is one.
///
/// # Safety
/// As for [`bproc_vrfork`].
unsafe fn vrfork_with(nnodes: c_int, nodes: *const c_int, pids: *mut c_int, list: Option<Vec<IoEntry>>) -> c_int {
    if nnodes <= 0 || nodes.is_null() || pids.is_null() {
        return fail(libc::EINVAL);
    }
    // SAFETY: nodes has nnodes ints.
    let targets = unsafe { std::slice::from_raw_parts(nodes, nnodes as usize) }.to_vec();
    let forked = match &list {
        None => migrate::vrfork(&targets),
        Some(list) => libbproc::io::vrfork_io(&targets, list),
    };
    match forked {
        Ok(migrate::VForked::Parent { pids: results }) => {
            // SAFETY: pids has nnodes slots.
            unsafe { put_pids(pids, &results) };
            nnodes
        }
        Ok(migrate::VForked::Child { rank }) => rank as c_int,
        Err(e) => fail(e.errno()),
    }
}

// ---------------------------------------------------------------------------
// Node sets: malloc'd arrays of node records that C callers free with
// bproc_nodeset_free (or free(3)).

/// The C layout of `struct bproc_node_set_t`.
#[repr(C)]
pub struct NodeSet {
    /// Entries in use.
    pub size: c_int,
    /// Entries allocated.
    pub alloc: c_int,
    /// The entries (malloc'd), or null.
    pub node: *mut NodeInfo,
}

/// 0 for `Ok`, else -1 with the errno.
fn status(r: Result<(), c_int>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

/// Makes `*ns` empty without freeing what it held.
///
/// # Safety
/// `ns` points to a writable node set.
unsafe fn set_empty(ns: *mut NodeSet) {
    // SAFETY: as the caller promises.
    unsafe { ns.write(NodeSet { size: 0, alloc: 0, node: std::ptr::null_mut() }) };
}

/// Makes room for `size` entries: `alloc` becomes at least `size` rounded up
/// to a multiple of 128 (BProc's chunk); `size` is left alone.
///
/// # Safety
/// `ns` points to a node set whose `node` is null or from malloc.
unsafe fn grow(ns: *mut NodeSet, size: i64) -> Result<(), c_int> {
    let want = (size + ALLOC_CHUNK - 1) & !(ALLOC_CHUNK - 1);
    // SAFETY: as the caller promises; no other reference to it is live.
    let ns = unsafe { &mut *ns };
    if want <= 0 || i64::from(ns.alloc) >= want {
        return Ok(());
    }
    let alloc = c_int::try_from(want).map_err(|_| libc::ENOMEM)?;
    let bytes = std::mem::size_of::<NodeInfo>().checked_mul(want as usize).ok_or(libc::ENOMEM)?;
    // SAFETY: `node` is null or a malloc'd block (the caller's promise).
    let p = unsafe { libc::realloc(ns.node.cast::<c_void>(), bytes) };
    if p.is_null() {
        return Err(libc::ENOMEM);
    }
    ns.node = p.cast::<NodeInfo>();
    ns.alloc = alloc;
    Ok(())
}

/// Replaces `*ns` (without freeing it) by a set holding `nodes`, allocated
/// in chunks as [`bproc_nodeset_grow`] does. On failure `*ns` is empty.
///
/// # Safety
/// `ns` points to a writable node set.
unsafe fn set_fill(ns: *mut NodeSet, nodes: &[NodeInfo]) -> Result<(), c_int> {
    // SAFETY: as the caller promises.
    unsafe { set_empty(ns) };
    let count = c_int::try_from(nodes.len()).map_err(|_| libc::ENOMEM)?;
    // SAFETY: `*ns` is empty: its `node` is null.
    unsafe { grow(ns, count.into()) }?;
    if count > 0 {
        // SAFETY: grow made room for `count` entries at `node`, a fresh block
        // that cannot overlap the Rust slice.
        unsafe {
            std::ptr::copy_nonoverlapping(nodes.as_ptr(), (*ns).node, nodes.len());
            (*ns).size = count;
        }
    }
    Ok(())
}

/// The entries of a node set, copied.
///
/// # Safety
/// `ns` points to a node set whose `node` holds `size` entries.
unsafe fn set_entries(ns: *const NodeSet) -> Vec<NodeInfo> {
    // SAFETY: as the caller promises.
    let (size, node) = unsafe { ((*ns).size, (*ns).node) };
    if size <= 0 || node.is_null() {
        return Vec::new();
    }
    // SAFETY: `node` holds `size` entries.
    unsafe { std::slice::from_raw_parts(node, size as usize) }.to_vec()
}

/// Makes `ns` a set of `size` entries (uninitialized, for the caller to fill:
/// `size` and `alloc` are both `size`), or an empty set for `size <= 0`.
/// Returns 0, or -1 with ENOMEM.
///
/// # Safety
/// `ns` must point to a writable `struct bproc_node_set_t`; what it held is
/// not freed.
#[no_mangle]
pub unsafe extern "C" fn bproc_nodeset_init(ns: *mut NodeSet, size: c_int) -> c_int {
    if ns.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: checked non-null; the caller promises it is writable.
    unsafe { set_empty(ns) };
    if size <= 0 {
        return 0;
    }
    let Some(bytes) = std::mem::size_of::<NodeInfo>().checked_mul(size as usize) else {
        return fail(libc::ENOMEM);
    };
    // SAFETY: a plain allocation.
    let p = unsafe { libc::malloc(bytes) };
    if p.is_null() {
        return fail(libc::ENOMEM);
    }
    // SAFETY: checked non-null above.
    unsafe { ns.write(NodeSet { size, alloc: size, node: p.cast::<NodeInfo>() }) };
    0
}

/// Makes room in `ns` for at least `size` entries (allocated in multiples of
/// 128); its `size` stays. Returns 0, or -1 with ENOMEM.
///
/// # Safety
/// `ns` must point to a valid node set (its `node` null or from malloc).
#[no_mangle]
pub unsafe extern "C" fn bproc_nodeset_grow(ns: *mut NodeSet, size: c_int) -> c_int {
    if ns.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: checked non-null; valid as the caller promises.
    status(unsafe { grow(ns, size.into()) })
}

/// Frees the entries of `ns` and makes it empty; calling it again is fine.
///
/// # Safety
/// `ns` must point to a valid node set (its `node` null or from malloc).
#[no_mangle]
pub unsafe extern "C" fn bproc_nodeset_free(ns: *mut NodeSet) {
    if ns.is_null() {
        return;
    }
    // SAFETY: valid as the caller promises: `node` is null or from malloc,
    // and is forgotten right after.
    unsafe {
        libc::free((*ns).node.cast::<c_void>());
        set_empty(ns);
    }
}

/// Appends a copy of `*n` to `ns`. Returns 0, or -1 with ENOMEM.
///
/// # Safety
/// `ns` must point to a valid node set, `n` to a `struct bproc_node_info_t`.
#[no_mangle]
pub unsafe extern "C" fn bproc_nodeset_add(ns: *mut NodeSet, n: *const NodeInfo) -> c_int {
    if ns.is_null() || n.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: both valid as the caller promises; `n` is read before the set
    // may move (it may point into the set itself).
    unsafe {
        let entry = n.read();
        let size = (*ns).size.max(0);
        if let Err(e) = grow(ns, i64::from(size) + 1) {
            return fail(e);
        }
        (*ns).node.add(size as usize).write(entry);
        (*ns).size = size + 1;
    }
    0
}

/// Appends copies of all of `b`'s entries to `a` (`b` is unchanged; it may
/// be `a` itself). Returns 0, or -1 with ENOMEM.
///
/// # Safety
/// `a` and `b` must point to valid node sets.
#[no_mangle]
pub unsafe extern "C" fn bproc_nodeset_append(a: *mut NodeSet, b: *const NodeSet) -> c_int {
    if a.is_null() || b.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: both valid as the caller promises. They may be the same set,
    // so only raw pointers are used, and `b` is read again after the grow.
    unsafe {
        let (a_size, b_size) = ((*a).size.max(0), (*b).size.max(0));
        if b_size == 0 {
            return 0;
        }
        if let Err(e) = grow(a, i64::from(a_size) + i64::from(b_size)) {
            return fail(e);
        }
        let src = (*b).node;
        if src.is_null() {
            return fail(libc::EFAULT);
        }
        std::ptr::copy(src, (*a).node.add(a_size as usize), b_size as usize);
        (*a).size = a_size + b_size;
    }
    0
}

/// Every node's record, in node order.
fn node_list() -> Result<Vec<NodeInfo>, c_int> {
    let mut all = nodes().map_err(|e| e.errno())?;
    all.sort_by_key(|n| n.node);
    Ok(all.iter().map(node_info).collect())
}

/// Makes `ns` the set of every node (in node order) and returns their
/// number. What `ns` held before is not freed; free the result with
/// [`bproc_nodeset_free`]. On failure -1 with errno, and `ns` is empty.
///
/// # Safety
/// `ns` must point to a writable `struct bproc_node_set_t`.
#[no_mangle]
pub unsafe extern "C" fn bproc_nodelist(ns: *mut NodeSet) -> c_int {
    if ns.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: checked non-null; writable as the caller promises.
    unsafe { set_empty(ns) };
    let filled = node_list().and_then(|list| {
        // SAFETY: as above.
        unsafe { set_fill(ns, &list) }?;
        Ok(list.len() as c_int)
    });
    filled.unwrap_or_else(fail)
}

/// BProc's node list read from a notifier fd: there is no status file to
/// read here, so -1 with ENOSYS (`ns` is made empty). Use [`bproc_nodelist`].
///
/// # Safety
/// `ns` must point to a writable `struct bproc_node_set_t`.
#[no_mangle]
pub unsafe extern "C" fn bproc_nodelist_(ns: *mut NodeSet, _fd: c_int) -> c_int {
    if !ns.is_null() {
        // SAFETY: checked non-null; writable as the caller promises.
        unsafe { set_empty(ns) };
    }
    fail(libc::ENOSYS)
}

/// A number of a node spec at the start of `s` (NUL-terminated): an
/// optional `n` or `.`, then what `strtol(.., 0)` reads (so `010` is 8 and
/// `0x10` is 16), which must be followed by `,`, `-` or the end. Gives the
/// number (as C's `int` takes a `long`) and the bytes used.
fn spec_number(s: &[u8]) -> Option<(c_int, usize)> {
    let skip = usize::from(matches!(s.first(), Some(b'n' | b'.')));
    let tail = CStr::from_bytes_until_nul(s.get(skip..)?).ok()?;
    let mut end: *mut c_char = std::ptr::null_mut();
    // SAFETY: `tail` is NUL-terminated; strtol stores in `end` a pointer into it.
    let value = unsafe { libc::strtol(tail.as_ptr(), &mut end, 0) };
    let used = (end as usize).checked_sub(tail.as_ptr() as usize)?;
    if used == 0 {
        return None;
    }
    match s.get(skip + used)? {
        b',' | b'-' | 0 => Some((value as c_int, skip + used)),
        _ => None,
    }
}

/// Whether `s` starts with the whole chunk `word` (followed by `,` or the end).
fn spec_word(s: &[u8], word: &str) -> bool {
    s.starts_with(word.as_bytes()) && matches!(s.get(word.len()), Some(b',' | 0))
}

/// The state of a node record, up to its NUL.
fn state_of(n: &NodeInfo) -> Vec<u8> {
    n.status.iter().map(|&c| c as u8).take_while(|&b| b != 0).collect()
}

/// The nodes `spec` names among `nodes`, in the order it names them
/// (duplicates kept), following BProc's grammar: comma-separated chunks,
/// each a number or range (`5`, `5-10`, `5-` up to the highest node), `all`,
/// `master` (a made-up record for node -1), or a state, optionally with
/// `all` and `not` prefixes (`up`, `allup`, `notdown`, `allnotdown`).
/// Numbers not in `nodes` are skipped. None for a chunk that is none of
/// these. `spec` is NUL-terminated.
fn filter(nodes: &[NodeInfo], spec: &[u8]) -> Option<Vec<NodeInfo>> {
    let mut by_number = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if n.node >= 0 {
            by_number.insert(n.node, i);
        }
    }
    let mut out = Vec::new();
    // Without nodes, nothing can be selected (and nothing is checked).
    let Some(&max_id) = by_number.keys().next_back() else { return Some(out) };
    let mut at = 0;
    while spec.get(at).is_some_and(|&b| b != 0) {
        while spec.get(at) == Some(&b',') {
            at += 1;
        }
        let s = spec.get(at..)?;
        at += if let Some((first, mut used)) = spec_number(s) {
            let last = if s.get(used) == Some(&b'-') {
                used += 1;
                match spec_number(&s[used..]) {
                    Some((n, more)) => {
                        used += more;
                        n
                    }
                    None => max_id,
                }
            } else {
                first
            };
            let (lo, hi) = (first.max(0), last.min(max_id));
            if lo <= hi {
                out.extend(by_number.range(lo..=hi).map(|(_, &i)| nodes[i]));
            }
            used
        } else if spec_word(s, "master") {
            // SAFETY: all zeroes is a valid NodeInfo.
            let mut master: NodeInfo = unsafe { std::mem::zeroed() };
            master.node = NODE_MASTER;
            master.status[0] = b'u' as c_char;
            master.status[1] = b'p' as c_char;
            master.mode = 0o111;
            out.push(master);
            "master".len()
        } else if spec_word(s, "all") {
            out.extend(by_number.values().map(|&i| nodes[i]));
            "all".len()
        } else {
            // A state name: [A-Za-z][A-Za-z0-9_]*.
            if !s.first()?.is_ascii_alphabetic() {
                return None;
            }
            let len = s.iter().position(|&b| !(b.is_ascii_alphanumeric() || b == b'_')).unwrap_or(s.len());
            let mut name = &s[..len];
            if let Some(rest) = name.strip_prefix(b"all") {
                // BProc's "all!state" form never worked: refuse it.
                if rest.is_empty() && s.get(len) == Some(&b'!') {
                    return None;
                }
                name = rest;
            }
            let (invert, name) = match name.strip_prefix(b"not") {
                Some(rest) => (true, rest),
                None => (false, name),
            };
            out.extend(by_number.values().map(|&i| nodes[i]).filter(|n| (state_of(n) == name) != invert));
            len
        };
    }
    Some(out)
}

/// Makes `out` the set of the entries of `in_` that `spec` selects (see
/// `bproc_nodespec` in `sys/bproc.h` for the grammar). What `out` held
/// before is not freed. Returns 0, or -1 with EINVAL for a spec that does
/// not parse (or ENOMEM), `out` then empty. With `in_` empty the result is
/// empty and the spec is not checked.
///
/// # Safety
/// `out` must point to a writable node set, `in_` to a valid one (it may be
/// `out` itself), `spec` to a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn bproc_nodefilter(out: *mut NodeSet, in_: *const NodeSet, spec: *const c_char) -> c_int {
    if out.is_null() || in_.is_null() || spec.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: valid as the caller promises; copied before `out` is reset.
    let (all, spec) = unsafe { (set_entries(in_), CStr::from_ptr(spec)) };
    // SAFETY: writable as the caller promises.
    unsafe { set_empty(out) };
    let Some(chosen) = filter(&all, spec.to_bytes_with_nul()) else { return fail(libc::EINVAL) };
    // SAFETY: as above.
    status(unsafe { set_fill(out, &chosen) })
}

/// [`bproc_nodelist`] then [`bproc_nodefilter`] with `spec`: makes `ns` the
/// nodes `spec` names. Returns 0, or -1 with errno (EINVAL for a bad spec).
///
/// # Safety
/// `ns` must point to a writable node set, `spec` to a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn bproc_nodespec(ns: *mut NodeSet, spec: *const c_char) -> c_int {
    if ns.is_null() || spec.is_null() {
        return fail(libc::EFAULT);
    }
    let all = match node_list() {
        Ok(all) => all,
        Err(e) => return fail(e),
    };
    // SAFETY: writable as the caller promises.
    unsafe { set_empty(ns) };
    // SAFETY: NUL-terminated as the caller promises.
    let spec = unsafe { CStr::from_ptr(spec) };
    let Some(chosen) = filter(&all, spec.to_bytes_with_nul()) else { return fail(libc::EINVAL) };
    // SAFETY: as above.
    status(unsafe { set_fill(ns, &chosen) })
}

// ---------------------------------------------------------------------------
// Node attributes (BProc kept them as extended attributes "bproc.NAME").

/// The value of node `node`'s attribute `name`: "state" (the state string
/// with its NUL) and "addr" (a 16-byte `AF_INET` sockaddr; none for a down
/// node). The front end has neither (ENODATA); an unknown node gives ENOENT,
/// any other name ENODATA.
fn node_attr(node: c_int, name: &[u8]) -> Result<Vec<u8>, c_int> {
    let node = if node == NODE_SELF { migrate::currnode() } else { node };
    if node == NODE_MASTER {
        return Err(libc::ENODATA);
    }
    if node < 0 {
        return Err(libc::ENOENT);
    }
    let all = nodes().map_err(|e| e.errno())?;
    let n = all.into_iter().find(|n| n.node as c_int == node).ok_or(libc::ENOENT)?;
    match name {
        b"state" => {
            let mut value: Vec<u8> = n.state.bytes().take(BPROC_STATE_LEN).collect();
            value.push(0);
            Ok(value)
        }
        b"addr" => {
            let addr = inet_sockaddr(&n.addr).ok_or(libc::ENODATA)?;
            let bytes = std::ptr::addr_of!(addr).cast::<u8>();
            // SAFETY: a sockaddr is plain bytes, all initialized.
            Ok(unsafe { std::slice::from_raw_parts(bytes, std::mem::size_of::<libc::sockaddr>()) }.to_vec())
        }
        _ => Err(libc::ENODATA),
    }
}

/// Copies `value` into `size` bytes at `out`, as getxattr(2) does: the
/// length, the length needed when `size` is 0, ERANGE when it is too small.
///
/// # Safety
/// `out` has `size` writable bytes.
unsafe fn put_value(value: &[u8], out: *mut c_void, size: c_int) -> Result<c_int, c_int> {
    if size == 0 {
        return Ok(value.len() as c_int);
    }
    if size < 0 || (size as usize) < value.len() {
        return Err(libc::ERANGE);
    }
    if out.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: the caller gave `size` >= value.len() bytes at `out`.
    unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), out.cast::<u8>(), value.len()) };
    Ok(value.len() as c_int)
}

/// Reads node `node`'s attribute `name` (BProc's `bproc.NAME` without the
/// prefix) into `size` bytes at `value`: "state" (the state with its NUL)
/// or "addr" (an `AF_INET` sockaddr). Returns the value's length (the
/// length needed when `size` is 0), or -1 with ENODATA (no such attribute:
/// other names, "addr" of a down node, either of the front end), ERANGE
/// (too small) or ENOENT (no such node).
///
/// # Safety
/// `name` must be a NUL-terminated string, `value` have `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn bproc_getnodeattr(node: c_int, name: *const c_char, value: *mut c_void, size: c_int) -> c_int {
    if name.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: NUL-terminated as the caller promises.
    let name = unsafe { CStr::from_ptr(name) };
    // SAFETY: `value` has `size` bytes as the caller promises.
    match node_attr(node, name.to_bytes()).and_then(|v| unsafe { put_value(&v, value, size) }) {
        Ok(len) => len,
        Err(e) => fail(e),
    }
}

/// Node `node`'s address as an `AF_INET` sockaddr: `*size` is the room at
/// `addr` before the call and the length used after. Returns 0, or -1 with
/// ENODATA (a down node, or the front end, whose address clients are not
/// told), ERANGE (too small) or ENOENT (no such node).
///
/// # Safety
/// `size` must point to an int, `addr` have `*size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn bproc_nodeaddr(node: c_int, addr: *mut libc::sockaddr, size: *mut c_int) -> c_int {
    if size.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: `size` points to an int, `addr` has that many bytes.
    let put = node_attr(node, b"addr").and_then(|v| unsafe { put_value(&v, addr.cast::<c_void>(), *size) });
    match put {
        Ok(len) => {
            // SAFETY: checked non-null above.
            unsafe { *size = len };
            0
        }
        Err(e) => fail(e),
    }
}

/// BProc's notifier (an fd that becomes readable when the machine's state
/// changes): not available here, -1 with ENOSYS.
#[no_mangle]
pub extern "C" fn bproc_notifier() -> c_int {
    fail(libc::ENOSYS)
}

// ---------------------------------------------------------------------------
// Remote processes.

/// The C layout of `struct bproc_proc_info_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ProcInfo {
    pub pid: c_int,
    pub node: c_int,
}

/// The remote processes on `node` (every node for `BPROC_NODE_ANY`), from
/// the master's process table: global PID (the ghost's) and node, in PID
/// order. Returns their number and stores in `*list` a malloc'd array the
/// caller frees (null when there are none); -1 with errno on failure.
/// Processes that have no ghost yet (no PID here) are not listed.
///
/// # Safety
/// `list` must point to a writable `struct bproc_proc_info_t *`.
#[no_mangle]
pub unsafe extern "C" fn bproc_proclist(node: c_int, list: *mut *mut ProcInfo) -> c_int {
    if list.is_null() {
        return fail(libc::EFAULT);
    }
    let procs = match block_on(async { Client::connect().await?.processes().await }) {
        Ok(p) => p,
        Err(e) => return fail(e.errno()),
    };
    let mut found: Vec<ProcInfo> = procs
        .iter()
        .filter(|p| p.pid > 0 && (node == NODE_ANY || p.node as c_int == node))
        .map(|p| ProcInfo { pid: p.pid, node: p.node as c_int })
        .collect();
    found.sort_by_key(|p| p.pid);
    let mut array: *mut ProcInfo = std::ptr::null_mut();
    if !found.is_empty() {
        // SAFETY: a plain allocation (the count fits: it came from a Vec).
        array = unsafe { libc::malloc(std::mem::size_of_val(found.as_slice())) }.cast::<ProcInfo>();
        if array.is_null() {
            return fail(libc::ENOMEM);
        }
        // SAFETY: `array` has room for found.len() entries and is fresh.
        unsafe { std::ptr::copy_nonoverlapping(found.as_ptr(), array, found.len()) };
    }
    // SAFETY: checked non-null; writable as the caller promises.
    unsafe { *list = array };
    found.len() as c_int
}

// ---------------------------------------------------------------------------
// The io and flag variants of the migration calls. An io list is set up in
// the copy on the node (`libbproc::io`); BProc's dump flags mean nothing to
// CRIU and are ignored.

/// `BPROC_IO_FILE`, `BPROC_IO_SOCKET`, `BPROC_IO_MEMFILE`.
const BPROC_IO_FILE: i16 = 0;
const BPROC_IO_SOCKET: i16 = 1;
const BPROC_IO_MEMFILE: i16 = 2;
/// `BPROC_IO_SEND_INFO`, `BPROC_IO_DELAY`.
const BPROC_IO_SEND_INFO: i16 = 1;
const BPROC_IO_DELAY: i16 = 2;

/// The C layout of `struct bproc_io_t`'s file part.
#[repr(C)]
#[derive(Clone, Copy)]
struct IoFile {
    flags: c_int,
    mode: c_int,
    offset: std::ffi::c_long,
    name: [c_char; 256],
}

/// The C layout of `struct bproc_io_t`'s union.
#[repr(C)]
#[derive(Clone, Copy)]
union IoData {
    addr: libc::sockaddr,
    file: IoFile,
    mem: [usize; 2],
}

/// The C layout of `struct bproc_io_t`.
#[repr(C)]
#[derive(Clone, Copy)]
struct BprocIo {
    fd: c_int,
    kind: i16,
    flags: i16,
    d: IoData,
}

/// Reads an io list: `None` for the default forwarding (`io` null or
/// `iolen` -1), else its entries; EINVAL for a bad count, type or address
/// family, EPERM for a memory file (as BProc).
///
/// # Safety
/// Unless `iolen` is -1 or `io` null, `io` points to `iolen` entries.
unsafe fn io_list(io: *const c_void, iolen: c_int) -> Result<Option<Vec<IoEntry>>, c_int> {
    if io.is_null() || iolen == -1 {
        return Ok(None);
    }
    if !(0..=BPROC_IO_MAX_LEN).contains(&iolen) {
        return Err(libc::EINVAL);
    }
    // SAFETY: as the caller promises.
    let raw = unsafe { std::slice::from_raw_parts(io.cast::<BprocIo>(), iolen as usize) };
    let mut list = Vec::with_capacity(raw.len());
    for e in raw {
        let target = match e.kind {
            BPROC_IO_FILE => {
                // SAFETY: a FILE entry's union holds the file part.
                let file = unsafe { e.d.file };
                let bytes: Vec<u8> = file.name.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
                let path = std::ffi::CString::new(bytes).map_err(|_| libc::EINVAL)?;
                IoTarget::File { path, flags: file.flags, mode: file.mode as u32 }
            }
            BPROC_IO_SOCKET => {
                // SAFETY: a SOCKET entry's union holds a sockaddr; an AF_INET
                // one is a sockaddr_in (both 16 bytes).
                let addr = unsafe { e.d.addr };
                if c_int::from(addr.sa_family) != libc::AF_INET {
                    return Err(libc::EINVAL);
                }
                // SAFETY: as above.
                let sin: libc::sockaddr_in = unsafe { std::mem::transmute(addr) };
                IoTarget::Socket(std::net::SocketAddrV4::new(
                    u32::from_be(sin.sin_addr.s_addr).into(),
                    u16::from_be(sin.sin_port),
                ))
            }
            BPROC_IO_MEMFILE => return Err(libc::EPERM),
            _ => return Err(libc::EINVAL),
        };
        list.push(IoEntry {
            fd: e.fd,
            target,
            send_info: e.flags & BPROC_IO_SEND_INFO != 0,
            delay: e.flags & BPROC_IO_DELAY != 0,
        });
    }
    Ok(Some(list))
}

/// [`bproc_rfork`] with an io list: the copy on the node has the list's
/// descriptors in place of its relayed stdio (none with an empty list).
///
/// # Safety
/// `io` is null or points to `iolen` entries (unless `iolen` is -1).
#[no_mangle]
pub unsafe extern "C" fn bproc_rfork_io(node: c_int, io: *const c_void, iolen: c_int) -> c_int {
    // SAFETY: as the caller promises.
    match unsafe { io_list(io, iolen) } {
        Ok(None) => bproc_rfork(node),
        Ok(Some(list)) => match libbproc::io::rfork_io(node, &list) {
            Ok(Forked::Parent { pid }) => pid,
            Ok(Forked::Child) => 0,
            Err(e) => fail(e.errno()),
        },
        Err(e) => fail(e),
    }
}

/// [`bproc_rfork`] with BProc's dump flags (ignored).
#[no_mangle]
pub extern "C" fn _bproc_rfork(node: c_int, _flags: c_int) -> c_int {
    bproc_rfork(node)
}

/// [`bproc_rfork_io`] with BProc's dump flags (ignored).
///
/// # Safety
/// As for [`bproc_rfork_io`].
#[no_mangle]
pub unsafe extern "C" fn _bproc_rfork_io(node: c_int, io: *const c_void, iolen: c_int, _flags: c_int) -> c_int {
    // SAFETY: the same contract.
    unsafe { bproc_rfork_io(node, io, iolen) }
}

/// [`bproc_vrfork`] with an io list, set up in every copy.
///
/// # Safety
/// As for [`bproc_vrfork`] and [`bproc_rfork_io`].
#[no_mangle]
pub unsafe extern "C" fn bproc_vrfork_io(
    nnodes: c_int,
    nodes: *const c_int,
    pids: *mut c_int,
    io: *const c_void,
    iolen: c_int,
) -> c_int {
    // SAFETY: as the caller promises.
    match unsafe { io_list(io, iolen) } {
        // SAFETY: the same contract.
        Ok(list) => unsafe { vrfork_with(nnodes, nodes, pids, list) },
        Err(e) => fail(e),
    }
}

/// [`bproc_vrfork`] with BProc's dump flags (ignored).
///
/// # Safety
/// As for [`bproc_vrfork`].
#[no_mangle]
pub unsafe extern "C" fn _bproc_vrfork(nnodes: c_int, nodes: *const c_int, pids: *mut c_int, _flags: c_int) -> c_int {
    // SAFETY: the same contract.
    unsafe { bproc_vrfork(nnodes, nodes, pids) }
}

/// [`bproc_vrfork_io`] with BProc's dump flags (ignored).
///
/// # Safety
/// As for [`bproc_vrfork_io`].
#[no_mangle]
pub unsafe extern "C" fn _bproc_vrfork_io(
    nnodes: c_int,
    nodes: *const c_int,
    pids: *mut c_int,
    io: *const c_void,
    iolen: c_int,
    _flags: c_int,
) -> c_int {
    // SAFETY: the same contract.
    unsafe { bproc_vrfork_io(nnodes, nodes, pids, io, iolen) }
}

/// [`bproc_execmove`] with an io list: the caller moves to the node (a
/// checkpoint), sets the list up there and execs `cmd`.
///
/// # Safety
/// As for [`bproc_execmove`] and [`bproc_rfork_io`].
#[no_mangle]
pub unsafe extern "C" fn bproc_execmove_io(
    node: c_int,
    io: *const c_void,
    iolen: c_int,
    cmd: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: as the caller promises.
    let list = match unsafe { io_list(io, iolen) } {
        // SAFETY: the same contract.
        Ok(None) => return unsafe { bproc_execmove(node, cmd, argv, envp) },
        Ok(Some(list)) => list,
        Err(e) => return fail(e),
    };
    if cmd.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: as the caller promises.
    let (cmd, argv, envp) = unsafe { (CStr::from_ptr(cmd).to_owned(), strings(argv), strings(envp)) };
    fail(libbproc::io::execmove_io(node, &list, &cmd, &argv, &envp).errno())
}

/// [`bproc_rexec`] with an io list: here the same as [`bproc_execmove_io`].
///
/// # Safety
/// As for [`bproc_execmove_io`].
#[no_mangle]
pub unsafe extern "C" fn bproc_rexec_io(
    node: c_int,
    io: *const c_void,
    iolen: c_int,
    cmd: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: the same contract.
    unsafe { bproc_execmove_io(node, io, iolen, cmd, argv, envp) }
}

/// [`bproc_vexecmove`] with an io list: a copy of the caller on each node
/// (a vrfork) sets the list up and execs `cmd` with its `BPROC_RANK`.
///
/// # Safety
/// As for [`bproc_vexecmove`] and [`bproc_rfork_io`].
#[no_mangle]
#[allow(clippy::too_many_arguments)] // BProc's signature
pub unsafe extern "C" fn bproc_vexecmove_io(
    nnodes: c_int,
    nodes: *const c_int,
    pids: *mut c_int,
    io: *const c_void,
    iolen: c_int,
    cmd: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: as the caller promises.
    let list = match unsafe { io_list(io, iolen) } {
        // SAFETY: the same contract.
        Ok(None) => return unsafe { bproc_vexecmove(nnodes, nodes, pids, cmd, argv, envp) },
        Ok(Some(list)) => list,
        Err(e) => return fail(e),
    };
    // SAFETY: as the caller promises.
    let (targets, cmd, argv, envp) = match unsafe { vexec_args(nnodes, nodes, pids, cmd, argv, envp) } {
        Ok(args) => args,
        Err(e) => return fail(e),
    };
    match libbproc::io::vexecmove_io(&targets, &list, &cmd, &argv, &envp) {
        Ok(results) => {
            // SAFETY: pids has nnodes slots.
            unsafe { put_pids(pids, &results) };
            nnodes
        }
        Err(e) => fail(e.errno()),
    }
}

// ---------------------------------------------------------------------------
// Calls that need master support not built yet, or that make no sense over
// CRIU: each returns -1 with ENOSYS.

/// Sets a node attribute: not supported yet, -1 with ENOSYS.
///
/// # Safety
/// The pointers are not read; any values are fine.
#[no_mangle]
pub extern "C" fn bproc_setnodeattr(_node: c_int, _name: *const c_char, _value: *const c_void, _size: c_int) -> c_int {
    fail(libc::ENOSYS)
}

/// Sets a node's state: not supported yet, -1 with ENOSYS.
///
/// # Safety
/// `status` is not read; any value is fine.
#[no_mangle]
pub extern "C" fn bproc_nodesetstatus(_node: c_int, _status: *const c_char) -> c_int {
    fail(libc::ENOSYS)
}

/// Changes `node`'s permissions as the master's client (root only).
fn set_perms(node: c_int, mode: Option<u32>, uid: Option<u32>, gid: Option<u32>) -> c_int {
    match block_on(async { Client::connect().await?.set_node_perms(node, mode, uid, gid).await }) {
        Ok(()) => 0,
        Err(e) => fail(e.errno()),
    }
}

/// Sets who may run processes on `node`: its execute bits (0111; others
/// give EPERM). Root only (else EPERM); BE_INVALIDNODE for no such node.
#[no_mangle]
pub extern "C" fn bproc_chmod(node: c_int, mode: c_int) -> c_int {
    set_perms(node, Some(mode as u32), None, None)
}

/// Sets `node`'s owner. Root only (else EPERM).
#[no_mangle]
pub extern "C" fn bproc_chown(node: c_int, user: c_int) -> c_int {
    set_perms(node, None, Some(user as u32), None)
}

/// Sets `node`'s group. Root only (else EPERM).
#[no_mangle]
pub extern "C" fn bproc_chgrp(node: c_int, group: c_int) -> c_int {
    set_perms(node, None, None, Some(group as u32))
}

/// Reboots a node: not supported yet, -1 with ENOSYS.
#[no_mangle]
pub extern "C" fn bproc_nodereboot(_node: c_int) -> c_int {
    fail(libc::ENOSYS)
}

/// Halts a node: not supported yet, -1 with ENOSYS.
#[no_mangle]
pub extern "C" fn bproc_nodehalt(_node: c_int) -> c_int {
    fail(libc::ENOSYS)
}

/// Powers a node off: not supported yet, -1 with ENOSYS.
#[no_mangle]
pub extern "C" fn bproc_nodepwroff(_node: c_int) -> c_int {
    fail(libc::ENOSYS)
}

/// Reboots a node without waiting: not supported yet, -1 with ENOSYS.
#[no_mangle]
pub extern "C" fn bproc_nodereboot_async(_node: c_int) -> c_int {
    fail(libc::ENOSYS)
}

/// Halts a node without waiting: not supported yet, -1 with ENOSYS.
#[no_mangle]
pub extern "C" fn bproc_nodehalt_async(_node: c_int) -> c_int {
    fail(libc::ENOSYS)
}

/// Powers a node off without waiting: not supported yet, -1 with ENOSYS.
#[no_mangle]
pub extern "C" fn bproc_nodepwroff_async(_node: c_int) -> c_int {
    fail(libc::ENOSYS)
}

/// Changes a node slave's root directory: not supported yet, -1 with ENOSYS.
///
/// # Safety
/// `path` is not read; any value is fine.
#[no_mangle]
pub extern "C" fn bproc_nodechroot(_node: c_int, _path: *const c_char) -> c_int {
    fail(libc::ENOSYS)
}

/// Makes a node's slave reconnect to another address: not supported yet,
/// -1 with ENOSYS.
///
/// # Safety
/// The pointers are not read; any values are fine.
#[no_mangle]
pub extern "C" fn bproc_nodereconnect(
    _node: c_int,
    _rem: *const libc::sockaddr,
    _remsize: c_int,
    _loc: *const libc::sockaddr,
    _locsize: c_int,
) -> c_int {
    fail(libc::ENOSYS)
}

/// An exec done by the ghost of a process on a node: not supported yet,
/// -1 with ENOSYS (BProc 4 itself always failed it).
///
/// # Safety
/// The pointers are not read; any values are fine.
#[no_mangle]
pub extern "C" fn bproc_execve(_cmd: *const c_char, _argv: *const *const c_char, _envp: *const *const c_char) -> c_int {
    fail(libc::ENOSYS)
}

/// VMADump's dump of the caller to an fd: no VMADump here (migration uses
/// CRIU), -1 with ENOSYS.
#[no_mangle]
pub extern "C" fn bproc_dump(_fd: c_int, _flags: c_int) -> c_int {
    fail(libc::ENOSYS)
}

/// VMADump's restore from an fd: no VMADump here, -1 with ENOSYS.
#[no_mangle]
pub extern "C" fn bproc_undump(_fd: c_int) -> c_int {
    fail(libc::ENOSYS)
}

/// VMADump's exec-then-dump: no VMADump here, -1 with ENOSYS.
///
/// # Safety
/// The pointers are not read; any values are fine.
#[no_mangle]
pub extern "C" fn bproc_execdump(
    _fd: c_int,
    _flags: c_int,
    _cmd: *const c_char,
    _argv: *const *const c_char,
    _envp: *const *const c_char,
) -> c_int {
    fail(libc::ENOSYS)
}

/// Clears VMADump's list of libraries: no VMADump here, -1 with ENOSYS.
#[no_mangle]
pub extern "C" fn bproc_libclear() -> c_int {
    fail(libc::ENOSYS)
}

/// Adds to VMADump's list of libraries: no VMADump here, -1 with ENOSYS.
///
/// # Safety
/// `libname` is not read; any value is fine.
#[no_mangle]
pub extern "C" fn bproc_libadd(_libname: *const c_char) -> c_int {
    fail(libc::ENOSYS)
}

/// Removes from VMADump's list of libraries: no VMADump here, -1 with ENOSYS.
///
/// # Safety
/// `libname` is not read; any value is fine.
#[no_mangle]
pub extern "C" fn bproc_libdel(_libname: *const c_char) -> c_int {
    fail(libc::ENOSYS)
}

/// VMADump's list of libraries: no VMADump here, -1 with ENOSYS (`*list`
/// is left alone).
///
/// # Safety
/// `list` is not read or written; any value is fine.
#[no_mangle]
pub extern "C" fn bproc_liblist(_list: *mut *mut c_char) -> c_int {
    fail(libc::ENOSYS)
}

/// Moves the caller to `node`: 0 on the new node (same PID, memory and open
/// files; its ghost stays on the front end), -1 and errno on failure (the
/// caller goes on where it was). Moving to the node it is on succeeds.
#[no_mangle]
pub extern "C" fn bproc_move(node: c_int) -> c_int {
    match migrate::move_to(node) {
        Ok(()) => 0,
        Err(e) => fail(e.errno()),
    }
}

/// [`bproc_move`] with an io list, set up where the caller arrives.
///
/// # Safety
/// As for [`bproc_rfork_io`].
#[no_mangle]
pub unsafe extern "C" fn bproc_move_io(node: c_int, io: *const c_void, iolen: c_int) -> c_int {
    // SAFETY: as the caller promises.
    match unsafe { io_list(io, iolen) } {
        Ok(None) => bproc_move(node),
        Ok(Some(list)) => match libbproc::io::move_io(node, &list) {
            Ok(()) => 0,
            Err(e) => fail(e.errno()),
        },
        Err(e) => fail(e),
    }
}

/// [`bproc_move`] with BProc's dump flags (ignored).
#[no_mangle]
pub extern "C" fn _bproc_move(node: c_int, _flags: c_int) -> c_int {
    bproc_move(node)
}

/// [`bproc_move_io`] with BProc's dump flags (ignored).
///
/// # Safety
/// As for [`bproc_rfork_io`].
#[no_mangle]
pub unsafe extern "C" fn _bproc_move_io(node: c_int, io: *const c_void, iolen: c_int, _flags: c_int) -> c_int {
    // SAFETY: the same contract.
    unsafe { bproc_move_io(node, io, iolen) }
}
