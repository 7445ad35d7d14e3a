//! A handler that does something else when it is replayed than what its journal holds fails:
//! the SDK reports the mismatch (code 570), the attempt fails, and with the attempts spent
//! (one, `on-max-attempts = kill`) the caller gets the failure — and the handler never got to
//! its side effect. Every wait is a suspension, so every await is a replay.

use reprise_e2e::{ALWAYS_SUSPENDING, QUICK_RETRIES, Setup};
use serde_json::{Value, json};

const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");

#[tokio::test]
async fn handlers_that_change_on_replay_fail_without_their_side_effects() -> anyhow::Result<()> {
    let env: Vec<(&str, &str)> = QUICK_RETRIES
        .iter()
        .copied()
        .chain([
            ALWAYS_SUSPENDING,
            ("REPRISE_WORKER__INVOKER__RETRY_POLICY__MAX_ATTEMPTS", "1"),
            (
                "REPRISE_WORKER__INVOKER__RETRY_POLICY__ON_MAX_ATTEMPTS",
                "kill",
            ),
        ])
        .collect();
    let setup = Setup::start(SERVICES_BIN, &env).await?;
    for handler in [
        "eitherSleepOrCall",
        "callDifferentMethod",
        "backgroundInvokeWithDifferentTargets",
        "setDifferentKey",
    ] {
        let key = format!("nd-{handler}");
        let (status, answer) = setup
            .call(&format!("/NonDeterministic/{key}/{handler}"), &Value::Null)
            .await?;
        assert_eq!(status, 570, "{handler}: {answer}");
        assert_eq!(answer["code"], json!(570), "{handler}: {answer}");
        assert_eq!(
            setup.count(&key).await?,
            0,
            "{handler} reached its side effect"
        );
    }
    Ok(())
}
