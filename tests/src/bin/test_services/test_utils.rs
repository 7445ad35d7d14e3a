//! `TestUtilsService` from the SDK conformance contract, and the `breaking` variant of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use restate_sdk::prelude::*;

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalRequest {
    invocation_id: String,
    signal: String,
    value: String,
}

#[derive(Default)]
pub struct TestUtilsService {
    side_effects: Arc<AtomicU32>,
}

#[restate_sdk::service(name = "TestUtilsService")]
impl TestUtilsService {
    #[handler]
    async fn echo(&self, _ctx: Context<'_>, input: String) -> HandlerResult<String> {
        Ok(input)
    }

    #[handler(name = "echoHeaders")]
    async fn echo_headers(
        &self,
        ctx: Context<'_>,
    ) -> HandlerResult<Json<BTreeMap<String, String>>> {
        let headers = ctx
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
            .collect();
        Ok(Json(headers))
    }

    #[handler(name = "rawEcho")]
    async fn raw_echo(&self, _ctx: Context<'_>, input: Vec<u8>) -> HandlerResult<Vec<u8>> {
        Ok(input)
    }

    /// Resolves the named signal of an invocation (the contract's `resolveSignal`).
    #[handler(name = "resolveSignal")]
    async fn resolve_signal(
        &self,
        ctx: Context<'_>,
        Json(request): Json<SignalRequest>,
    ) -> HandlerResult<()> {
        ctx.invocation_handle(request.invocation_id)
            .signal(request.signal)
            .resolve(request.value);
        Ok(())
    }

    /// Rejects the named signal of an invocation with `value` as the failure's message (the
    /// contract's `rejectSignal`).
    #[handler(name = "rejectSignal")]
    async fn reject_signal(
        &self,
        ctx: Context<'_>,
        Json(request): Json<SignalRequest>,
    ) -> HandlerResult<()> {
        ctx.invocation_handle(request.invocation_id)
            .signal(request.signal)
            .reject(TerminalError::new(request.value));
        Ok(())
    }

    /// Cancels an invocation from a handler (the contract's `cancelInvocation`).
    #[handler(name = "cancelInvocation")]
    async fn cancel_invocation(&self, ctx: Context<'_>, id: String) -> HandlerResult<()> {
        ctx.invocation_handle(id).cancel();
        Ok(())
    }

    #[handler(name = "uppercaseEcho")]
    async fn uppercase_echo(&self, _ctx: Context<'_>, input: String) -> HandlerResult<String> {
        Ok(input.to_uppercase())
    }

    /// Runs `count` side effects and returns how many ran in this attempt.
    #[handler(name = "countExecutedSideEffects")]
    async fn count_executed_side_effects(
        &self,
        ctx: Context<'_>,
        count: u32,
    ) -> HandlerResult<u32> {
        let executed = Arc::new(AtomicU32::new(0));
        for _ in 0..count {
            let executed = executed.clone();
            let total = self.side_effects.clone();
            ctx.run(|| async move {
                executed.fetch_add(1, Ordering::SeqCst);
                total.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await?;
        }
        Ok(executed.load(Ordering::SeqCst))
    }
}

/// The `breaking` variant: the same service with `echo` only.
pub struct TestUtilsServiceEchoOnly;

#[restate_sdk::service(name = "TestUtilsService")]
impl TestUtilsServiceEchoOnly {
    #[handler]
    async fn echo(&self, _ctx: Context<'_>, input: String) -> HandlerResult<String> {
        Ok(input)
    }
}
