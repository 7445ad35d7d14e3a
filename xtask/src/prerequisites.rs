//! What the build needs beyond cargo, found or installed. The rocksdb crate generates its
//! bindings with bindgen, which needs libclang; tonic/prost code generation needs `protoc`.
//! On Debian and Ubuntu both come from apt (`libclang-dev`, `protobuf-compiler`); elsewhere the
//! error says what to install.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

struct Requirement {
    what: &'static str,
    apt_package: &'static str,
    present: fn() -> bool,
}

const REQUIREMENTS: [Requirement; 2] = [
    Requirement {
        what: "libclang (for the rocksdb bindings)",
        apt_package: "libclang-dev",
        present: has_libclang,
    },
    Requirement {
        what: "protoc (for gRPC code generation)",
        apt_package: "protobuf-compiler",
        present: has_protoc,
    },
];

pub fn ensure() -> anyhow::Result<()> {
    let missing: Vec<&Requirement> = REQUIREMENTS.iter().filter(|r| !(r.present)()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|r| r.what).collect();
    eprintln!("xtask: missing build prerequisites: {}", names.join(", "));
    let packages: Vec<&str> = missing.iter().map(|r| r.apt_package).collect();
    if !on_path("apt-get") {
        bail!(
            "install {} and run again (Debian/Ubuntu packages: {})",
            names.join(" and "),
            packages.join(" ")
        );
    }
    apt_install(&packages)?;
    let still: Vec<&str> = REQUIREMENTS
        .iter()
        .filter(|r| !(r.present)())
        .map(|r| r.what)
        .collect();
    if !still.is_empty() {
        bail!(
            "installed {} but still cannot find {}",
            packages.join(" "),
            still.join(", ")
        );
    }
    Ok(())
}

fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false);
    let prefix: &[&str] = if root {
        &[]
    } else if on_path("sudo") {
        &["sudo", "-n"]
    } else {
        bail!(
            "installing {} needs root: run `sudo apt-get install -y {}`",
            packages.join(" "),
            packages.join(" ")
        );
    };
    let apt = |args: &[&str]| -> anyhow::Result<()> {
        let mut argv: Vec<&str> = prefix.to_vec();
        argv.push("apt-get");
        argv.extend_from_slice(args);
        eprintln!("xtask: {}", argv.join(" "));
        let status = Command::new(argv[0])
            .args(&argv[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("running {}", argv.join(" ")))?;
        if status.success() {
            Ok(())
        } else {
            bail!("`{}` failed ({status})", argv.join(" "))
        }
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend_from_slice(packages);
    apt(&install)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn has_protoc() -> bool {
    std::env::var_os("PROTOC").is_some_and(|p| Path::new(&p).is_file()) || on_path("protoc")
}

/// Looks where clang-sys looks: `LIBCLANG_PATH`, then the usual library directories.
fn has_libclang() -> bool {
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("LIBCLANG_PATH") {
        dirs.push(path.into());
    }
    for root in ["/usr/lib", "/usr/lib64", "/usr/local/lib"] {
        dirs.push(root.into());
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("llvm") {
                    dirs.push(entry.path().join("lib"));
                } else if name.ends_with("-linux-gnu") {
                    dirs.push(entry.path());
                }
            }
        }
    }
    dirs.iter().any(|dir| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name.starts_with("libclang") && name.contains(".so")
            })
        })
    })
}
