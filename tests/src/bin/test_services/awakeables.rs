//! Awakeables, after the conformance contract's `AwakeableHolder`: `AwakeableWaiter/<key>/wait`
//! creates an awakeable, hands its id to `AwakeableHolder/<key>` and waits for it (optionally
//! after a durable sleep, so the awakeable can be completed before it is awaited), keeping what
//! it got as state; the holder resolves or rejects it from a handler, or the test does through
//! the ingress with the id from `getId`.

use std::time::Duration;

use restate_sdk::context::RequestTarget;
use restate_sdk::prelude::*;

const ID: &str = "id";
const RESULT: &str = "result";
const SIGNAL_TARGET: &str = "signal-target";

pub struct AwakeableHolder;

#[restate_sdk::object(name = "AwakeableHolder")]
impl AwakeableHolder {
    #[handler]
    async fn hold(&self, ctx: ObjectContext<'_>, id: String) -> HandlerResult<()> {
        ctx.set(ID, id);
        Ok(())
    }

    #[handler(name = "hasAwakeable")]
    async fn has_awakeable(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<bool> {
        Ok(ctx.get::<String>(ID).await?.is_some())
    }

    /// The held id, or an empty string.
    #[handler(name = "getId")]
    async fn get_id(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<String> {
        Ok(ctx.get::<String>(ID).await?.unwrap_or_default())
    }

    /// Resolves the held awakeable with `payload` (a `CompleteAwakeableCommand`).
    #[handler]
    async fn unlock(&self, ctx: ObjectContext<'_>, payload: String) -> HandlerResult<()> {
        let id = Self::held(&ctx).await?;
        ctx.resolve_awakeable(&id, payload);
        Ok(())
    }

    /// Rejects the held awakeable with `message`.
    #[handler]
    async fn reject(&self, ctx: ObjectContext<'_>, message: String) -> HandlerResult<()> {
        let id = Self::held(&ctx).await?;
        ctx.reject_awakeable(&id, TerminalError::new(message));
        Ok(())
    }
}

impl AwakeableHolder {
    async fn held(ctx: &ObjectContext<'_>) -> Result<String, TerminalError> {
        ctx.get::<String>(ID)
            .await?
            .ok_or_else(|| TerminalError::new_with_code(412, "no awakeable is held"))
    }
}

pub struct AwakeableWaiter;

#[restate_sdk::object(name = "AwakeableWaiter")]
impl AwakeableWaiter {
    /// Waits for an awakeable held by `AwakeableHolder/<same key>`, after sleeping
    /// `delay_millis`; answers with its value, or fails with its rejection.
    #[handler]
    async fn wait(&self, ctx: ObjectContext<'_>, delay_millis: u64) -> HandlerResult<String> {
        let (id, awakeable) = ctx.awakeable::<String>();
        ctx.request::<String, ()>(
            RequestTarget::object("AwakeableHolder", ctx.key(), "hold"),
            id,
        )
        .send();
        if delay_millis > 0 {
            ctx.sleep(Duration::from_millis(delay_millis)).await?;
        }
        match awakeable.await {
            Ok(value) => {
                ctx.set(RESULT, format!("resolved: {value}"));
                Ok(value)
            }
            Err(failure) => {
                ctx.set(RESULT, format!("rejected: {}", failure.message()));
                Err(failure.into())
            }
        }
    }

    /// Waits for an awakeable held by `AwakeableHolder/<same key>` or for `timeout_millis`,
    /// whichever comes first: its value, or `timeout`.
    #[handler(name = "waitOrTimeout")]
    async fn wait_or_timeout(
        &self,
        ctx: ObjectContext<'_>,
        timeout_millis: u64,
    ) -> HandlerResult<String> {
        let (id, awakeable) = ctx.awakeable::<String>();
        ctx.request::<String, ()>(
            RequestTarget::object("AwakeableHolder", ctx.key(), "hold"),
            id,
        )
        .send();
        let outcome = restate_sdk::select! {
            value = awakeable => value?,
            timer = ctx.sleep(Duration::from_millis(timeout_millis)) => {
                timer?;
                "timeout".to_owned()
            },
        };
        ctx.set(RESULT, outcome.clone());
        Ok(outcome)
    }

    /// Waits for the named signal `name` on this invocation, whose id it keeps as state
    /// first (`signalTarget`); answers with the signal's value.
    #[handler(name = "waitForSignal")]
    async fn wait_for_signal(&self, ctx: ObjectContext<'_>, name: String) -> HandlerResult<String> {
        ctx.set(SIGNAL_TARGET, ctx.invocation_id().to_owned());
        let value: String = ctx.signal(&name).await?;
        ctx.set(RESULT, format!("signalled: {value}"));
        Ok(value)
    }

    /// The id of the invocation waiting in `waitForSignal`, or an empty string.
    #[handler(name = "signalTarget")]
    async fn signal_target(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<String> {
        Ok(ctx.get::<String>(SIGNAL_TARGET).await?.unwrap_or_default())
    }

    /// Clears what `wait` got. Exclusive: it answers only once the object's lock is free.
    #[handler]
    async fn reset(&self, ctx: ObjectContext<'_>) -> HandlerResult<()> {
        ctx.clear(RESULT);
        Ok(())
    }

    /// What `wait` got, or an empty string while it waits.
    #[handler]
    async fn result(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<String> {
        Ok(ctx.get::<String>(RESULT).await?.unwrap_or_default())
    }
}
