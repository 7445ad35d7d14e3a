//! Combinators end to end, after the conformance suite's `Combinators` class: programs of
//! `VirtualObjectCommandInterpreter` await awakeables, sleeps, named signals and calls with
//! first-completed, first-succeeded-or-all-failed, all-succeeded-or-first-failed and
//! all-completed, and an awakeable races a timeout — in the default mode, with every wait a
//! suspension, and with lazy state. The test completes the awaitables while the program waits,
//! in an order other than the program's, and checks the outcome and what the object recorded.

use std::future::Future;
use std::time::Duration;

use reprise_e2e::{ALWAYS_SUSPENDING, LAZY_STATE, Setup, eventually};
use serde_json::{Value, json};

const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");
const INTERPRETER: &str = "/VirtualObjectCommandInterpreter";
const WAIT: Duration = Duration::from_secs(30);

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
    let setup = Setup::in_mode(SERVICES_BIN, mode).await?;
    an_awakeable_loses_to_a_shorter_sleep(&setup).await?;
    an_awakeable_not_completed_in_time_times_out(&setup).await?;
    the_first_success_wins_over_a_rejection(&setup).await?;
    all_signals_succeed_in_the_programs_order(&setup).await?;
    all_completed_reports_each_outcome_in_order(&setup).await?;
    the_first_failure_ends_all_succeeded(&setup).await?;
    first_succeeded_fails_once_every_signal_failed(&setup).await?;
    the_first_completed_signal_wins(&setup).await?;
    calls_race_signals(&setup).await?;
    a_program_records_every_outcome(&setup).await?;
    Ok(())
}

async fn an_awakeable_loses_to_a_shorter_sleep(setup: &Setup) -> anyhow::Result<()> {
    let program = json!([{"type": "awaitFirstCompleted", "awaitables": [
        {"type": "createAwakeable", "key": "never"},
        {"type": "sleep", "millis": 100},
    ]}]);
    let (status, answer) = interpret(setup, "sleep-wins", program, async { Ok(()) }).await?;
    assert_eq!((status, answer), (200, json!("sleep")));
    Ok(())
}

async fn an_awakeable_not_completed_in_time_times_out(setup: &Setup) -> anyhow::Result<()> {
    let program = json!([{"type": "awaitAwakeableOrTimeout", "key": "late", "timeoutMillis": 100}]);
    let (status, answer) = interpret(setup, "timeout", program, async { Ok(()) }).await?;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["message"], "await-timeout", "{answer}");
    assert_eq!(
        results(setup, "timeout").await?,
        json!(["failed: await-timeout"])
    );
    Ok(())
}

async fn the_first_success_wins_over_a_rejection(setup: &Setup) -> anyhow::Result<()> {
    let key = "first-success";
    let program = json!([{"type": "awaitFirstSucceededOrAllFailed", "awaitables": [
        {"type": "createAwakeable", "key": "a1"},
        {"type": "createAwakeable", "key": "a2"},
    ]}]);
    let complete = async {
        // The rejection comes first, and must not end the wait.
        complete_awakeable(setup, key, "a1", Err("no")).await?;
        complete_awakeable(setup, key, "a2", Ok("b")).await
    };
    let (status, answer) = interpret(setup, key, program, complete).await?;
    assert_eq!((status, answer), (200, json!("b")));
    Ok(())
}

async fn all_signals_succeed_in_the_programs_order(setup: &Setup) -> anyhow::Result<()> {
    let key = "all-succeeded";
    let complete = async {
        for signal in ["s2", "s0", "s1"] {
            let value = signal.replace('s', "val");
            send_signal(setup, key, signal, Ok(&value)).await?;
        }
        Ok(())
    };
    let (status, answer) = interpret(
        setup,
        key,
        json!([{"type": "awaitAllSucceededOrFirstFailed", "awaitables": signals(3)}]),
        complete,
    )
    .await?;
    assert_eq!((status, answer), (200, json!("val0|val1|val2")));
    Ok(())
}

async fn all_completed_reports_each_outcome_in_order(setup: &Setup) -> anyhow::Result<()> {
    let key = "all-completed";
    let complete = async {
        send_signal(setup, key, "s1", Err("no")).await?;
        send_signal(setup, key, "s2", Ok("c")).await?;
        send_signal(setup, key, "s0", Ok("a")).await
    };
    let (status, answer) = interpret(
        setup,
        key,
        json!([{"type": "awaitAllCompleted", "awaitables": signals(3)}]),
        complete,
    )
    .await?;
    assert_eq!((status, answer), (200, json!("ok:a|err:no|ok:c")));
    Ok(())
}

async fn the_first_failure_ends_all_succeeded(setup: &Setup) -> anyhow::Result<()> {
    let key = "first-failure";
    let complete = async {
        send_signal(setup, key, "s0", Ok("fine")).await?;
        send_signal(setup, key, "s2", Err("s2 went wrong")).await
    };
    let (status, answer) = interpret(
        setup,
        key,
        json!([{"type": "awaitAllSucceededOrFirstFailed", "awaitables": signals(3)}]),
        complete,
    )
    .await?;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["message"], "s2 went wrong", "{answer}");
    Ok(())
}

async fn first_succeeded_fails_once_every_signal_failed(setup: &Setup) -> anyhow::Result<()> {
    let key = "all-failed";
    let complete = async {
        send_signal(setup, key, "s1", Err("y")).await?;
        send_signal(setup, key, "s0", Err("x")).await
    };
    let (status, answer) = interpret(
        setup,
        key,
        json!([{"type": "awaitFirstSucceededOrAllFailed", "awaitables": signals(2)}]),
        complete,
    )
    .await?;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["message"], "all failed: x|y", "{answer}");
    Ok(())
}

