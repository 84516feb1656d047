//! The ghost program is linked as a fixed-address (non-PIE) executable: a
//! position-independent one has thousands of pointers relocated at start,
//! which dirties ~100 KB of private pages in every ghost; fixed, those pages
//! stay clean and are shared by all ghosts.

fn main() {
    println!("cargo:rustc-link-arg-bin=bpghost=-no-pie");
}
