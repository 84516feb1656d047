//! Compiles the .proto files with protox (pure Rust, no protoc needed) and
//! generates prost messages plus tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = ["proto/bproc/v1/common.proto", "proto/bproc/v1/slave.proto", "proto/bproc/v1/client.proto"];
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".bproc.v1.StdioData.data")
        .bytes(".bproc.v1.ImageChunk.data")
        .compile_fds(fds)?;
    Ok(())
}
