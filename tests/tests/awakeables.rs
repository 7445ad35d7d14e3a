//! Awakeables and signals end to end: resolved and rejected through the ingress
//! (`/restate/awakeables/{id}/resolve|reject`) and from another handler, completed before the
//! handler awaits them, raced against a timer, a named signal sent from a handler, and across
//! SIGKILLs of the server — in the default mode, with every wait
//! a suspension, and with lazy state.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use reprise_e2e::{ALWAYS_SUSPENDING, LAZY_STATE, Setup, eventually};
use serde_json::{Value, json};

const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");

async fn start(mode: &[(&str, &str)]) -> anyhow::Result<Setup> {
    Setup::in_mode(SERVICES_BIN, mode).await
}

#[tokio::test]
async fn default_mode() -> anyhow::Result<()> {
    let mut setup = start(&[]).await?;
    every_scenario(&setup).await?;
    survives_a_server_crash(&mut setup).await
}

#[tokio::test]
async fn always_suspending() -> anyhow::Result<()> {
    every_scenario(&start(&[ALWAYS_SUSPENDING]).await?).await
}

#[tokio::test]
async fn lazy_state() -> anyhow::Result<()> {
    every_scenario(&start(&[LAZY_STATE]).await?).await
}

async fn every_scenario(setup: &Setup) -> anyhow::Result<()> {
    resolved_through_the_ingress(setup).await?;
    rejected_through_the_ingress(setup).await?;
    resolved_from_a_handler(setup).await?;
    resolved_before_the_handler_awaits_it(setup).await?;
    bad_requests_are_refused(setup).await?;
    the_first_of_an_awakeable_and_a_timer_wins(setup).await?;
    a_named_signal_reaches_the_invocation_waiting_for_it(setup).await?;
    Ok(())
}

async fn the_first_of_an_awakeable_and_a_timer_wins(setup: &Setup) -> anyhow::Result<()> {
    // Nobody resolves it: the timer wins.
    let answer = setup
        .ok("/AwakeableWaiter/timeout/waitOrTimeout", &json!(100))
        .await?;
    assert_eq!(answer, json!("timeout"));
    // Resolved long before its timer: the awakeable wins.
    setup
        .send("/AwakeableWaiter/in-time/waitOrTimeout", &json!(60_000))
        .await?;
    let id = held_id(setup, "in-time").await?;
    let (status, _) = complete(setup, &id, "resolve", "\"in time\"").await?;
    assert_eq!(status, 202);
    assert_eq!(result(setup, "in-time").await?, "in time");
    Ok(())
}

async fn a_named_signal_reaches_the_invocation_waiting_for_it(setup: &Setup) -> anyhow::Result<()> {
    setup
        .send("/AwakeableWaiter/named/waitForSignal", &json!("go"))
        .await?;
    let path = "/AwakeableWaiter/named/signalTarget";
    eventually("the waiter's id", Duration::from_secs(20), || async {
        setup
            .ok(path, &Value::Null)
            .await
            .is_ok_and(|id| id.as_str().is_some_and(|id| id.starts_with("inv_1")))
    })
    .await?;
    let target = setup.ok(path, &Value::Null).await?;
    setup
        .ok(
            "/TestUtilsService/resolveSignal",
            &json!({"invocationId": target, "signal": "go", "value": "now"}),
        )
        .await?;
    assert_eq!(result(setup, "named").await?, "signalled: now");
    Ok(())
}

/// Starts `AwakeableWaiter/<key>/wait` and returns the id of its awakeable, once held.
async fn start_waiting(setup: &Setup, key: &str, delay_millis: u64) -> anyhow::Result<String> {
    setup
        .send(
            &format!("/AwakeableWaiter/{key}/wait"),
            &json!(delay_millis),
        )
        .await?;
    held_id(setup, key).await
}

async fn held_id(setup: &Setup, key: &str) -> anyhow::Result<String> {
    let path = format!("/AwakeableHolder/{key}/getId");
    eventually("the awakeable's id", Duration::from_secs(20), || async {
        setup
            .ok(&path, &Value::Null)
            .await
            .is_ok_and(|id| id.as_str().is_some_and(|id| id.starts_with("sign_1")))
    })
    .await?;
    let id = setup.ok(&path, &Value::Null).await?;
    Ok(id.as_str().unwrap_or_default().to_owned())
}

