//! Invocations that wait do not keep the invoker's slots from invocations with work to do:
//! with two slots and the default one-minute inactivity timeout, six sleeping invocations do
//! not stop a call to another service, and every sleeper still wakes and completes.

use std::time::Duration;

use reprise_e2e::{QUICK_RETRIES, Setup};
use serde_json::{Value, json};

const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");

#[tokio::test]
async fn sleepers_give_their_slots_to_waiting_calls() -> anyhow::Result<()> {
    let env: Vec<(&str, &str)> = QUICK_RETRIES
        .iter()
        .copied()
        .chain([("REPRISE_WORKER__INVOKER__CONCURRENT_INVOCATIONS_LIMIT", "2")])
        .collect();
    let setup = Setup::start(SERVICES_BIN, &env).await?;
    // Six sleeps of 4 s, each on its own key: more than the slots, all waiting on a timer.
    let keys: Vec<String> = (0..6).map(|n| format!("sleeper-{n}")).collect();
    for key in &keys {
        setup
            .send(&format!("/Sleeper/{key}/sleep"), &json!(4_000))
            .await?;
    }
    // A call of another service gets a slot long before any sleep ends, let alone the
    // one-minute inactivity timeout after which idle attempts suspend on their own.
    let started = std::time::Instant::now();
    let echo = tokio::time::timeout(
        Duration::from_secs(3),
        setup.ok("/TestUtilsService/echo", &json!("through")),
    )
    .await;
    anyhow::ensure!(
        echo.is_ok(),
        "a call waited {:?} behind sleeping invocations",
        started.elapsed()
    );
    assert_eq!(echo??, json!("through"));
    // The sleepers, suspended to free their slots, wake and finish.
    for key in &keys {
        let woken = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let count = setup
                    .ok(&format!("/Sleeper/{key}/woken"), &Value::Null)
                    .await?;
                if count.as_i64().unwrap_or(0) >= 1 {
                    return anyhow::Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        anyhow::ensure!(woken.is_ok(), "{key} never woke");
        woken??;
    }
    Ok(())
}

/// More open invocation streams than one HTTP/2 connection to the deployment carries (the
/// Rust SDK's server allows 200): a new call goes over another connection instead of queueing
/// behind them until their inactivity timeout.
#[tokio::test]
async fn streams_past_one_connection_s_limit_use_another_connection() -> anyhow::Result<()> {
    let setup = Setup::start(SERVICES_BIN, &QUICK_RETRIES).await?;
    let sleepers = 300;
    let sends: Vec<_> = (0..sleepers)
        .map(|n| {
            let client = setup.client.clone();
            let url = format!("{}/Sleeper/many-{n}/sleep/send", setup.ingress);
            tokio::spawn(async move {
                let response = client.post(url).json(&json!(3_600_000)).send().await?;
                anyhow::ensure!(
                    response.status() == 202,
                    "send answered {}",
                    response.status()
                );
                anyhow::Ok(())
            })
        })
        .collect();
    for send in sends {
        send.await??;
    }
    let started = std::time::Instant::now();
    let echo = tokio::time::timeout(
        Duration::from_secs(10),
        setup.ok("/TestUtilsService/echo", &json!("past the streams")),
    )
    .await;
    anyhow::ensure!(
        echo.is_ok(),
        "a call waited {:?} behind {sleepers} open streams",
        started.elapsed()
    );
    assert_eq!(echo??, json!("past the streams"));
    Ok(())
}
