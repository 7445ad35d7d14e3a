//! Virtual objects, durable state and timers, end to end, in each way an engine can hand an
//! invocation its state and journal: eager state in the start message (the default), every
//! wait a suspension (`inactivity-timeout = 0s`), and lazy state (eager state disabled) — plus
//! state over the eager size limit for the state scenarios. Each mode runs every scenario on
//! its own node, including the restart ones: SIGTERM and SIGKILL of the server, and SIGKILL
//! of the service process, must lose nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use reprise_e2e::{ALWAYS_SUSPENDING, LAZY_STATE, Setup, eventually};
use serde_json::{Value, json};
use tokio::task::JoinSet;

const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");

const OVER_EAGER_LIMIT: (&str, &str) = ("REPRISE_WORKER__INVOKER__EAGER_STATE_SIZE_LIMIT", "4");

async fn start(mode: &[(&str, &str)]) -> anyhow::Result<Setup> {
    Setup::in_mode(SERVICES_BIN, mode).await
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

#[tokio::test]
async fn state_over_the_eager_limit() -> anyhow::Result<()> {
    let mut setup = start(&[OVER_EAGER_LIMIT]).await?;
    state_scenarios(&mut setup).await
}

async fn every_scenario(mode: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut setup = start(mode).await?;
    state_scenarios(&mut setup).await?;
    one_at_a_time_per_key(&setup).await?;
    keys_do_not_wait_on_each_other(&setup).await?;
    sleeps(&setup).await?;
    a_sleep_survives_a_killed_service(&mut setup).await?;
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        a_sleep_survives_a_server_restart(&mut setup, signal).await?;
        state_survives_a_server_restart(&mut setup, signal).await?;
    }
    // A burst of adds through a SIGKILL is `tests/idempotency.rs`: retried with idempotency
    // keys, the count comes out exact.
    Ok(())
}

async fn state_scenarios(setup: &mut Setup) -> anyhow::Result<()> {
    // add(1) then add(2): 0→1, 1→3.
    let first = setup.ok("/Counter/c1/add", &json!(1)).await?;
    assert_eq!(first, json!({"oldValue": 0, "newValue": 1}));
    let second = setup.ok("/Counter/c1/add", &json!(2)).await?;
    assert_eq!(second, json!({"oldValue": 1, "newValue": 3}));
    assert_eq!(
        setup.ok("/Counter/other/get", &Value::Null).await?,
        json!(0)
    );
    setup.ok("/Counter/c1/reset", &Value::Null).await?;
    assert_eq!(setup.ok("/Counter/c1/get", &Value::Null).await?, json!(0));

    // A terminal failure keeps the state set before it.
    let (status, answer) = setup.call("/Counter/failed/addThenFail", &json!(5)).await?;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["message"], json!("failed"), "the message is the key");
    assert_eq!(
        setup.ok("/Counter/failed/get", &Value::Null).await?,
        json!(5)
    );

    // clearAll returns exactly the entries set, and leaves another object alone.
    for (key, value) in [("a", "1"), ("b", "2")] {
        let entry = json!({"key": key, "value": value});
        setup.ok("/MapObject/m1/set", &entry).await?;
    }
    let entry = json!({"key": "c", "value": "3"});
    setup.ok("/MapObject/m2/set", &entry).await?;
    let cleared = setup.ok("/MapObject/m1/clearAll", &Value::Null).await?;
    let cleared: BTreeSet<String> = cleared
        .as_array()
        .map(|entries| entries.iter().map(Value::to_string).collect())
        .unwrap_or_default();
    let expected: BTreeSet<String> = [
        json!({"key": "a", "value": "1"}),
        json!({"key": "b", "value": "2"}),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    assert_eq!(cleared, expected);
    assert_eq!(setup.ok("/MapObject/m1/get", &json!("a")).await?, json!(""));
    assert_eq!(
        setup.ok("/MapObject/m2/get", &json!("c")).await?,
        json!("3")
    );

    // A list under one key, in append order.
    for item in ["x", "y", "z"] {
        setup.ok("/ListObject/l1/append", &json!(item)).await?;
    }
    assert_eq!(
        setup.ok("/ListObject/l1/get", &Value::Null).await?,
        json!(["x", "y", "z"])
    );
    assert_eq!(
        setup.ok("/ListObject/l1/clear", &Value::Null).await?,
        json!(["x", "y", "z"])
    );
    assert_eq!(
        setup.ok("/ListObject/l1/get", &Value::Null).await?,
        json!([])
    );

    // Values of a mebibyte and more round-trip.
    let big = "v".repeat(1024 * 1024 + 7);
    setup
        .ok("/MapObject/big/set", &json!({"key": "big", "value": big}))
        .await?;
    let read = setup.ok("/MapObject/big/get", &json!("big")).await?;
    assert!(read == json!(big), "the 1 MiB value came back changed");
    Ok(())
}

/// 100 concurrent adds on one key: exclusive handlers run one at a time, so the total is exact
/// and every caller saw a different old value.
async fn one_at_a_time_per_key(setup: &Setup) -> anyhow::Result<()> {
    let mut calls = JoinSet::new();
    for _ in 0..100 {
        let (client, url) = (
            setup.client.clone(),
            format!("{}/Counter/hot/add", setup.ingress),
        );
        calls.spawn(async move {
            let response = client.post(url).json(&json!(1)).send().await?;
            anyhow::ensure!(
                response.status() == 200,
                "add answered {}",
                response.status()
            );
            Ok(response.json::<Value>().await?)
        });
    }
    let mut old_values = BTreeSet::new();
    while let Some(answer) = calls.join_next().await {
        let answer = answer??;
        let old = answer["oldValue"].as_i64().unwrap_or(-1);
        assert_eq!(answer["newValue"].as_i64(), Some(old + 1), "{answer}");
        assert!(old_values.insert(old), "two callers saw old value {old}");
    }
    assert_eq!(old_values, (0..100).collect::<BTreeSet<i64>>());
    assert_eq!(
        setup.ok("/Counter/hot/get", &Value::Null).await?,
        json!(100)
    );
    Ok(())
}

