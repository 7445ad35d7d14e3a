//! `Failing` from the SDK conformance contract: the handlers that need no state. Attempt
//! counters live in the process, as in the reference test services, so a test sees how many
//! attempts one process served.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use restate_sdk::prelude::*;
use serde::Deserialize;

#[derive(Default)]
pub struct Failing {
    eventual_success_calls: Arc<AtomicU32>,
    eventual_success_side_effects: Arc<AtomicU32>,
    eventual_failure_side_effects: Arc<AtomicU32>,
}

/// The contract's `ErrorMessage`: the message a terminal failure must carry.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorMessage {
    error_message: String,
}

/// A failure the SDK treats as retryable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Retryable(String);

/// Retries of side effects in these handlers are quick so the tests stay fast.
fn quick_retries() -> RunRetryPolicy {
    RunRetryPolicy::new()
        .initial_delay(Duration::from_millis(10))
        .exponentiation_factor(1.0)
}

#[restate_sdk::object(name = "Failing")]
impl Failing {
    #[handler(name = "terminallyFailingCall")]
    async fn terminally_failing_call(
        &self,
        _ctx: ObjectContext<'_>,
        input: Json<ErrorMessage>,
    ) -> HandlerResult<()> {
        Err(TerminalError::new(input.into_inner().error_message).into())
    }

    /// Fails with a retryable error on the first three attempts and returns the attempt number
    /// on the fourth.
    #[handler(name = "failingCallWithEventualSuccess")]
    async fn failing_call_with_eventual_success(
        &self,
        _ctx: ObjectContext<'_>,
    ) -> HandlerResult<u32> {
        let attempt = self.eventual_success_calls.fetch_add(1, Ordering::SeqCst) + 1;
        if attempt >= 4 {
            self.eventual_success_calls.store(0, Ordering::SeqCst);
            Ok(attempt)
        } else {
            Err(Retryable(format!("failed on attempt {attempt}")).into())
        }
    }

    #[handler(name = "terminallyFailingSideEffect")]
    async fn terminally_failing_side_effect(
        &self,
        ctx: ObjectContext<'_>,
        input: Json<ErrorMessage>,
    ) -> HandlerResult<()> {
        let message = input.into_inner().error_message;
        ctx.run::<_, _, ()>(|| async move { Err(TerminalError::new(message))? })
            .await?;
        Err(TerminalError::new("the side effect should have failed").into())
    }

    /// A side effect that fails until its `minimum_attempts`-th attempt; returns that number.
    #[handler(name = "sideEffectSucceedsAfterGivenAttempts")]
    async fn side_effect_succeeds_after_given_attempts(
        &self,
        ctx: ObjectContext<'_>,
        minimum_attempts: u32,
    ) -> HandlerResult<u32> {
        let attempts = self.eventual_success_side_effects.clone();
        let result = ctx
            .run(|| async move {
                let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                if attempt >= minimum_attempts {
                    Ok(attempt)
                } else {
                    Err(Retryable(format!(
                        "side effect failed on attempt {attempt}"
                    )))?
                }
            })
            .retry_policy(quick_retries())
            .name("failing_side_effect")
            .await?;
        Ok(result)
    }

    /// A side effect that always fails, under a policy of `max_attempts` attempts: once they are
    /// spent the failure is terminal, and the handler returns how many attempts ran.
    #[handler(name = "sideEffectFailsAfterGivenAttempts")]
    async fn side_effect_fails_after_given_attempts(
        &self,
        ctx: ObjectContext<'_>,
        max_attempts: u32,
    ) -> HandlerResult<u32> {
        let attempts = self.eventual_failure_side_effects.clone();
        let result = ctx
            .run::<_, _, ()>(|| async move {
                let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                Err(Retryable(format!(
                    "side effect failed on attempt {attempt}"
                )))?
            })
            .retry_policy(quick_retries().max_attempts(max_attempts))
            .name("failing_side_effect")
            .await;
        match result {
            Ok(()) => Err(TerminalError::new("the side effect should have failed").into()),
            Err(_) => Ok(self.eventual_failure_side_effects.load(Ordering::SeqCst)),
        }
    }
}
