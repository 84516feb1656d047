//! [`ProbeError`]: everything that can go wrong loading the probes or reading their events.

use std::{io, path::PathBuf};

/// An error of the probe loader. Messages name the step and the object that failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// tracefs is not mounted and mounting it failed.
    #[error("mount tracefs on {path}: {source}{hint}", hint = root_hint())]
    MountTracefs { path: PathBuf, source: nix::Error },
    /// A file the loader needs could not be read.
    #[error("read {path}: {source}{hint}", hint = root_hint())]
    Read { path: PathBuf, source: io::Error },
    /// A tracepoint format file lacks a field, or the field has an unexpected size.
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    /// The kernel's BTF could not be parsed or lacks a needed member.
    #[error("kernel BTF {path}: {reason}")]
    Btf { path: PathBuf, reason: String },
    /// The embedded BPF object could not be parsed or its maps created.
    #[error("load the probe object: {source}{hint}", hint = root_hint())]
    Object { source: aya::EbpfError },
    /// The probe object lacks a program or map the loader expects (a build mismatch).
    #[error("the probe object has no {what} `{name}`")]
    Missing { what: &'static str, name: &'static str },
    /// A program has a different type than expected.
    #[error("program {program}: {source}")]
    ProgramType { program: &'static str, source: aya::programs::ProgramError },
    /// The kernel refused to load a program (verifier, permissions).
    #[error("load {program}: {reason}{hint}", reason = chain(error), hint = root_hint())]
    Load { program: &'static str, error: aya::programs::ProgramError },
    /// Attaching a program to its tracepoint failed.
    #[error("attach {tracepoint}: {reason}{hint}", reason = chain(error), hint = root_hint())]
    Attach { tracepoint: &'static str, error: aya::programs::ProgramError },
    /// A map could not be opened or an operation on it failed.
    #[error("map {map}: {source}")]
    Map { map: &'static str, source: aya::maps::MapError },
    /// Waiting on the ring buffer's file descriptor failed.
    #[error("wait for probe events: {source}")]
    Poll { source: io::Error },
    /// A ring-buffer record could not be decoded (a build mismatch between probes and loader).
    #[error("bad probe event: {reason}")]
    BadEvent { reason: String },
}

/// " (run as root)" when not running as root: the usual cause of EPERM here.
fn root_hint() -> &'static str {
    if nix::unistd::geteuid().is_root() {
        ""
    } else {
        " (run as root: the probes need CAP_BPF, CAP_PERFMON and tracefs)"
    }
}

/// The whole cause chain in one line: aya's top-level messages leave out the OS error (e.g.
/// "Operation not permitted (os error 1)"), so these variants print it themselves and keep no source.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    let mut chain = vec![cur.to_string()];
    while let Some(next) = cur.source() {
        chain.push(next.to_string());
        cur = next;
    }
    chain.dedup();
    chain.join(": ")
}
