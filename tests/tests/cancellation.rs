//! Cancelling, killing and purging invocations through the admin API: a cancelled handler
//! sees the cancellation where it waits and its object is unlocked; cancelling a caller
//! cancels its call; a kill ends a whole call tree at once; an inboxed invocation that is
//! cancelled or killed leaves the inbox; unknown and completed invocations are 404 and 409 —
//! in the default mode, with every wait a suspension and with lazy state.

use std::time::Duration;

use reprise_e2e::{ALWAYS_SUSPENDING, LAZY_STATE, Setup, eventually};
use serde_json::{Value, json};

const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");

async fn start(mode: &[(&str, &str)]) -> anyhow::Result<(Setup, String)> {
    let setup = Setup::in_mode(SERVICES_BIN, mode).await?;
    let admin = format!("http://{}", setup.admin()?);
    Ok((setup, admin))
}

#[tokio::test]
async fn default_mode() -> anyhow::Result<()> {
    every_scenario(&[]).await
}

#[tokio::test]
async fn lazy_state() -> anyhow::Result<()> {
    every_scenario(&[LAZY_STATE]).await
}

#[tokio::test]
async fn always_suspending() -> anyhow::Result<()> {
    every_scenario(&[ALWAYS_SUSPENDING]).await
}

async fn every_scenario(mode: &[(&str, &str)]) -> anyhow::Result<()> {
    let (setup, admin) = start(mode).await?;
    let admin = Admin {
        client: setup.client.clone(),
        base: admin,
    };
    a_cancelled_handler_sees_it_and_unlocks_its_object(&setup, &admin).await?;
    a_handler_cancels_an_invocation(&setup).await?;
    cancelling_a_caller_cancels_its_call(&setup, &admin).await?;
    a_kill_ends_the_whole_call_tree(&setup, &admin).await?;
    an_inboxed_invocation_leaves_the_inbox(&setup, &admin).await?;
    unknown_and_completed_invocations_are_refused(&setup, &admin).await?;
    Ok(())
}

struct Admin {
    client: reqwest::Client,
    base: String,
}

impl Admin {
    /// `PATCH /invocations/{id}/{operation}`: the status.
    async fn patch(&self, id: &str, operation: &str) -> anyhow::Result<u16> {
        let response = self
            .client
            .patch(format!("{}/invocations/{id}/{operation}", self.base))
            .send()
            .await?;
        Ok(response.status().as_u16())
    }

    async fn delete(&self, id: &str, mode: &str) -> anyhow::Result<u16> {
        let response = self
            .client
            .delete(format!("{}/invocations/{id}?mode={mode}", self.base))
            .send()
            .await?;
        Ok(response.status().as_u16())
    }
}

/// Waits until `AwakeableHolder/<key>` holds an awakeable (the waiter is blocked on it).
async fn blocked(setup: &Setup, key: &str) -> anyhow::Result<()> {
    let path = format!("/AwakeableHolder/{key}/hasAwakeable");
    eventually("the waiter to block", Duration::from_secs(20), || async {
        setup.ok(&path, &Value::Null).await.ok() == Some(json!(true))
    })
    .await
}

async fn waiter_result(setup: &Setup, key: &str) -> anyhow::Result<String> {
    let answer = setup
        .ok(&format!("/AwakeableWaiter/{key}/result"), &Value::Null)
        .await?;
    Ok(answer.as_str().unwrap_or_default().to_owned())
}

/// The waiter's object is free: an exclusive handler of it answers.
async fn unlocked(setup: &Setup, key: &str) -> anyhow::Result<()> {
    tokio::time::timeout(
        Duration::from_secs(20),
        setup.ok(&format!("/AwakeableWaiter/{key}/reset"), &Value::Null),
    )
    .await
    .map_err(|_| anyhow::anyhow!("AwakeableWaiter/{key} is still locked"))??;
    Ok(())
}

fn proxy_to_waiter(key: &str) -> Value {
    json!({
        "serviceName": "AwakeableWaiter",
        "virtualObjectKey": key,
        "handlerName": "wait",
        "message": serde_json::to_vec(&json!(0)).expect("JSON"),
    })
}

async fn a_cancelled_handler_sees_it_and_unlocks_its_object(
    setup: &Setup,
    admin: &Admin,
) -> anyhow::Result<()> {
    let id = setup
        .send("/AwakeableWaiter/cancel/wait", &json!(0))
        .await?;
    blocked(setup, "cancel").await?;
    assert_eq!(admin.patch(&id, "cancel").await?, 202);
    eventually(
        "the cancellation to reach the handler",
        Duration::from_secs(20),
        || async {
            waiter_result(setup, "cancel")
                .await
                .is_ok_and(|r| r.starts_with("rejected"))
        },
    )
    .await?;
    let result = waiter_result(setup, "cancel").await?;
    assert!(result.contains("cancel"), "{result}");
    unlocked(setup, "cancel").await?;
    // Now it is completed.
    assert_eq!(admin.patch(&id, "cancel").await?, 409);
    Ok(())
}

async fn a_handler_cancels_an_invocation(setup: &Setup) -> anyhow::Result<()> {
    let id = setup
        .send("/AwakeableWaiter/cancelled-by-handler/wait", &json!(0))
        .await?;
    blocked(setup, "cancelled-by-handler").await?;
    setup
        .ok("/TestUtilsService/cancelInvocation", &json!(id))
        .await?;
    eventually("the cancellation", Duration::from_secs(20), || async {
        waiter_result(setup, "cancelled-by-handler")
            .await
            .is_ok_and(|r| r.starts_with("rejected"))
    })
    .await?;
    unlocked(setup, "cancelled-by-handler").await
}

