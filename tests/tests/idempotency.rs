//! Idempotency keys, attach and output, and workflows, end to end: a request repeated with its
//! idempotency key is the same invocation and gets the same answer; attach and output by id, by
//! idempotent request and by workflow; a workflow runs once per key, its shared handlers run
//! alongside and after it, its durable promise completes once — in the default mode, with
//! every wait a suspension and with lazy state. And a thousand `add(1)` calls with idempotency
//! keys, retried by the client through a SIGKILL of the server until each got a 200, count
//! exactly a thousand.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use reprise_e2e::{ALWAYS_SUSPENDING, LAZY_STATE, Setup, eventually};
use serde_json::{Value, json};
use tokio::sync::RwLock;

const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");

async fn start(mode: &[(&str, &str)]) -> anyhow::Result<Setup> {
    Setup::in_mode(SERVICES_BIN, mode).await
}

#[tokio::test]
async fn default_mode() -> anyhow::Result<()> {
    every_scenario(&start(&[]).await?).await
}

#[tokio::test]
async fn lazy_state() -> anyhow::Result<()> {
    every_scenario(&start(&[LAZY_STATE]).await?).await
}

#[tokio::test]
async fn always_suspending() -> anyhow::Result<()> {
    every_scenario(&start(&[ALWAYS_SUSPENDING]).await?).await
}

async fn every_scenario(setup: &Setup) -> anyhow::Result<()> {
    a_repeated_request_is_one_invocation(setup).await?;
    idempotent_calls_from_a_handler_run_once(setup).await?;
    a_workflow_runs_once_and_its_promise_completes_once(setup).await?;
    bad_requests_are_refused(setup).await?;
    Ok(())
}

/// POSTs with an idempotency key; returns status, `x-restate-id` and body.
async fn post_with_key(
    setup: &Setup,
    path: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<(u16, String, Value)> {
    let response = setup
        .client
        .post(format!("{}{path}", setup.ingress))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-restate-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, id, body))
}

/// GETs an ingress path; returns status and body (JSON, or a string).
async fn get(setup: &Setup, path: &str) -> anyhow::Result<(u16, Value)> {
    let response = setup
        .client
        .get(format!("{}{path}", setup.ingress))
        .send()
        .await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, body))
}

async fn a_repeated_request_is_one_invocation(setup: &Setup) -> anyhow::Result<()> {
    let first = post_with_key(setup, "/Counter/idem/add", "one", &json!(1)).await?;
    assert_eq!(first.0, 200, "{first:?}");
    assert_eq!(first.2, json!({"oldValue": 0, "newValue": 1}));
    let again = post_with_key(setup, "/Counter/idem/add", "one", &json!(1)).await?;
    assert_eq!(again, first, "the same status, id and body");
    let expires = setup
        .client
        .post(format!("{}/Counter/idem/add", setup.ingress))
        .header("idempotency-key", "one")
        .json(&json!(1))
        .send()
        .await?
        .headers()
        .get("idempotency-expires")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        expires.len() == 20 && expires.ends_with('Z'),
        "idempotency-expires: {expires}"
    );
    assert_eq!(setup.count("idem").await?, 1);
    let other = post_with_key(setup, "/Counter/idem/add", "two", &json!(1)).await?;
    assert_eq!(other.2, json!({"oldValue": 1, "newValue": 2}));
    assert_ne!(other.1, first.1);

    // Sends: accepted once, then previously accepted, with one id.
    let sent = post_with_key(setup, "/Counter/idem-send/add/send", "s", &json!(5)).await?;
    assert_eq!((sent.0, sent.2["status"].clone()), (202, json!("Accepted")));
    let resent = post_with_key(setup, "/Counter/idem-send/add/send", "s", &json!(5)).await?;
    assert_eq!(
        (resent.0, resent.2["status"].clone()),
        (202, json!("PreviouslyAccepted"))
    );
    assert_eq!(resent.2["invocationId"], sent.2["invocationId"]);
    let id = sent.2["invocationId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Attach and output, by id and by idempotent request.
    let (status, body) = get(setup, &format!("/restate/invocation/{id}/attach")).await?;
    assert_eq!((status, body), (200, json!({"oldValue": 0, "newValue": 5})));
    let (status, body) = get(setup, &format!("/restate/invocation/{id}/output")).await?;
    assert_eq!((status, body), (200, json!({"oldValue": 0, "newValue": 5})));
    let (status, body) = get(setup, "/restate/invocation/Counter/idem/add/one/output").await?;
    assert_eq!((status, body), (200, json!({"oldValue": 0, "newValue": 1})));
    let (status, _) = get(setup, &format!("/restate/attach/{id}")).await?;
    assert_eq!(status, 200);
    assert_eq!(setup.count("idem-send").await?, 5);
    Ok(())
}

