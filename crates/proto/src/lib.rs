//! # bproc-rs wire protocol
//!
//! The protobuf messages and gRPC services between the master and its slaves
//! ([`v1::slave_link_server`], [`v1::slave_link_client`]) and between
//! clients and the master ([`v1::master_server`], [`v1::master_client`]).
//!
//! # Layout
//! - `proto/bproc/v1/*.proto`: the source of truth, compiled by `build.rs`.
//! - [`v1`]: the generated code.
//! - [`PROTOCOL_VERSION`], [`check_version`]: the version handshake that
//!   refuses an incompatible peer with a message naming both versions.
//! - [`frame`]: the ghosts' plain link to the master (the `Exec` messages
//!   without gRPC).

/// Generated messages and services of protocol version 1.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("bproc.v1");
}

pub mod frame;

/// The protocol version this build speaks. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// gRPC metadata key that carries a client's protocol version.
pub const VERSION_METADATA: &str = "bproc-protocol";

/// Largest message either side accepts (a stdio chunk is far smaller).
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Checks a peer's protocol version against ours; the error names both.
pub fn check_version(peer_role: &str, peer: u32) -> Result<(), String> {
    if peer == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(format!(
            "protocol version mismatch: {peer_role} speaks version {peer}, master speaks version {PROTOCOL_VERSION}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_mismatch_names_both_versions() {
        assert!(check_version("slave", PROTOCOL_VERSION).is_ok());
        let err = check_version("client", PROTOCOL_VERSION + 7).expect_err("mismatch");
        assert!(err.contains(&format!("version {}", PROTOCOL_VERSION + 7)));
        assert!(err.contains(&format!("master speaks version {PROTOCOL_VERSION}")));
    }
}