async fn the_first_completed_signal_wins(setup: &Setup) -> anyhow::Result<()> {
    let key = "first-completed";
    let complete = send_signal(setup, key, "s1", Ok("first"));
    let (status, answer) = interpret(
        setup,
        key,
        json!([{"type": "awaitFirstCompleted", "awaitables": signals(2)}]),
        complete,
    )
    .await?;
    assert_eq!((status, answer), (200, json!("first")));
    Ok(())
}

async fn calls_race_signals(setup: &Setup) -> anyhow::Result<()> {
    // A call that answers beats a signal nobody sends.
    let program = json!([{"type": "awaitFirstCompleted", "awaitables": [
        {"type": "createSignal", "name": "never"},
        {"type": "callEcho", "value": "fast"},
    ]}]);
    let (status, answer) = interpret(setup, "call-wins", program, async { Ok(()) }).await?;
    assert_eq!((status, answer), (200, json!("fast")));
    // A call that fails terminally does not decide first-succeeded; the later signal does.
    let key = "signal-wins";
    let program = json!([{"type": "awaitFirstSucceededOrAllFailed", "awaitables": [
        {"type": "callFailing", "reason": "boom"},
        {"type": "createSignal", "name": "late"},
    ]}]);
    let complete = send_signal(setup, key, "late", Ok("late value"));
    let (status, answer) = interpret(setup, key, program, complete).await?;
    assert_eq!((status, answer), (200, json!("late value")));
    Ok(())
}

async fn a_program_records_every_outcome(setup: &Setup) -> anyhow::Result<()> {
    let key = "program";
    let program = json!([
        {"type": "awaitOne", "awaitable": {"type": "callEcho", "value": "one"}},
        {"type": "awaitAllCompleted", "awaitables": [
            {"type": "callEcho", "value": "two"},
            {"type": "callFailing", "reason": "three"},
            {"type": "sleep", "millis": 10},
        ]},
        {"type": "awaitOne", "awaitable": {"type": "createAwakeable", "key": "last"}},
    ]);
    let complete = complete_awakeable(setup, key, "last", Ok("four"));
    let (status, answer) = interpret(setup, key, program, complete).await?;
    assert_eq!((status, answer), (200, json!("four")));
    assert_eq!(
        results(setup, key).await?,
        json!(["one", "ok:two|err:three|ok:sleep", "four"])
    );
    Ok(())
}

/// Runs `program` on `VirtualObjectCommandInterpreter/<key>` while `complete` completes what
/// it waits for; the call's status and answer.
async fn interpret(
    setup: &Setup,
    key: &str,
    program: Value,
    complete: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<(u16, Value)> {
    let path = format!("{INTERPRETER}/{key}/interpretCommands");
    let body = json!({ "commands": program });
    let (answer, ()) = tokio::try_join!(setup.call(&path, &body), complete)?;
    Ok(answer)
}

fn signals(count: usize) -> Value {
    (0..count)
        .map(|i| json!({"type": "createSignal", "name": format!("s{i}")}))
        .collect()
}

/// Resolves (`Ok`) or rejects (`Err`) the named signal of the program running on `key`, through
/// `TestUtilsService` — a handler's `SendSignalCommand`.
async fn send_signal(
    setup: &Setup,
    key: &str,
    signal: &str,
    outcome: Result<&str, &str>,
) -> anyhow::Result<()> {
    let path = format!("{INTERPRETER}/{key}/invocationId");
    eventually("the program's invocation id", WAIT, || async {
        setup
            .ok(&path, &Value::Null)
            .await
            .is_ok_and(|id| id.as_str().is_some_and(|id| id.starts_with("inv_1")))
    })
    .await?;
    let id = setup.ok(&path, &Value::Null).await?;
    let (handler, value) = match outcome {
        Ok(value) => ("resolveSignal", value),
        Err(message) => ("rejectSignal", message),
    };
    setup
        .ok(
            &format!("/TestUtilsService/{handler}"),
            &json!({"invocationId": id, "signal": signal, "value": value}),
        )
        .await?;
    Ok(())
}

/// Resolves (`Ok`) or rejects (`Err`) the awakeable `name` of the program running on `key`
/// once it exists, through the object's shared handlers.
async fn complete_awakeable(
    setup: &Setup,
    key: &str,
    name: &str,
    outcome: Result<&str, &str>,
) -> anyhow::Result<()> {
    let has = format!("{INTERPRETER}/{key}/hasAwakeable");
    eventually(&format!("awakeable {name}"), WAIT, || async {
        setup
            .ok(&has, &json!(name))
            .await
            .is_ok_and(|has| has == json!(true))
    })
    .await?;
    let (handler, body) = match outcome {
        Ok(value) => ("resolveAwakeable", json!({"key": name, "value": value})),
        Err(reason) => ("rejectAwakeable", json!({"key": name, "reason": reason})),
    };
    setup
        .ok(&format!("{INTERPRETER}/{key}/{handler}"), &body)
        .await?;
    Ok(())
}

async fn results(setup: &Setup, key: &str) -> anyhow::Result<Value> {
    setup
        .ok(&format!("{INTERPRETER}/{key}/getResults"), &Value::Null)
        .await
}
