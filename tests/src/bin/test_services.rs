//! Test services written with the official Rust SDK, implementing the SDK conformance contract
//! (`TestUtilsService`, `Counter`). Reprise's end-to-end tests register and call them like any
//! user's deployment.
//!
//! Usage: `reprise-test-services [--variant default|breaking]`. The process listens on a port
//! the OS picks on 127.0.0.1 and prints `listening on <address>` as its first line of output.
//! The `breaking` variant offers `TestUtilsService` without `uppercaseEcho`: registered after
//! the default variant, it is an incompatible change.

use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

struct TestUtilsService {
    side_effects: Arc<AtomicU32>,
}

#[restate_sdk::service(name = "TestUtilsService")]
impl TestUtilsService {
    #[handler]
    async fn echo(&self, _ctx: Context<'_>, input: String) -> HandlerResult<String> {
        Ok(input)
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

/// The `breaking` variant: the same service without `uppercaseEcho`.
struct TestUtilsServiceWithoutUppercase;

#[restate_sdk::service(name = "TestUtilsService")]
impl TestUtilsServiceWithoutUppercase {
    #[handler]
    async fn echo(&self, _ctx: Context<'_>, input: String) -> HandlerResult<String> {
        Ok(input)
    }
}

struct Counter;

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

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let variant = std::env::args()
        .skip_while(|arg| arg != "--variant")
        .nth(1)
        .unwrap_or_else(|| "default".to_owned());
    let endpoint = match variant.as_str() {
        "default" => Endpoint::builder()
            .bind(TestUtilsService {
                side_effects: Arc::default(),
            })
            .bind(Counter)
            .build(),
        "breaking" => Endpoint::builder()
            .bind(TestUtilsServiceWithoutUppercase)
            .build(),
        other => {
            eprintln!("unknown variant `{other}`: use default or breaking");
            std::process::exit(2);
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {address}")?;
    stdout.flush()?;
    HttpServer::new(endpoint).serve(listener).await;
    Ok(())
}
