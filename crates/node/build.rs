//! Generates the stored form of the node table from `proto/` with prost. Needs `protoc`: `cargo
//! xtask` installs it when missing (Debian package `protobuf-compiler`), or set `PROTOC`.

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    prost_build::Config::new().compile_protos(&["proto/cluster.proto"], &["proto"])
}
