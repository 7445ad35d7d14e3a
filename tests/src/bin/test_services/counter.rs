//! `Counter` from the SDK conformance contract.

use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};

pub struct Counter;

const COUNT: &str = "counter";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CounterUpdateResponse {
    old_value: i64,
    new_value: i64,
}

#[restate_sdk::object(name = "Counter")]
impl Counter {
    #[handler]
    async fn add(
        &self,
        ctx: ObjectContext<'_>,
        value: i64,
    ) -> HandlerResult<Json<CounterUpdateResponse>> {
        let old_value = ctx.get::<i64>(COUNT).await?.unwrap_or(0);
        let new_value = old_value + value;
        ctx.set(COUNT, new_value);
        Ok(Json(CounterUpdateResponse {
            old_value,
            new_value,
        }))
    }

    /// Sets the new value, then fails terminally: the state it set must persist.
    #[handler(name = "addThenFail")]
    async fn add_then_fail(&self, ctx: ObjectContext<'_>, value: i64) -> HandlerResult<()> {
        let old_value = ctx.get::<i64>(COUNT).await?.unwrap_or(0);
        ctx.set(COUNT, old_value + value);
        Err(TerminalError::new(ctx.key()).into())
    }

    #[handler]
    async fn get(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<i64> {
        Ok(ctx.get::<i64>(COUNT).await?.unwrap_or(0))
    }

    #[handler]
    async fn reset(&self, ctx: ObjectContext<'_>) -> HandlerResult<()> {
        ctx.clear(COUNT);
        Ok(())
    }
}