async fn idempotent_calls_from_a_handler_run_once(setup: &Setup) -> anyhow::Result<()> {
    let request = json!({
        "serviceName": "Counter",
        "virtualObjectKey": "proxied",
        "handlerName": "add",
        "message": serde_json::to_vec(&json!(3))?,
        "idempotencyKey": "from-a-handler",
    });
    let first = setup.ok("/Proxy/call", &request).await?;
    let again = setup.ok("/Proxy/call", &request).await?;
    assert_eq!(first, again);
    setup.ok("/Proxy/oneWayCall", &request).await?;
    assert_eq!(setup.count("proxied").await?, 3);
    Ok(())
}

async fn a_workflow_runs_once_and_its_promise_completes_once(setup: &Setup) -> anyhow::Result<()> {
    let sent = setup
        .call("/BlockAndWaitWorkflow/wf/run/send", &json!("Francesco"))
        .await?;
    assert_eq!((sent.0, sent.1["status"].clone()), (202, json!("Accepted")));
    let resent = setup
        .call("/BlockAndWaitWorkflow/wf/run/send", &json!("Till"))
        .await?;
    assert_eq!(
        (resent.0, resent.1["status"].clone()),
        (202, json!("PreviouslyAccepted"))
    );
    assert_eq!(resent.1["invocationId"], sent.1["invocationId"]);
    eventually(
        "the run to keep its input",
        Duration::from_secs(20),
        || async {
            setup
                .ok("/BlockAndWaitWorkflow/wf/getState", &Value::Null)
                .await
                .ok()
                == Some(json!("Francesco"))
        },
    )
    .await?;
    let (status, _) = get(setup, "/restate/workflow/BlockAndWaitWorkflow/wf/output").await?;
    assert_eq!(status, 470, "no output while it runs");

    // A handler attaches to it, the promise completes (the second completion changes nothing).
    let id = sent.1["invocationId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let attacher = {
        let client = setup.client.clone();
        let url = format!("{}/Attacher/attach", setup.ingress);
        let id = id.clone();
        tokio::spawn(async move { client.post(url).json(&json!(id)).send().await })
    };
    setup
        .ok("/BlockAndWaitWorkflow/wf/unblock", &json!("done"))
        .await?;
    setup
        .ok("/BlockAndWaitWorkflow/wf/unblock", &json!("twice"))
        .await?;
    let (status, body) = get(setup, "/restate/workflow/BlockAndWaitWorkflow/wf/attach").await?;
    assert_eq!((status, body), (200, json!("done")));
    let (status, body) = get(setup, "/restate/workflow/BlockAndWaitWorkflow/wf/output").await?;
    assert_eq!((status, body), (200, json!("done")));
    // The same through the forms that name the target in the body.
    let by_body = |path: &str, body: Value| {
        let request = setup
            .client
            .post(format!("{}{path}", setup.ingress))
            .json(&body);
        async move {
            let response = request.send().await?;
            anyhow::Ok((response.status().as_u16(), response.json::<Value>().await?))
        }
    };
    let workflow =
        json!({"target": "workflow", "workflowName": "BlockAndWaitWorkflow", "workflowKey": "wf"});
    assert_eq!(
        by_body("/restate/lookup", workflow.clone()).await?,
        (200, json!({"invocationId": id}))
    );
    assert_eq!(
        by_body("/restate/attach", workflow.clone()).await?,
        (200, json!("done"))
    );
    assert_eq!(
        by_body(
            "/restate/output",
            json!({"target": "invocation", "invocationId": id})
        )
        .await?,
        (200, json!("done"))
    );
    let idempotent = json!({"target": "idempotentInvocation", "service": "Counter", "key": "idem", "handler": "add", "idempotencyKey": "one"});
    assert_eq!(
        by_body("/restate/output", idempotent).await?,
        (200, json!({"oldValue": 0, "newValue": 1}))
    );
    let attached = attacher.await??;
    assert_eq!(attached.status().as_u16(), 200);
    assert_eq!(attached.json::<Value>().await?, json!("done"));
    // Shared handlers still run after the run, and the run is not run again.
    assert_eq!(
        setup
            .ok("/BlockAndWaitWorkflow/wf/getState", &Value::Null)
            .await?,
        json!("Francesco")
    );
    let (status, body) = setup
        .call("/BlockAndWaitWorkflow/wf/run", &json!("again"))
        .await?;
    assert_eq!((status, body), (200, json!("done")));
    Ok(())
}

