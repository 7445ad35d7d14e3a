//! `cargo xtask`: the project's build system. Every command first makes sure the machine has
//! what the build needs beyond cargo (libclang for the rocksdb bindings, protoc for tonic/prost
//! code generation) and installs it with the system package manager when it is missing.
//!
//! - `cargo xtask run [-- <server flags>]`: build and start `reprise-server` (release) with its
//!   embedded defaults.
//! - `cargo xtask test`: every test, the end-to-end ones included.
//! - `cargo xtask ci`: `cargo fmt --check`, clippy with warnings denied, then `test`.
//! - `cargo xtask bench [-- <bench flags>]`: release builds of the server and the SDK test
//!   services, then `reprise-bench` (requests/s and latency of request-response calls — a
//!   stateless echo, `Counter.add` over 1 000 keys and on one hot key — at concurrency 1, 16
//!   and 128), then a history of a million completed invocations and a hundred thousand
//!   sleepers, each followed by a restart, and echo calls of 31 MiB (time and peak memory);
//!   writes `target/bench/results.json`.
//! - `cargo xtask prerequisites`: only the install step.

mod prerequisites;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  run [-- <flags>]   build and start reprise-server (release) with its embedded defaults
  test               run every test, end-to-end ones included
  ci                 cargo fmt --check, cargo clippy -D warnings, then test
  bench [-- <flags>] measure request-response calls and a node's history (release build);
                     flags: --duration SECS, --warmup SECS, --concurrency 1,16,128,
                     --workloads echo,counter-keys,counter-hot|none, --history N (1000000),
                     --sleepers N (100000), --large-mib N (31), --out FILE
  prerequisites      install what the build needs beyond cargo (libclang, protoc)";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.skip_while(|a| a == "--").collect();
    match command.as_str() {
        "run" => run(&rest),
        "test" => test(),
        "ci" => ci(),
        "bench" => bench(&rest),
        "prerequisites" => prerequisites::ensure(),
        "" | "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

fn run(server_args: &[String]) -> anyhow::Result<()> {
    prerequisites::ensure()?;
    cargo(
        &["run", "--release", "-p", "reprise-server", "--"],
        server_args,
    )
}

fn test() -> anyhow::Result<()> {
    prerequisites::ensure()?;
    // The end-to-end tests start the real binary: build it first so they never run a stale one.
    // `--workspace`, like the test run: the same feature set, so nothing is built twice.
    cargo(&["build", "--workspace", "--bins"], &[])?;
    let server = target_dir().join("debug").join("reprise-server");
    let status = cargo_command(&["test", "--workspace"], &[])
        .env("E2E_SERVER_BIN", &server)
        .status()
        .context("running cargo test")?;
    check("cargo test --workspace", status)
}

fn ci() -> anyhow::Result<()> {
    prerequisites::ensure()?;
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    test()
}

fn bench(bench_args: &[String]) -> anyhow::Result<()> {
    prerequisites::ensure()?;
    cargo(
        &[
            "build",
            "--release",
            "-p",
            "reprise-server",
            "-p",
            "reprise-e2e",
            "--bins",
        ],
        &[],
    )?;
    let release = target_dir().join("release");
    let mut args = vec![
        "--services".to_owned(),
        release
            .join("reprise-test-services")
            .to_string_lossy()
            .into_owned(),
    ];
    if !bench_args.iter().any(|arg| arg == "--out") {
        let out = target_dir().join("bench").join("results.json");
        args.extend(["--out".to_owned(), out.to_string_lossy().into_owned()]);
    }
    args.extend(bench_args.iter().cloned());
    let status = Command::new(release.join("reprise-bench"))
        .args(&args)
        .env("E2E_SERVER_BIN", release.join("reprise-server"))
        .status()
        .context("running reprise-bench")?;
    check("reprise-bench", status)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn cargo_command(args: &[&str], extra: &[String]) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root()).args(args).args(extra);
    command
}

fn cargo(args: &[&str], extra: &[String]) -> anyhow::Result<()> {
    let what = format!("cargo {}", args.join(" "));
    eprintln!("xtask: {what}");
    let status = cargo_command(args, extra)
        .status()
        .with_context(|| format!("running {what}"))?;
    check(&what, status)
}

fn check(what: &str, status: std::process::ExitStatus) -> anyhow::Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("`{what}` failed ({status})")
    }
}
