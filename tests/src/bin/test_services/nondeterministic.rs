//! `NonDeterministic`, after the conformance contract's non-determinism checks: each handler
//! does one thing the first time it runs for a key and another when it is replayed, so the SDK
//! finds its journal does not match (it fails the attempt with code 570). Had the handler got
//! past that, it would add one to `Counter/<key>`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use restate_sdk::context::RequestTarget;
use restate_sdk::prelude::*;

pub struct NonDeterministic;

/// Keys whose handler has run once in this process.
static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn first_time(key: &str) -> bool {
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    seen.get_or_insert_with(HashSet::new).insert(key.to_owned())
}

#[restate_sdk::object(name = "NonDeterministic")]
impl NonDeterministic {
    /// A sleep the first time, a call to `Counter/get` when replayed.
    #[handler(name = "eitherSleepOrCall")]
    async fn either_sleep_or_call(&self, ctx: ObjectContext<'_>) -> HandlerResult<()> {
        if first_time(ctx.key()) {
            ctx.sleep(Duration::from_millis(100)).await?;
        } else {
            ctx.request::<(), i64>(RequestTarget::object("Counter", ctx.key(), "get"), ())
                .call()
                .await?;
        }
        Self::count(&ctx);
        Ok(())
    }

    /// A call to `Counter/get` the first time, to `Counter/reset` when replayed.
    #[handler(name = "callDifferentMethod")]
    async fn call_different_method(&self, ctx: ObjectContext<'_>) -> HandlerResult<()> {
        let handler = if first_time(ctx.key()) {
            "get"
        } else {
            "reset"
        };
        ctx.request::<(), ()>(RequestTarget::object("Counter", ctx.key(), handler), ())
            .call()
            .await?;
        ctx.sleep(Duration::from_millis(100)).await?;
        Self::count(&ctx);
        Ok(())
    }

    /// A one-way call to `Counter/get` the first time, to `Counter/reset` when replayed.
    #[handler(name = "backgroundInvokeWithDifferentTargets")]
    async fn background_invoke_with_different_targets(
        &self,
        ctx: ObjectContext<'_>,
    ) -> HandlerResult<()> {
        let handler = if first_time(ctx.key()) {
            "get"
        } else {
            "reset"
        };
        ctx.request::<(), ()>(RequestTarget::object("Counter", ctx.key(), handler), ())
            .send();
        ctx.sleep(Duration::from_millis(100)).await?;
        Self::count(&ctx);
        Ok(())
    }

    /// Sets one state key the first time and another when replayed.
    #[handler(name = "setDifferentKey")]
    async fn set_different_key(&self, ctx: ObjectContext<'_>) -> HandlerResult<()> {
        let key = if first_time(ctx.key()) { "a" } else { "b" };
        ctx.set(key, "value".to_owned());
        ctx.sleep(Duration::from_millis(100)).await?;
        Self::count(&ctx);
        Ok(())
    }
}

impl NonDeterministic {
    fn count(ctx: &ObjectContext<'_>) {
        ctx.request::<i64, ()>(RequestTarget::object("Counter", ctx.key(), "add"), 1)
            .send();
    }
}
