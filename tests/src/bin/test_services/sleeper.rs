//! `Sleeper`: the sleeps the timer scenarios need, on a virtual object so a test can ask a
//! key how many of its sleeps have woken up — also after the caller's connection was lost to
//! a server restart. With `--dir`, `sleep` first creates `<dir>/sleeping-<key>`, so a test
//! knows the sleep has begun before it kills something.

use std::path::PathBuf;
use std::time::Duration;

use restate_sdk::prelude::*;

pub struct Sleeper {
    dir: Option<PathBuf>,
}

impl Sleeper {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }
}

const WOKEN: &str = "woken";

#[restate_sdk::object(name = "Sleeper")]
impl Sleeper {
    /// One sleep of `millis`, then counts the wake-up.
    #[handler]
    async fn sleep(&self, ctx: ObjectContext<'_>, millis: u64) -> HandlerResult<()> {
        if let Some(dir) = &self.dir {
            // A marker, not a side effect: it is written again on every replay.
            std::fs::write(dir.join(format!("sleeping-{}", ctx.key())), b"")?;
        }
        ctx.sleep(Duration::from_millis(millis)).await?;
        let woken = ctx.get::<i64>(WOKEN).await?.unwrap_or(0);
        ctx.set(WOKEN, woken + 1);
        Ok(())
    }

    /// Sleeps of every length in `millis` at once, awaiting them all.
    #[handler(name = "sleepMany")]
    async fn sleep_many(
        &self,
        ctx: ObjectContext<'_>,
        millis: Json<Vec<u64>>,
    ) -> HandlerResult<()> {
        let sleeps: Vec<_> = millis
            .into_inner()
            .into_iter()
            .map(|ms| ctx.sleep(Duration::from_millis(ms)))
            .collect();
        for sleep in sleeps {
            sleep.await?;
        }
        let woken = ctx.get::<i64>(WOKEN).await?.unwrap_or(0);
        ctx.set(WOKEN, woken + 1);
        Ok(())
    }

    #[handler]
    async fn woken(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<i64> {
        Ok(ctx.get::<i64>(WOKEN).await?.unwrap_or(0))
    }
}
