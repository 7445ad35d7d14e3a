//! Calls and sends between services, end to end, through the conformance contract's `Proxy`:
//! request-response calls, one-way calls, delayed one-way calls, the order of calls from one
//! invocation, failures that reach the caller — in the default mode, with every wait a
//! suspension, and with lazy state — and a thousand sends across partitions with the server
//! SIGKILLed in the middle, each applied exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use reprise_e2e::{ALWAYS_SUSPENDING, LAZY_STATE, QUICK_RETRIES, Setup, eventually};
use serde_json::{Value, json};

const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");

/// Failing attempts give up soon, and the invocation fails, so a failure reaches the caller.
const FEW_ATTEMPTS: [(&str, &str); 2] = [
    ("REPRISE_WORKER__INVOKER__RETRY_POLICY__MAX_ATTEMPTS", "3"),
    (
        "REPRISE_WORKER__INVOKER__RETRY_POLICY__ON_MAX_ATTEMPTS",
        "kill",
    ),
];

async fn start(mode: &[(&str, &str)]) -> anyhow::Result<Setup> {
    let env: Vec<(&str, &str)> = QUICK_RETRIES
        .iter()
        .chain(mode)
        .chain(&FEW_ATTEMPTS)
        .copied()
        .collect();
    Setup::start(SERVICES_BIN, &env).await
}

#[tokio::test]
async fn default_mode() -> anyhow::Result<()> {
    every_scenario(&[]).await
}

#[tokio::test]
async fn always_suspending() -> anyhow::Result<()> {
    every_scenario(&[ALWAYS_SUSPENDING]).await
}

#[tokio::test]
async fn lazy_state() -> anyhow::Result<()> {
    every_scenario(&[LAZY_STATE]).await
}

async fn every_scenario(mode: &[(&str, &str)]) -> anyhow::Result<()> {
    let setup = start(mode).await?;
    a_call_answers_with_the_callees_result(&setup).await?;
    a_one_way_call_runs_its_target(&setup).await?;
    delayed_sends_wait_for_their_delay(&setup).await?;
    calls_from_one_invocation_keep_their_order(&setup).await?;
    a_call_to_an_unknown_service_fails_the_caller(&setup).await?;
    Ok(())
}

/// A `ProxyRequest` of the conformance contract: the message is the callee's input bytes.
fn proxy_request(service: &str, key: Option<&str>, handler: &str, input: &Value) -> Value {
    let mut request = json!({
        "serviceName": service,
        "handlerName": handler,
        "message": serde_json::to_vec(input).expect("JSON"),
    });
    if let Some(key) = key {
        request["virtualObjectKey"] = json!(key);
    }
    request
}

/// The bytes a `Proxy.call` answered with, as JSON.
fn proxied_answer(answer: &Value) -> anyhow::Result<Value> {
    let bytes: Vec<u8> = serde_json::from_value(answer.clone())?;
    Ok(serde_json::from_slice(&bytes)?)
}

async fn a_call_answers_with_the_callees_result(setup: &Setup) -> anyhow::Result<()> {
    let request = proxy_request("TestUtilsService", None, "uppercaseEcho", &json!("hello"));
    let answer = setup.ok("/Proxy/call", &request).await?;
    assert_eq!(proxied_answer(&answer)?, json!("HELLO"));
    // A call to a virtual object: its answer and its state.
    let request = proxy_request("Counter", Some("called"), "add", &json!(5));
    let answer = proxied_answer(&setup.ok("/Proxy/call", &request).await?)?;
    assert_eq!(answer, json!({"oldValue": 0, "newValue": 5}));
    assert_eq!(setup.count("called").await?, 5);
    Ok(())
}

async fn a_one_way_call_runs_its_target(setup: &Setup) -> anyhow::Result<()> {
    let request = proxy_request("Counter", Some("sent"), "add", &json!(1));
    let answer = setup.ok("/Proxy/oneWayCall", &request).await?;
    let callee = answer.as_str().unwrap_or_default();
    assert!(callee.starts_with("inv_1"), "the callee's id: {answer}");
    eventually("the sent add", Duration::from_secs(20), || async {
        setup.count("sent").await.ok() == Some(1)
    })
    .await?;
    Ok(())
}

async fn delayed_sends_wait_for_their_delay(setup: &Setup) -> anyhow::Result<()> {
    const DELAY: Duration = Duration::from_secs(2);
    let sent = Instant::now();
    for _ in 0..5 {
        let mut request = proxy_request("Counter", Some("delayed"), "add", &json!(1));
        request["delayMillis"] = json!(DELAY.as_millis() as u64);
        setup.ok("/Proxy/oneWayCall", &request).await?;
    }
    eventually("the delayed adds", Duration::from_secs(30), || async {
        setup.count("delayed").await.ok() == Some(5)
    })
    .await?;
    let took = sent.elapsed();
    assert!(took >= DELAY, "the delayed sends ran after {took:?}");
    // A send through the ingress with `?delay=` waits too.
    let sent = Instant::now();
    setup
        .send("/Counter/ingress-delayed/add", &json!(1))
        .await?;
    let (status, answer) = setup
        .call("/Counter/ingress-delayed/add/send?delay=PT2S", &json!(1))
        .await?;
    assert_eq!(status, 202, "{answer}");
    eventually(
        "the ingress's delayed add",
        Duration::from_secs(30),
        || async { setup.count("ingress-delayed").await.ok() == Some(2) },
    )
    .await?;
    let took = sent.elapsed();
    assert!(took >= DELAY, "the delayed send ran after {took:?}");
    Ok(())
}

