//! Generates the schema's stored form from `proto/` with prost. Needs `protoc`: `cargo xtask`
//! installs it when missing (Debian package `protobuf-compiler`), or set `PROTOC`.

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    prost_build::Config::new()
        .btree_map(["."])
        .compile_protos(&["proto/schema.proto"], &["proto"])
}
