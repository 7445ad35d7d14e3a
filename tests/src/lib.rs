//! End-to-end test harness: starts real `reprise-server` processes on ports the OS picks, waits
//! for them on conditions (the addresses file, then health), never on fixed sleeps, and stops,
//! signals or kills them like an operator would.
//!
//! The server binary is taken from `E2E_SERVER_BIN` when set (`cargo xtask test` builds it and
//! sets it), otherwise from the target directory beside the test executable.

mod setup;

pub use setup::{ALWAYS_SUSPENDING, LAZY_STATE, QUICK_RETRIES, Setup};

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep};

/// How long a node may take to become ready before a test fails.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(20);

/// The `reprise-server` binary under test.
pub fn server_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("E2E_SERVER_BIN") {
        return Ok(PathBuf::from(path));
    }
    // <target>/<profile>/deps/<test-exe> → <target>/<profile>/reprise-server
    let exe = std::env::current_exe().context("locating the test executable")?;
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile_dir| profile_dir.join("reprise-server"))
        .context("test executable has no profile directory")?;
    if candidate.exists() {
        Ok(candidate)
    } else {
        bail!(
            "{} does not exist: run the tests with `cargo xtask test`, or build the server first \
             (`cargo build -p reprise-server`)",
            candidate.display()
        )
    }
}

/// The `reprisectl` binary: beside the server binary (`cargo xtask test` builds both).
pub fn ctl_binary() -> anyhow::Result<PathBuf> {
    let server = server_binary()?;
    let ctl = server.with_file_name("reprisectl");
    anyhow::ensure!(
        ctl.exists(),
        "{} does not exist: run the tests with `cargo xtask test`, or build it first \
         (`cargo build --workspace --bins`)",
        ctl.display()
    );
    Ok(ctl)
}

/// What a `reprisectl` run printed, and how it exited.
#[derive(Debug)]
pub struct CtlOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    /// The output as JSON (for `--json` runs).
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("reprisectl printed no JSON: {self:?}"))
    }
}

/// Runs `reprisectl` against the node port at `address` with `args`.
pub async fn ctl(address: &str, args: &[&str]) -> anyhow::Result<CtlOutput> {
    let mut command = Command::new(ctl_binary()?);
    command
        .args(["--address", address])
        .args(args)
        .env_remove("REPRISECTL_ADDRESS")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .context("reprisectl did not finish within 60 s")??;
    Ok(CtlOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// The addresses file a running node writes into its directory.
#[derive(Debug, Clone, Deserialize)]
pub struct Addresses {
    pub node: std::net::SocketAddr,
    pub ingress: Option<std::net::SocketAddr>,
    pub admin: Option<std::net::SocketAddr>,
}

/// How to start one node: its base directory, name, and any extra environment and flags.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub base_dir: PathBuf,
    pub node_name: String,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl NodeSpec {
    /// A node named `name` under `base_dir` with every listener on 127.0.0.1, port 0.
    pub fn new(base_dir: &Path, name: &str) -> Self {
        Self {
            base_dir: base_dir.to_owned(),
            node_name: name.to_owned(),
            env: vec![
                ("REPRISE_BIND_ADDRESS".into(), "127.0.0.1:0".into()),
                ("REPRISE_INGRESS__BIND_ADDRESS".into(), "127.0.0.1:0".into()),
                ("REPRISE_ADMIN__BIND_ADDRESS".into(), "127.0.0.1:0".into()),
                ("REPRISE_LOG_FILTER".into(), "info,openraft=warn".into()),
            ],
            args: Vec::new(),
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The value the spec gives the environment variable `key`.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    pub fn node_dir(&self) -> PathBuf {
        self.base_dir.join(&self.node_name)
    }

    fn log_path(&self, run: u32) -> PathBuf {
        self.base_dir.join(format!("{}.{run}.log", self.node_name))
    }

    /// Starts the process. Logs (stdout and stderr) go to `<base-dir>/<name>.<n>.log`.
    pub fn spawn(&self) -> anyhow::Result<ServerProcess> {
        std::fs::create_dir_all(&self.base_dir)?;
        let run = (0..)
            .find(|n| !self.log_path(*n).exists())
            .context("no free log file name")?;
        let log_path = self.log_path(run);
        let log = std::fs::File::create(&log_path)?;
        // A stale addresses file from a killed run must not be mistaken for this run's.
        let _ = std::fs::remove_file(self.node_dir().join("listening.json"));
        let mut command = Command::new(server_binary()?);
        command
            .args(["--base-dir", &self.base_dir.to_string_lossy()])
            .args(["--node-name", &self.node_name])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        clear_inherited_config(&mut command);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = command.spawn().context("spawning reprise-server")?;
        Ok(ServerProcess {
            spec: self.clone(),
            child,
            log_path,
            addresses: None,
        })
    }
}

/// A running (or exited) `reprise-server` process. Killed when dropped.
pub struct ServerProcess {
    spec: NodeSpec,
    child: Child,
    log_path: PathBuf,
    addresses: Option<Addresses>,
}

impl ServerProcess {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn addresses(&self) -> anyhow::Result<&Addresses> {
        self.addresses
            .as_ref()
            .context("the node has not reported its addresses yet: call wait_ready first")
    }

    /// Waits until the node has bound its ports and all its health endpoints answer 200. Fails
    /// at once, with the node's log, if the process exits first.
    pub async fn wait_ready(&mut self) -> anyhow::Result<&Addresses> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let file = self.spec.node_dir().join("listening.json");
        let addresses = loop {
            self.fail_if_exited()?;
            if let Ok(bytes) = std::fs::read(&file) {
                break serde_json::from_slice::<Addresses>(&bytes)
                    .with_context(|| format!("parsing {}", file.display()))?;
            }
            self.check_deadline(deadline, "to bind its ports")?;
            sleep(POLL).await;
        };
        let client = reqwest::Client::new();
        for url in health_urls(&addresses) {
            loop {
                self.fail_if_exited()?;
                if let Ok(response) = client.get(&url).send().await
                    && response.status() == reqwest::StatusCode::OK
                {
                    break;
                }
                self.check_deadline(deadline, "to become ready")?;
                sleep(POLL).await;
            }
        }
        Ok(self.addresses.insert(addresses))
    }

    /// Fetches the node port's health report.
    pub async fn node_health(&self) -> anyhow::Result<(u16, serde_json::Value)> {
        let url = format!("http://{}/health", self.addresses()?.node);
        let response = reqwest::get(&url).await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self.pid().context("the process has already exited")?;
        let pid = i32::try_from(pid).context("pid out of range")?;
        signal::kill(Pid::from_raw(pid), signal)?;
        Ok(())
    }

    /// Waits for the process to exit, failing with its log if it takes longer than `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!(
                "reprise-server did not exit within {timeout:?}; log:\n{}",
                self.logs()
            ),
        }
    }

    /// Waits until the node's log contains `needle`.
    pub async fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.logs().contains(needle) {
            if Instant::now() > deadline {
                bail!("log never contained {needle:?}; log:\n{}", self.logs());
            }
            sleep(POLL).await;
        }
        Ok(())
    }

    fn fail_if_exited(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "reprise-server exited early with {status}; log:\n{}",
                self.logs()
            );
        }
        Ok(())
    }

    fn check_deadline(&self, deadline: Instant, what: &str) -> anyhow::Result<()> {
        if Instant::now() > deadline {
            bail!(
                "reprise-server took longer than {READY_TIMEOUT:?} {what}; log:\n{}",
                self.logs()
            );
        }
        Ok(())
    }
}