async fn calls_from_one_invocation_keep_their_order(setup: &Setup) -> anyhow::Result<()> {
    for (case, ways) in [
        [(true, false), (false, true), (false, false)],
        [(false, false), (true, false), (false, true)],
        [(false, true), (false, true), (true, false)],
    ]
    .iter()
    .enumerate()
    {
        let key = format!("order-{case}");
        let calls: Vec<Value> = ways
            .iter()
            .enumerate()
            .map(|(i, (one_way, at_the_end))| {
                json!({
                    "proxyRequest": proxy_request("ListObject", Some(&key), "append", &json!(i.to_string())),
                    "oneWayCall": one_way,
                    "awaitAtTheEnd": at_the_end,
                })
            })
            .collect();
        setup.ok("/Proxy/manyCalls", &json!(calls)).await?;
        eventually("the calls' appends", Duration::from_secs(20), || async {
            setup
                .ok(&format!("/ListObject/{key}/get"), &Value::Null)
                .await
                .ok()
                .and_then(|list| list.as_array().map(Vec::len))
                == Some(3)
        })
        .await?;
        let list = setup
            .ok(&format!("/ListObject/{key}/get"), &Value::Null)
            .await?;
        assert_eq!(list, json!(["0", "1", "2"]), "case {case}: {ways:?}");
    }
    Ok(())
}

async fn a_call_to_an_unknown_service_fails_the_caller(setup: &Setup) -> anyhow::Result<()> {
    let request = proxy_request("NoSuchService", None, "greet", &json!("Ann"));
    let (status, answer) = setup.call("/Proxy/call", &request).await?;
    assert_eq!(status, 404, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("NoSuchService"), "{answer}");
    Ok(())
}

/// A thousand one-way calls (a tenth of them delayed) from ten invocations to twenty objects
/// spread over the partitions. The server is SIGKILLed right after the sixth sender is
/// accepted, while its calls are being journaled and delivered and delayed ones wait on their
/// timers; the last four senders come after the restart. Each object's list ends with exactly
/// the values sent to it: none lost, none applied twice.
#[tokio::test]
async fn a_thousand_sends_across_partitions_survive_a_crash_exactly_once() -> anyhow::Result<()> {
    const SENDERS: usize = 10;
    const PER_SENDER: usize = 100;
    const OBJECTS: usize = 20;
    const KILL_AFTER: usize = 6;
    let mut setup = start(&[]).await?;
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let calls: Vec<Value> = (0..PER_SENDER)
            .map(|i| {
                let value = format!("{sender}-{i}");
                let key = format!("crash-{}", (sender * PER_SENDER + i) % OBJECTS);
                expected.entry(key.clone()).or_default().push(value.clone());
                let mut request = proxy_request("ListObject", Some(&key), "append", &json!(value));
                if i % 10 == 0 {
                    request["delayMillis"] = json!(300);
                }
                json!({"proxyRequest": request, "oneWayCall": true, "awaitAtTheEnd": false})
            })
            .collect();
        senders.push(json!(calls));
    }
    for values in expected.values_mut() {
        values.sort();
    }
    for calls in &senders[..KILL_AFTER] {
        setup.send("/Proxy/manyCalls", calls).await?;
    }
    setup.stop_server(Signal::SIGKILL).await?;
    setup.restart_server().await?;
    for calls in &senders[KILL_AFTER..] {
        setup.send("/Proxy/manyCalls", calls).await?;
    }
    let lists = || {
        let keys: Vec<String> = expected.keys().cloned().collect();
        let client = setup.client.clone();
        let ingress = setup.ingress.clone();
        async move {
            let mut lists = BTreeMap::new();
            for key in keys {
                let response = client
                    .post(format!("{ingress}/ListObject/{key}/get"))
                    .send()
                    .await?;
                let mut list: Vec<String> = response.json().await?;
                list.sort();
                lists.insert(key, list);
            }
            anyhow::Ok(lists)
        }
    };
    eventually("every send applied", Duration::from_secs(120), || async {
        lists()
            .await
            .is_ok_and(|lists| lists.values().map(Vec::len).sum::<usize>() >= SENDERS * PER_SENDER)
    })
    .await?;
    assert_eq!(lists().await?, expected, "each send applied exactly once");
    Ok(())
}
