//! One node with the test services registered on it: what most scenarios start from. The
//! services run with `--dir <records>` so handlers that leave markers (the `Recorder`, the
//! `Sleeper`) leave them where the test can see them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};

use crate::{NodeSpec, ServerProcess, TestServices, eventually};

/// Quick retries, so that an attempt cut short by a killed service or server is soon tried
/// again.
pub const QUICK_RETRIES: [(&str, &str); 2] = [
    (
        "REPRISE_WORKER__INVOKER__RETRY_POLICY__INITIAL_INTERVAL",
        "20ms",
    ),
    (
        "REPRISE_WORKER__INVOKER__RETRY_POLICY__MAX_INTERVAL",
        "200ms",
    ),
];

/// The modes the scenarios run in besides the default one: every wait a suspension (the
/// attempt's input closes at once, so every await replays), and state read lazily.
pub const ALWAYS_SUSPENDING: (&str, &str) = ("REPRISE_WORKER__INVOKER__INACTIVITY_TIMEOUT", "0s");
pub const LAZY_STATE: (&str, &str) = ("REPRISE_WORKER__INVOKER__DISABLE_EAGER_STATE", "true");

/// How long a stopped server may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Setup {
    pub tmp: tempfile::TempDir,
    pub spec: NodeSpec,
    pub node: ServerProcess,
    pub services: TestServices,
    pub ingress: String,
    pub client: reqwest::Client,
}

impl Setup {
    /// Starts `services_bin` and a node with `env`, and registers the services.
    pub async fn start(services_bin: &str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let mut spec = NodeSpec::new(tmp.path(), "n1");
        for (key, value) in env {
            spec = spec.env(key, value);
        }
        let records = tmp.path().join("records");
        std::fs::create_dir_all(&records)?;
        let services =
            TestServices::spawn_with(services_bin, &["--dir", &records.to_string_lossy()]).await?;
        let mut node = spec.spawn()?;
        let addresses = node.wait_ready().await?.clone();
        let admin = addresses.admin.context("the admin role runs by default")?;
        let ingress = addresses
            .ingress
            .context("the ingress role runs by default")?;
        let client = reqwest::Client::new();
        // As `curl -d` sends it: JSON under a form content type.
        let response = client
            .post(format!("http://{admin}/deployments"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(json!({"uri": services.uri()}).to_string())
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 201,
            "registration failed: {}",
            response.text().await?
        );
        Ok(Self {
            tmp,
            spec,
            node,
            services,
            ingress: format!("http://{ingress}"),
            client,
        })
    }

    /// The admin API's address.
    pub fn admin(&self) -> anyhow::Result<std::net::SocketAddr> {
        self.node
            .addresses()?
            .admin
            .context("the admin role runs by default")
    }

    /// Starts `services_bin` and a node with quick retries and the settings of `mode` (one of
    /// the conformance modes, or none), and registers the services.
    pub async fn in_mode(services_bin: &str, mode: &[(&str, &str)]) -> anyhow::Result<Self> {
        let env: Vec<(&str, &str)> = QUICK_RETRIES.iter().chain(mode).copied().collect();
        Self::start(services_bin, &env).await
    }

    /// Where the services leave their markers.
    pub fn records(&self) -> PathBuf {
        self.tmp.path().join("records")
    }

    /// Opens the gate the `Recorder`'s handlers wait for.
    pub fn open_gate(&self) -> anyhow::Result<()> {
        std::fs::write(self.records().join("gate"), b"")?;
        Ok(())
    }

    /// POSTs a JSON body (none for `Value::Null`: the handler takes no input) to an ingress
    /// path; returns status, headers and body.
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, HeaderMap, Vec<u8>)> {
        let mut request = self.client.post(format!("{}{path}", self.ingress));
        if !body.is_null() {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Ok((status, headers, response.bytes().await?.to_vec()))
    }

    /// Calls an ingress path with a JSON body (none for `Value::Null`); returns the status and
    /// the answer, as JSON when it is JSON and as a string otherwise.
    pub async fn call(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let (status, _, body) = self.post(path, body).await?;
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        Ok((status, value))
    }

    /// Calls and requires a 200; returns the answer.
    pub async fn ok(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let (status, answer) = self.call(path, body).await?;
        anyhow::ensure!(status == 200, "{path} answered {status}: {answer}");
        Ok(answer)
    }

    /// The value of `Counter/<key>`.
    pub async fn count(&self, key: &str) -> anyhow::Result<i64> {
        let answer = self
            .ok(&format!("/Counter/{key}/get"), &Value::Null)
            .await?;
        answer
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("Counter.get answered {answer}"))
    }

    /// Sends (`<path>/send`) and returns the invocation id.
    pub async fn send(&self, path: &str, body: &Value) -> anyhow::Result<String> {
        let (status, answer) = self.call(&format!("{path}/send"), body).await?;
        anyhow::ensure!(status == 202, "send answered {status}: {answer}");
        Ok(answer["invocationId"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default())
    }

    /// Stops the server with `signal` (SIGTERM: gracefully; SIGKILL: a crash) and waits until
    /// it is gone.
    pub async fn stop_server(&mut self, signal: Signal) -> anyhow::Result<()> {
        self.node.signal(signal)?;
        self.node.wait_exit(EXIT_TIMEOUT).await?;
        Ok(())
    }

    /// Starts the server again on the same directory and waits until it is ready.
    pub async fn restart_server(&mut self) -> anyhow::Result<()> {
        self.node = self.spec.spawn()?;
        let ingress = self
            .node
            .wait_ready()
            .await?
            .ingress
            .context("the ingress role runs by default")?;
        self.ingress = format!("http://{ingress}");
        Ok(())
    }

    /// Waits until a handler has left the marker file `name` in the records directory.
    pub async fn wait_for_marker(&self, name: &str) -> anyhow::Result<()> {
        let path = self.records().join(name);
        eventually(&format!("marker {name}"), Duration::from_secs(30), || {
            let exists = path.exists();
            async move { exists }
        })
        .await
    }
}