/// While one key is held by a long sleep, another key of the same object type, adds on 1 000
/// other keys and shared reads of the held key all complete.
async fn keys_do_not_wait_on_each_other(setup: &Setup) -> anyhow::Result<()> {
    setup.send("/Sleeper/held/sleep", &json!(600_000)).await?;
    setup.wait_for_marker("sleeping-held").await?;
    setup.ok("/Sleeper/free/sleep", &json!(1)).await?;
    assert_eq!(
        setup.ok("/Sleeper/free/woken", &Value::Null).await?,
        json!(1)
    );
    let limit = Arc::new(tokio::sync::Semaphore::new(128));
    let mut calls = JoinSet::new();
    for key in 0..1000 {
        let (client, limit) = (setup.client.clone(), limit.clone());
        let url = format!("{}/Counter/key-{key}/add", setup.ingress);
        calls.spawn(async move {
            let _permit = limit.acquire().await?;
            let response = client.post(url).json(&json!(1)).send().await?;
            anyhow::ensure!(
                response.status() == 200,
                "add answered {}",
                response.status()
            );
            Ok(response.json::<Value>().await?)
        });
    }
    while let Some(answer) = calls.join_next().await {
        assert_eq!(answer??, json!({"oldValue": 0, "newValue": 1}));
    }
    // A shared handler does not wait for the exclusive one holding the key.
    assert_eq!(
        setup.ok("/Sleeper/held/woken", &Value::Null).await?,
        json!(0)
    );
    Ok(())
}

async fn sleeps(setup: &Setup) -> anyhow::Result<()> {
    let started = Instant::now();
    setup.ok("/Sleeper/short/sleep", &json!(10)).await?;
    assert!(started.elapsed() >= Duration::from_millis(10), "woke early");

    // 50 invocations, each awaiting 20 sleeps of 10–50 ms at once.
    let mut calls = JoinSet::new();
    for key in 0..50u64 {
        let millis: Vec<u64> = (0..20u64).map(|i| 10 + (key * 7 + i * 13) % 41).collect();
        let longest = millis.iter().copied().max().unwrap_or(0);
        let (client, url) = (
            setup.client.clone(),
            format!("{}/Sleeper/many-{key}/sleepMany", setup.ingress),
        );
        calls.spawn(async move {
            let started = Instant::now();
            let response = client.post(url).json(&millis).send().await?;
            anyhow::ensure!(
                response.status() == 200,
                "sleepMany answered {}",
                response.status()
            );
            anyhow::ensure!(
                started.elapsed() >= Duration::from_millis(longest),
                "woke before the longest sleep"
            );
            Ok(())
        });
    }
    while let Some(done) = calls.join_next().await {
        done??;
    }
    for key in 0..50 {
        let woken = setup
            .ok(&format!("/Sleeper/many-{key}/woken"), &Value::Null)
            .await?;
        assert_eq!(woken, json!(1), "many-{key}");
    }
    Ok(())
}

/// A 4 s sleep goes on while the service process is killed and started again.
async fn a_sleep_survives_a_killed_service(setup: &mut Setup) -> anyhow::Result<()> {
    let started = Instant::now();
    let call = {
        let (client, url) = (
            setup.client.clone(),
            format!("{}/Sleeper/svc/sleep", setup.ingress),
        );
        tokio::spawn(async move { client.post(url).json(&json!(4000)).send().await })
    };
    setup.wait_for_marker("sleeping-svc").await?;
    setup.services.kill().await?;
    setup.services.restart().await?;
    let response = call.await??;
    assert_eq!(response.status(), 200, "{}", response.text().await?);
    assert!(started.elapsed() >= Duration::from_secs(4), "woke early");
    assert_eq!(
        setup.ok("/Sleeper/svc/woken", &Value::Null).await?,
        json!(1)
    );
    Ok(())
}

/// A 3 s sleep completes although the server is stopped (or killed) and started during it.
async fn a_sleep_survives_a_server_restart(
    setup: &mut Setup,
    signal: Signal,
) -> anyhow::Result<()> {
    let key = format!("restart-{signal}");
    let started = Instant::now();
    setup
        .send(&format!("/Sleeper/{key}/sleep"), &json!(3000))
        .await?;
    setup.wait_for_marker(&format!("sleeping-{key}")).await?;
    setup.stop_server(signal).await?;
    setup.restart_server().await?;
    let woken = format!("/Sleeper/{key}/woken");
    eventually(
        &format!("the sleep after {signal}"),
        Duration::from_secs(60),
        || async {
            matches!(setup.call(&woken, &Value::Null).await, Ok((200, value)) if value == json!(1))
        },
    )
    .await?;
    assert!(started.elapsed() >= Duration::from_secs(3), "woke early");
    Ok(())
}

/// `add(1)`, a stop or crash and a start, then `add(2)` answers 1→3 on the first try.
async fn state_survives_a_server_restart(setup: &mut Setup, signal: Signal) -> anyhow::Result<()> {
    let path = format!("/Counter/kept-{signal}/add");
    assert_eq!(
        setup.ok(&path, &json!(1)).await?,
        json!({"oldValue": 0, "newValue": 1})
    );
    setup.stop_server(signal).await?;
    setup.restart_server().await?;
    assert_eq!(
        setup.ok(&path, &json!(2)).await?,
        json!({"oldValue": 1, "newValue": 3})
    );
    Ok(())
}
