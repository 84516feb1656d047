//! The master's few direct calls into libc.

/// Gives freed heap memory back to the kernel. After a burst of clients
/// (a thousand connections at once) the heap would otherwise stay at its
/// peak for the life of the master.
pub fn trim_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe { libc::malloc_trim(0) };
}