fn health_urls(addresses: &Addresses) -> Vec<String> {
    let mut urls = vec![format!("http://{}/health", addresses.node)];
    if let Some(admin) = addresses.admin {
        urls.push(format!("http://{admin}/health"));
    }
    if let Some(ingress) = addresses.ingress {
        urls.push(format!("http://{ingress}/restate/health"));
    }
    urls
}

/// A running test-services process (an SDK deployment). Killed when dropped.
pub struct TestServices {
    child: Child,
    binary: String,
    args: Vec<String>,
    pub address: std::net::SocketAddr,
}

impl TestServices {
    /// Starts `binary` (pass `env!("CARGO_BIN_EXE_reprise-test-services")`) with the given
    /// variant and waits for the address it listens on.
    pub async fn spawn(binary: &str, variant: &str) -> anyhow::Result<Self> {
        Self::spawn_with(binary, &["--variant", variant]).await
    }

    /// Starts `binary` with `args` (see the binary's usage) and waits for its address.
    pub async fn spawn_with(binary: &str, args: &[&str]) -> anyhow::Result<Self> {
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let (child, address) = Self::start(binary, &args).await?;
        Ok(Self {
            child,
            binary: binary.to_owned(),
            args,
            address,
        })
    }

    async fn start(binary: &str, args: &[String]) -> anyhow::Result<(Child, std::net::SocketAddr)> {
        use tokio::io::AsyncBufReadExt;
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning the test services")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(READY_TIMEOUT, lines.next_line())
            .await
            .context("the test services did not report their address")??
            .context("the test services exited before reporting their address")?;
        let address = first
            .strip_prefix("listening on ")
            .with_context(|| format!("unexpected first line {first:?}"))?
            .parse()?;
        Ok((child, address))
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.address)
    }

    /// SIGKILLs the process and waits until it is gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("killing the test services")
    }

    /// Starts the process again on the same address, as a restarted deployment would be.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if !self.args.iter().any(|arg| arg == "--listen") {
            self.args
                .extend(["--listen".to_owned(), self.address.to_string()]);
        }
        let (child, address) = Self::start(&self.binary, &self.args).await?;
        anyhow::ensure!(
            address == self.address,
            "restarted on {address}, not {}",
            self.address
        );
        self.child = child;
        Ok(())
    }
}

/// Polls `check` until it returns true, failing with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        if Instant::now() > deadline {
            bail!("{what} did not happen within {timeout:?}");
        }
        sleep(POLL).await;
    }
    Ok(())
}

/// The server refuses unknown `REPRISE_*` variables, and the test's own environment must not
/// configure it: only what a test sets explicitly reaches the server.
fn clear_inherited_config(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("REPRISE_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
}

/// Runs `reprise-server` with the given flags and environment to completion (for commands
/// such as `--dump-config`, or starts that must fail) and returns its exit status and output.
pub async fn run_to_exit(
    args: &[&str],
    env: &[(&str, &str)],
    cwd: &Path,
) -> anyhow::Result<(ExitStatus, String, String)> {
    let mut command = Command::new(server_binary()?);
    command
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    clear_inherited_config(&mut command);
    command.envs(env.iter().copied());
    let output = tokio::time::timeout(READY_TIMEOUT, command.output())
        .await
        .context("reprise-server did not exit")??;
    Ok((
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}