async fn bad_requests_are_refused(setup: &Setup) -> anyhow::Result<()> {
    let (status, _, _) =
        post_with_key(setup, "/BlockAndWaitWorkflow/k/run", "key", &json!("x")).await?;
    assert_eq!(status, 400, "a workflow's run takes no idempotency key");
    let (status, _) = get(
        setup,
        "/restate/invocation/inv_1aiqX0vFEFNH1Umgre58JiCLgHfTtztYK5/output",
    )
    .await?;
    assert_eq!(status, 404);
    let (status, _) = get(setup, "/restate/invocation/nonsense/attach").await?;
    assert_eq!(status, 400);
    let (status, _) = get(setup, "/restate/workflow/BlockAndWaitWorkflow/never/attach").await?;
    assert_eq!(status, 404);
    let (status, _) = setup.call("/Counter/k/add?delay=1s", &json!(1)).await?;
    assert_eq!(status, 400, "a delay applies to sends only");
    Ok(())
}

/// A thousand `add(1)` with idempotency keys from 20 clients, each retried until it gets a 200;
/// the server is SIGKILLed and restarted (on new ports) while they run.
#[tokio::test]
async fn a_thousand_idempotent_adds_survive_a_crash_exactly_once() -> anyhow::Result<()> {
    const CLIENTS: usize = 20;
    const PER_CLIENT: usize = 50;
    let mut setup = start(&[]).await?;
    let ingress = Arc::new(RwLock::new(setup.ingress.clone()));
    let done = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for client_no in 0..CLIENTS {
        let (ingress, done, client) = (ingress.clone(), done.clone(), setup.client.clone());
        clients.spawn(async move {
            for i in 0..PER_CLIENT {
                let key = format!("add-{client_no}-{i}");
                loop {
                    let url = format!("{}/Counter/crash/add", ingress.read().await);
                    let answer = client
                        .post(url)
                        .header("idempotency-key", &key)
                        .json(&json!(1))
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await;
                    if answer.is_ok_and(|a| a.status().as_u16() == 200) {
                        break;
                    }
                    // The server is down or restarting: try again, as a client would.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    eventually("some adds answered", Duration::from_secs(60), || async {
        done.load(Ordering::Relaxed) >= CLIENTS * PER_CLIENT / 4
    })
    .await?;
    setup.stop_server(Signal::SIGKILL).await?;
    setup.restart_server().await?;
    *ingress.write().await = setup.ingress.clone();
    while let Some(finished) = clients.join_next().await {
        finished?;
    }
    assert_eq!(setup.count("crash").await?, (CLIENTS * PER_CLIENT) as i64);
    Ok(())
}