async fn cancelling_a_caller_cancels_its_call(setup: &Setup, admin: &Admin) -> anyhow::Result<()> {
    let caller = setup
        .send("/Proxy/call", &proxy_to_waiter("cancel-tree"))
        .await?;
    blocked(setup, "cancel-tree").await?;
    assert_eq!(admin.delete(&caller, "cancel").await?, 202);
    eventually(
        "the callee to be cancelled",
        Duration::from_secs(20),
        || async {
            waiter_result(setup, "cancel-tree")
                .await
                .is_ok_and(|r| r.starts_with("rejected"))
        },
    )
    .await?;
    unlocked(setup, "cancel-tree").await
}

async fn a_kill_ends_the_whole_call_tree(setup: &Setup, admin: &Admin) -> anyhow::Result<()> {
    let caller = setup
        .send("/Proxy/call", &proxy_to_waiter("kill-tree"))
        .await?;
    blocked(setup, "kill-tree").await?;
    assert_eq!(admin.patch(&caller, "kill").await?, 202);
    // The callee is killed without running any more: its lock is free, and it set nothing.
    unlocked(setup, "kill-tree").await?;
    assert_eq!(waiter_result(setup, "kill-tree").await?, "");
    assert_eq!(admin.patch(&caller, "kill").await?, 409);
    Ok(())
}

async fn an_inboxed_invocation_leaves_the_inbox(
    setup: &Setup,
    admin: &Admin,
) -> anyhow::Result<()> {
    let first = setup.send("/AwakeableWaiter/inbox/wait", &json!(0)).await?;
    blocked(setup, "inbox").await?;
    // Both wait behind the first, in the object's inbox.
    let cancelled = setup.send("/AwakeableWaiter/inbox/wait", &json!(0)).await?;
    let killed = setup.send("/AwakeableWaiter/inbox/wait", &json!(0)).await?;
    assert_eq!(admin.patch(&cancelled, "cancel").await?, 202);
    assert_eq!(admin.patch(&killed, "kill").await?, 202);
    assert_eq!(admin.patch(&first, "kill").await?, 202);
    // Had either stayed in the inbox, it would now hold the lock, blocked on an awakeable.
    unlocked(setup, "inbox").await?;
    for id in [&first, &cancelled, &killed] {
        assert_eq!(admin.patch(id, "cancel").await?, 409, "{id} is completed");
    }
    Ok(())
}

async fn unknown_and_completed_invocations_are_refused(
    setup: &Setup,
    admin: &Admin,
) -> anyhow::Result<()> {
    let unknown = "inv_1aiqX0vFEFNH1Umgre58JiCLgHfTtztYK5";
    assert_eq!(admin.patch(unknown, "cancel").await?, 404);
    assert_eq!(admin.patch(unknown, "kill").await?, 404);
    assert_eq!(admin.patch("nonsense", "kill").await?, 400);
    assert_eq!(admin.delete(unknown, "explode").await?, 400);
    let (status, headers, _) = setup.post("/TestUtilsService/echo", &json!("done")).await?;
    assert_eq!(status, 200);
    let id = headers
        .get("x-restate-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(admin.patch(&id, "kill").await?, 409);
    assert_eq!(admin.patch(&id, "purge").await?, 202);
    assert_eq!(admin.patch(&id, "purge").await?, 404, "purged: gone");
    Ok(())
}

/// Retries exhausted (two attempts, `on-max-attempts` left at its default, `pause`): the
/// invocation waits, paused, running nothing, until the admin API resumes it.
#[tokio::test]
async fn an_invocation_out_of_attempts_pauses_until_it_is_resumed() -> anyhow::Result<()> {
    let (setup, admin) =
        start(&[("REPRISE_WORKER__INVOKER__RETRY_POLICY__MAX_ATTEMPTS", "2")]).await?;
    let admin = Admin {
        client: setup.client.clone(),
        base: admin,
    };
    let id = setup.send("/Recorder/failUntilGate", &Value::Null).await?;
    let attempts = |records: &std::path::Path| {
        std::fs::read_to_string(records.join("events.log"))
            .unwrap_or_default()
            .lines()
            .filter(|line| line.starts_with(id.as_str()) && line.ends_with("attempt"))
            .count()
    };
    let records = setup.records();
    eventually("two attempts", Duration::from_secs(20), || {
        let n = attempts(&records);
        async move { n >= 2 }
    })
    .await?;
    setup.open_gate()?;
    // Resuming is refused until the pause is committed, then accepted once.
    eventually(
        "the invocation to be paused",
        Duration::from_secs(20),
        || async { admin.patch(&id, "resume").await.ok() == Some(202) },
    )
    .await?;
    let attached = setup
        .client
        .get(format!("{}/restate/invocation/{id}/attach", setup.ingress))
        .send()
        .await?;
    assert_eq!(attached.status().as_u16(), 200);
    assert_eq!(attached.json::<Value>().await?, json!("succeeded"));
    assert_eq!(attempts(&records), 3, "nothing ran while it was paused");
    assert_eq!(admin.patch(&id, "resume").await?, 409, "it is completed");
    Ok(())
}
