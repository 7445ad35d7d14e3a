//! Generates the node channel's messages and gRPC services from `proto/` with tonic-prost-build.
//! Needs `protoc`: `cargo xtask` installs it when missing (Debian package `protobuf-compiler`),
//! or set `PROTOC`.

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&["proto/net.proto"], &["proto"])
}
