//! Builds the BPF object from `crates/ebpf-probes-ebpf` with aya_build (nested cargo, the pinned
//! nightly from `toolchain.txt`, `-Z build-std=core`, linked by bpf-linker) into `OUT_DIR`, where
//! `src/probes.rs` embeds it with `include_bytes_aligned!`. Never a checked-in object file.

use std::{env, fs, path::PathBuf};

use anyhow::{anyhow, bail, Context as _};

const PROBE_PACKAGE: &str = "ebpf-probes-ebpf";

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let crates = manifest_dir.parent().context("crates dir")?.to_path_buf();
    let probe_dir = crates.join(PROBE_PACKAGE);
    let common_dir = crates.join("ebpf-probes-common");
    let toolchain_file = probe_dir.join("toolchain.txt");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    println!("cargo:rerun-if-changed={}", toolchain_file.display());

    let toolchain =
        fs::read_to_string(&toolchain_file).with_context(|| format!("read {}", toolchain_file.display()))?;
    let toolchain = toolchain.trim();

    // bpf-linker is an undeclared build dependency: name it clearly when it is missing, and rebuild
    // when it is replaced.
    let linker = env::var_os("PATH")
        .map(|path| env::split_paths(&path).map(|dir| dir.join("bpf-linker")).find(|p| p.is_file()))
        .unwrap_or_default();
    match linker {
        Some(linker) => println!("cargo:rerun-if-changed={}", linker.display()),
        None => bail!(
            "bpf-linker not found in PATH: it links the eBPF probes. `bash x.sh setup` installs it, the \
             pinned toolchain {toolchain} with rust-src, and llvm-22-dev"
        ),
    }

    let root_dir = probe_dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path {}", probe_dir.display()))?;
    let package = aya_build::Package { name: PROBE_PACKAGE, root_dir, ..Default::default() };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom(toolchain)).map_err(|e| {
        e.context(format!(
            "building the eBPF probes with toolchain {toolchain} failed; `bash x.sh setup` installs it \
             (with rust-src), bpf-linker and llvm-22-dev"
        ))
    })
}
