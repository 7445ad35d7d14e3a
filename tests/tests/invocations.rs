//! Invoking services end to end: a real `reprise-server`, a real SDK deployment, real HTTP.
//! Calls and sends, headers and raw bytes, retries until success and terminal errors reaching
//! the caller (each in the three modes of the conformance contract), bad requests,
//! and the two crashes a durable engine must shrug off — the service process killed in the
//! middle of an invocation, and the server killed while an invocation is retrying.

use std::path::Path;
use std::time::Duration;

use reprise_e2e::{ALWAYS_SUSPENDING, LAZY_STATE, QUICK_RETRIES, Setup, eventually};
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");
/// How long an invocation may take to finish after what it waits for has happened.
const COMPLETION: Duration = Duration::from_secs(60);

/// A server (fast retries) with the default test services registered.
async fn start(extra_env: &[(&str, &str)]) -> anyhow::Result<Setup> {
    let env: Vec<(&str, &str)> = QUICK_RETRIES.iter().chain(extra_env).copied().collect();
    Setup::start(SERVICES_BIN, &env).await
}

/// The default mode, every wait a suspension, and lazy state: the conformance contract's modes.
const MODES: [&[(&str, &str)]; 3] = [&[], &[ALWAYS_SUSPENDING], &[LAZY_STATE]];

