//! What the build needs beyond cargo, found or installed. The rocksdb crate generates its
//! bindings with bindgen, which needs libclang; tonic/prost code generation needs `protoc`.
//! On Debian and Ubuntu both come from apt (`libclang-dev`, `protobuf-compiler`); elsewhere the
//! error says what to install.

use std::path::{Path, PathBuf};
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
    let explicit = std::env::var_os("LIBCLANG_PATH").map(PathBuf::from);
    let roots = ["/usr/lib", "/usr/lib64", "/usr/local/lib"].map(PathBuf::from);
    find_libclang(explicit.as_deref(), &roots).is_some()
}

/// The first library clang-sys would load, searching `explicit` (`LIBCLANG_PATH`) and then each
/// root, its `llvm*/lib` directories and its multiarch (`*-linux-gnu`) directories.
fn find_libclang(explicit: Option<&Path>, roots: &[PathBuf]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = explicit.map(Path::to_owned).into_iter().collect();
    for root in roots {
        dirs.push(root.clone());
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        let mut children: Vec<_> = entries.flatten().collect();
        children.sort_by_key(|entry| entry.file_name());
        for entry in children {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("llvm") {
                dirs.push(entry.path().join("lib"));
            } else if name.ends_with("-linux-gnu") {
                dirs.push(entry.path());
            }
        }
    }
    dirs.iter().find_map(|dir| {
        let entries = std::fs::read_dir(dir).ok()?;
        entries
            .flatten()
            .find(|entry| is_libclang_name(&entry.file_name().to_string_lossy()))
            .map(|entry| entry.path())
    })
}

/// The names clang-sys accepts on Linux: `libclang.so`, `libclang.so.<version>`,
/// `libclang-<version>.so` and `libclang-<version>.so.<n>`. Not `libclang-cpp.so.*`, the C++
/// library, which a machine can have without libclang (Debian's `libclang-cpp14`); nor static
/// archives.
fn is_libclang_name(name: &str) -> bool {
    let is_version = |s: &str| {
        !s.is_empty()
            && s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_digit() || c == '.')
    };
    let so_suffix = |rest: &str| rest.is_empty() || rest.strip_prefix('.').is_some_and(is_version);
    if let Some(rest) = name.strip_prefix("libclang.so") {
        return so_suffix(rest);
    }
    let Some(rest) = name.strip_prefix("libclang-") else {
        return false;
    };
    let Some((version, after)) = rest.split_once(".so") else {
        return false;
    };
    is_version(version) && so_suffix(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_libclang_itself() {
        for name in [
            "libclang.so",
            "libclang.so.1",
            "libclang.so.14.0.6",
            "libclang-14.so",
            "libclang-14.so.1",
            "libclang-3.9.so",
            "libclang-14.0.6.so.14",
        ] {
            assert!(is_libclang_name(name), "{name} is libclang");
        }
        for name in [
            "libclang-cpp.so.14",
            "libclang-cpp.so",
            "libclang-cpp14.so",
            "libclang.a",
            "libclang-14.a",
            "libclangBasic.a",
            "libclang.so.x",
            "libclang-.so",
            "libclang-14.so.",
            "libclang_rt.asan-x86_64.so",
        ] {
            assert!(!is_libclang_name(name), "{name} is not libclang");
        }
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, b"").expect("write");
    }

    #[test]
    fn a_tree_with_only_libclang_cpp_has_no_libclang() {
        // The layout of a fresh Debian 12 that has `libclang-cpp14` but not `libclang-dev`.
        let root = std::env::temp_dir().join(format!("xtask-libclang-{}", std::process::id()));
        let usr_lib = root.join("usr/lib");
        touch(&usr_lib.join("x86_64-linux-gnu/libclang-cpp.so.14"));
        touch(&usr_lib.join("llvm-14/lib/libclang-cpp.so.14"));
        touch(&usr_lib.join("llvm-14/lib/libclangBasic.a"));
        let roots = [usr_lib.clone()];
        assert_eq!(find_libclang(None, &roots), None);

        // `apt-get install libclang-dev` adds the versioned library and its symlink.
        let lib = usr_lib.join("x86_64-linux-gnu/libclang-14.so.1");
        touch(&lib);
        assert_eq!(find_libclang(None, &roots), Some(lib.clone()));

        // LIBCLANG_PATH is searched first.
        let explicit = root.join("opt/clang");
        touch(&explicit.join("libclang.so"));
        assert_eq!(
            find_libclang(Some(&explicit), &roots),
            Some(explicit.join("libclang.so"))
        );
        std::fs::remove_dir_all(&root).expect("clean up");
    }
}