/// Waits until `AwakeableWaiter/<key>` has a result, and returns it.
async fn result(setup: &Setup, key: &str) -> anyhow::Result<String> {
    let path = format!("/AwakeableWaiter/{key}/result");
    eventually("the waiter's result", Duration::from_secs(30), || async {
        setup
            .ok(&path, &Value::Null)
            .await
            .is_ok_and(|result| result.as_str().is_some_and(|r| !r.is_empty()))
    })
    .await?;
    let answer = setup.ok(&path, &Value::Null).await?;
    Ok(answer.as_str().unwrap_or_default().to_owned())
}

/// POSTs `body` (raw bytes) to an awakeable endpoint; returns status and body.
async fn complete(setup: &Setup, id: &str, how: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let response = setup
        .client
        .post(format!("{}/restate/awakeables/{id}/{how}", setup.ingress))
        .body(body.to_owned())
        .send()
        .await?;
    Ok((response.status().as_u16(), response.text().await?))
}

async fn resolved_through_the_ingress(setup: &Setup) -> anyhow::Result<()> {
    let id = start_waiting(setup, "ingress", 0).await?;
    let (status, body) = complete(setup, &id, "resolve", "\"hello\"").await?;
    assert_eq!((status, body.as_str()), (202, ""));
    assert_eq!(result(setup, "ingress").await?, "resolved: hello");
    // Resolving it again changes nothing: a signal is delivered once.
    let (status, _) = complete(setup, &id, "resolve", "\"again\"").await?;
    assert_eq!(status, 202);
    assert_eq!(result(setup, "ingress").await?, "resolved: hello");
    Ok(())
}

async fn rejected_through_the_ingress(setup: &Setup) -> anyhow::Result<()> {
    let id = start_waiting(setup, "rejected", 0).await?;
    let (status, _) = complete(setup, &id, "reject", "not today").await?;
    assert_eq!(status, 202);
    assert_eq!(result(setup, "rejected").await?, "rejected: not today");
    Ok(())
}

async fn resolved_from_a_handler(setup: &Setup) -> anyhow::Result<()> {
    start_waiting(setup, "handler", 0).await?;
    setup
        .ok("/AwakeableHolder/handler/unlock", &json!("from a handler"))
        .await?;
    assert_eq!(result(setup, "handler").await?, "resolved: from a handler");
    start_waiting(setup, "handler-reject", 0).await?;
    setup
        .ok("/AwakeableHolder/handler-reject/reject", &json!("no"))
        .await?;
    assert_eq!(result(setup, "handler-reject").await?, "rejected: no");
    Ok(())
}

async fn resolved_before_the_handler_awaits_it(setup: &Setup) -> anyhow::Result<()> {
    const DELAY: Duration = Duration::from_secs(2);
    let started = Instant::now();
    let id = start_waiting(setup, "early", DELAY.as_millis() as u64).await?;
    let (status, _) = complete(setup, &id, "resolve", "\"early\"").await?;
    assert_eq!(status, 202);
    assert!(
        started.elapsed() < DELAY,
        "resolved after the handler's sleep: the scenario did not happen"
    );
    assert_eq!(result(setup, "early").await?, "resolved: early");
    Ok(())
}

async fn bad_requests_are_refused(setup: &Setup) -> anyhow::Result<()> {
    let (status, body) = complete(setup, "sign_1nope", "resolve", "1").await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not an awakeable id"), "{body}");
    let (status, _) = complete(
        setup,
        "sign_1AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYAAAAEQ",
        "fulfil",
        "1",
    )
    .await?;
    assert_eq!(status, 404);
    let response = setup
        .client
        .get(format!(
            "{}/restate/awakeables/sign_1AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYAAAAEQ/resolve",
            setup.ingress
        ))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 405);
    Ok(())
}

/// An awakeable resolved just before a SIGKILL, and one waited on across a SIGKILL and resolved
/// after the restart: both handlers get their value.
async fn survives_a_server_crash(setup: &mut Setup) -> anyhow::Result<()> {
    let before = start_waiting(setup, "crash-before", 0).await?;
    let after = start_waiting(setup, "crash-after", 0).await?;
    let (status, _) = complete(setup, &before, "resolve", "\"kept\"").await?;
    assert_eq!(status, 202);
    setup.stop_server(Signal::SIGKILL).await?;
    setup.restart_server().await?;
    let (status, _) = complete(setup, &after, "resolve", "\"later\"").await?;
    assert_eq!(status, 202);
    assert_eq!(result(setup, "crash-before").await?, "resolved: kept");
    assert_eq!(result(setup, "crash-after").await?, "resolved: later");
    Ok(())
}