/// The events `Recorder` wrote for `invocation`, in order.
fn events(records: &Path, invocation: &str) -> Vec<String> {
    std::fs::read_to_string(records.join("events.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.strip_prefix(invocation))
        .map(|event| event.trim().to_owned())
        .collect()
}

fn count(events: &[String], event: &str) -> usize {
    events.iter().filter(|e| *e == event).count()
}

#[tokio::test]
async fn calls_and_sends_reach_the_handler_and_answer_its_output() -> anyhow::Result<()> {
    for mode in MODES {
        // With every wait a suspension, the attempt that answers replays its side effects.
        let executed = if mode.contains(&ALWAYS_SUSPENDING) {
            0
        } else {
            3
        };
        calls_and_sends(&start(mode).await?, executed).await?;
    }
    Ok(())
}

async fn calls_and_sends(setup: &Setup, executed_side_effects: u32) -> anyhow::Result<()> {
    let (status, headers, body) = setup.post("/TestUtilsService/echo", &json!("hi")).await?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, b"\"hi\"");
    assert_eq!(headers[CONTENT_TYPE], "application/json");
    let id = headers["x-restate-id"].to_str()?;
    assert!(id.starts_with("inv_1"), "{id}");

    let (status, body) = setup
        .call("/TestUtilsService/uppercaseEcho", &json!("hello"))
        .await?;
    assert_eq!((status, body), (200, json!("HELLO")));

    let (status, body) = setup
        .call("/TestUtilsService/countExecutedSideEffects", &json!(3))
        .await?;
    assert_eq!((status, body), (200, json!(executed_side_effects)));

    // Request headers reach the handler; the ingress adds the path it was called on.
    let response = setup
        .client
        .post(format!("{}/TestUtilsService/echoHeaders", setup.ingress))
        .header("x-custom", "forty-two")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await?;
    assert_eq!(seen["x-custom"], "forty-two", "{seen}");
    assert_eq!(
        seen["x-restate-ingress-path"], "/TestUtilsService/echoHeaders",
        "{seen}"
    );

    // Raw bytes in, the same bytes out, with the handler's content type.
    let raw: Vec<u8> = (0..=255).collect();
    let response = setup
        .client
        .post(format!("{}/TestUtilsService/rawEcho", setup.ingress))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(raw.clone())
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/octet-stream");
    assert_eq!(response.bytes().await?.to_vec(), raw);

    // HTTP/2 with prior knowledge, as SDK test harnesses and ingress clients use it.
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build()?;
    let response = h2
        .post(format!("{}/TestUtilsService/echo", setup.ingress))
        .json(&json!("over h2"))
        .send()
        .await?;
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await?, json!("over h2"));

    // A send answers at once and the invocation still runs to its end.
    setup.open_gate()?;
    let id = setup.send("/Recorder/failUntilGate", &json!(null)).await?;
    assert!(id.starts_with("inv_1"), "{id}");
    let records = setup.records();
    eventually("the sent invocation runs", COMPLETION, || async {
        count(&events(&records, &id), "succeeded") == 1
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn failed_attempts_are_retried_until_they_succeed() -> anyhow::Result<()> {
    for mode in MODES {
        retries_until_success(&start(mode).await?).await?;
    }
    Ok(())
}

async fn retries_until_success(setup: &Setup) -> anyhow::Result<()> {
    let (status, body) = setup
        .call("/Failing/k1/failingCallWithEventualSuccess", &json!(null))
        .await?;
    assert_eq!((status, body), (200, json!(4)));

    let (status, body) = setup
        .call(
            "/Failing/k2/sideEffectSucceedsAfterGivenAttempts",
            &json!(3),
        )
        .await?;
    assert_eq!((status, body), (200, json!(3)));

    // The SDK's own retry policy for the side effect gives up after 3 attempts; the failure is
    // then stored and the handler sees it.
    let (status, body) = setup
        .call("/Failing/k3/sideEffectFailsAfterGivenAttempts", &json!(3))
        .await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.as_u64().is_some_and(|n| n >= 3), "{body}");
    Ok(())
}

#[tokio::test]
async fn terminal_errors_reach_the_caller_with_their_message() -> anyhow::Result<()> {
    for mode in MODES {
        terminal_errors(&start(mode).await?).await?;
    }
    Ok(())
}

async fn terminal_errors(setup: &Setup) -> anyhow::Result<()> {
    for handler in ["terminallyFailingCall", "terminallyFailingSideEffect"] {
        let message = format!("{handler} failed on purpose");
        let (status, headers, body) = setup
            .post(
                &format!("/Failing/k/{handler}"),
                &json!({"errorMessage": message}),
            )
            .await?;
        let body: Value = serde_json::from_slice(&body)?;
        assert_eq!(status, 500, "{handler}: {body}");
        assert_eq!(body["message"], message.as_str(), "{handler}: {body}");
        assert_eq!(headers["x-restate-error-source"], "invocation");
        assert!(headers.contains_key("x-restate-id"));
    }
    Ok(())
}

/// With an inactivity timeout of zero the attempt's input closes after the replay, so the SDK
/// suspends at every `ctx.run` and is invoked again once the result is stored: the attempt that
/// finishes replays every side effect from the journal and executes none.
#[tokio::test]
async fn always_suspending_invocations_replay_stored_side_effects() -> anyhow::Result<()> {
    let setup = start(&[("REPRISE_WORKER__INVOKER__INACTIVITY_TIMEOUT", "0s")]).await?;

    let (status, body) = setup
        .call("/TestUtilsService/countExecutedSideEffects", &json!(3))
        .await?;
    assert_eq!((status, body), (200, json!(0)));

    let (status, body) = setup.call("/TestUtilsService/echo", &json!("hi")).await?;
    assert_eq!((status, body), (200, json!("hi")));
    Ok(())
}

/// A body far over the 64 KiB a frame is packed under, and over a single HTTP/2 frame: it
/// reaches the handler and comes back byte for byte, through the log, the journal and replay.
#[tokio::test]
async fn a_large_body_goes_to_the_handler_and_back_unchanged() -> anyhow::Result<()> {
    let setup = start(&[]).await?;
    let large: String = (0..8 * 1024 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let (status, body) = setup.call("/TestUtilsService/echo", &json!(large)).await?;
    assert_eq!(status, 200);
    assert!(body == json!(large), "the 8 MiB body came back changed");
    Ok(())
}

#[tokio::test]
async fn bad_requests_get_clear_errors() -> anyhow::Result<()> {
    let setup = start(&[("REPRISE_INGRESS__REQUEST_SIZE_LIMIT", "1 KiB")]).await?;

    let cases: [(&str, u16, &str); 3] = [
        ("/NoSuchService/echo", 404, "NoSuchService"),
        ("/TestUtilsService/noSuchHandler", 404, "noSuchHandler"),
        ("/Failing/terminallyFailingCall", 400, "key"),
    ];
    for (path, expected, mentions) in cases {
        let (status, body) = setup.call(path, &json!("x")).await?;
        assert_eq!(status, expected, "{path}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(mentions), "{path}: {body}");
    }

    let too_big = "x".repeat(2048);
    let (status, body) = setup
        .call("/TestUtilsService/echo", &json!(too_big))
        .await?;
    assert_eq!(status, 413, "{body}");

    let response = setup
        .client
        .delete(format!("{}/TestUtilsService/echo", setup.ingress))
        .send()
        .await?;
    assert_eq!(response.status(), 405);

    // A body the handler cannot decode is the handler's terminal error, not a crash.
    let (status, body) = setup
        .call(
            "/TestUtilsService/countExecutedSideEffects",
            &json!("three"),
        )
        .await?;
    assert_eq!(status, 400, "{body}");

    // The node is still serving.
    let (status, body) = setup.call("/TestUtilsService/echo", &json!("ok")).await?;
    assert_eq!((status, body), (200, json!("ok")));
    Ok(())
}

#[tokio::test]
async fn a_killed_service_resumes_without_repeating_completed_side_effects() -> anyhow::Result<()> {
    let mut setup = start(&[]).await?;
    let records = setup.records();

    let id = setup
        .send("/Recorder/runSteps", &json!({"steps": 4, "waitAfter": 1}))
        .await?;
    // `waiting` is written only after the second side effect's result came back from Reprise,
    // that is after it was stored.
    eventually("the invocation reaches the gate", COMPLETION, || async {
        events(&records, &id).contains(&"waiting".to_owned())
    })
    .await?;
    setup.services.kill().await?;
    setup.open_gate()?;
    setup.services.restart().await?;

    eventually("the invocation finishes", COMPLETION, || async {
        events(&records, &id).contains(&"done".to_owned())
    })
    .await?;
    let seen = events(&records, &id);
    for step in 0..4 {
        assert_eq!(count(&seen, &format!("step {step}")), 1, "{seen:?}");
    }
    // The replay reached the gate again, but no stored side effect ran twice.
    assert_eq!(count(&seen, "waiting"), 2, "{seen:?}");
    assert_eq!(count(&seen, "done"), 1, "{seen:?}");
    Ok(())
}

#[tokio::test]
async fn a_killed_server_resumes_a_retrying_invocation() -> anyhow::Result<()> {
    let mut setup = start(&[]).await?;
    let records = setup.records();

    let id = setup.send("/Recorder/failUntilGate", &json!(null)).await?;
    eventually("the invocation is retried", COMPLETION, || async {
        count(&events(&records, &id), "attempt") >= 2
    })
    .await?;
    setup.node.signal(nix::sys::signal::Signal::SIGKILL)?;
    setup.node.wait_exit(Duration::from_secs(10)).await?;
    setup.open_gate()?;
    setup.restart_server().await?;

    eventually(
        "the invocation completes after the restart",
        COMPLETION,
        || async { count(&events(&records, &id), "succeeded") == 1 },
    )
    .await?;

    // Completed means completed: the restarted server keeps serving and does not run it again.
    let (status, body) = setup
        .call("/TestUtilsService/echo", &json!("after"))
        .await?;
    assert_eq!((status, body), (200, json!("after")));
    assert_eq!(count(&events(&records, &id), "succeeded"), 1);
    Ok(())
}
