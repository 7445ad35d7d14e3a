//! Virtual objects and their durable state, end to end: the `Counter` of the conformance
//! contract, in each way the state reaches the SDK — eagerly in the start message, lazily
//! (eager state disabled, or the object's state over the eager limit), and with an attempt
//! that suspends at every wait.
//!
//! Still to come with the rest of issue 4: one-at-a-time execution per key (the inbox),
//! `ListObject`/`MapObject`, timers, and the restart scenarios.

use reprise_e2e::{NodeSpec, ServerProcess, TestServices};
use serde_json::{Value, json};

const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");

/// The ways state can reach the SDK.
const MODES: [(&str, &[(&str, &str)]); 4] = [
    ("eager state", &[]),
    (
        "state over the eager limit",
        &[("REPRISE_WORKER__INVOKER__EAGER_STATE_SIZE_LIMIT", "4")],
    ),
    (
        "lazy state",
        &[("REPRISE_WORKER__INVOKER__DISABLE_EAGER_STATE", "true")],
    ),
    (
        "always suspending",
        &[("REPRISE_WORKER__INVOKER__INACTIVITY_TIMEOUT", "0s")],
    ),
];

struct Setup {
    _tmp: tempfile::TempDir,
    _node: ServerProcess,
    _services: TestServices,
    ingress: String,
    client: reqwest::Client,
}

async fn start(env: &[(&str, &str)]) -> anyhow::Result<Setup> {
    let tmp = tempfile::tempdir()?;
    let mut spec = NodeSpec::new(tmp.path(), "n1");
    for (key, value) in env {
        spec = spec.env(key, value);
    }
    let mut node = spec.spawn()?;
    let addresses = node.wait_ready().await?.clone();
    let services = TestServices::spawn(SERVICES_BIN, "default").await?;
    let client = reqwest::Client::new();
    let admin = addresses.admin.expect("the admin role runs by default");
    let registered = client
        .post(format!("http://{admin}/deployments"))
        .json(&json!({"uri": services.uri()}))
        .send()
        .await?;
    anyhow::ensure!(registered.status() == 201, "{}", registered.text().await?);
    let ingress = addresses.ingress.expect("the ingress role runs by default");
    Ok(Setup {
        _tmp: tmp,
        _node: node,
        _services: services,
        ingress: format!("http://{ingress}"),
        client,
    })
}

impl Setup {
    async fn call(&self, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        let mut request = self.client.post(format!("{}{path}", self.ingress));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }
}

#[tokio::test]
async fn counter_state_is_kept_per_key_in_every_mode() -> anyhow::Result<()> {
    for (mode, env) in MODES {
        let setup = start(env).await?;
        let (status, body) = setup.call("/Counter/ann/add", Some(json!(1))).await?;
        assert_eq!(status, 200, "{mode}: {body}");
        assert_eq!(body, json!({"oldValue": 0, "newValue": 1}), "{mode}");
        let (_, body) = setup.call("/Counter/ann/add", Some(json!(2))).await?;
        assert_eq!(body, json!({"oldValue": 1, "newValue": 3}), "{mode}");

        // Another key is another object.
        let (_, body) = setup.call("/Counter/bob/get", None).await?;
        assert_eq!(body, json!(0), "{mode}");
        let (_, body) = setup.call("/Counter/ann/get", None).await?;
        assert_eq!(body, json!(3), "{mode}");

        let (status, _) = setup.call("/Counter/ann/reset", None).await?;
        assert_eq!(status, 200, "{mode}");
        let (_, body) = setup.call("/Counter/ann/get", None).await?;
        assert_eq!(body, json!(0), "{mode}");
    }
    Ok(())
}
