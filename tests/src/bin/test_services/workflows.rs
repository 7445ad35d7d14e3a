//! `BlockAndWaitWorkflow` from the SDK conformance contract: `run` keeps its input as state and
//! waits on a durable promise that the shared `unblock` completes; `getState` reads the state,
//! also after the run finished. And `Attacher`, which attaches to an invocation by id from a
//! handler (an `AttachInvocationCommand`).

use restate_sdk::prelude::*;

const STATE: &str = "my-state";
const PROMISE: &str = "durable-promise";

pub struct BlockAndWaitWorkflow;

#[restate_sdk::workflow(name = "BlockAndWaitWorkflow")]
impl BlockAndWaitWorkflow {
    #[handler]
    async fn run(&self, ctx: WorkflowContext<'_>, input: String) -> HandlerResult<String> {
        ctx.set(STATE, input);
        let output: String = ctx.promise(PROMISE).await?;
        let peeked: Option<String> = ctx.peek_promise(PROMISE).await?;
        if peeked.as_deref() != Some(output.as_str()) {
            return Err(TerminalError::new(format!(
                "peeking the completed promise gave {peeked:?}, not {output:?}"
            ))
            .into());
        }
        Ok(output)
    }

    #[handler]
    async fn unblock(&self, ctx: SharedWorkflowContext<'_>, output: String) -> HandlerResult<()> {
        ctx.resolve_promise(PROMISE, output);
        Ok(())
    }

    /// The state `run` set, or an empty string.
    #[handler(name = "getState")]
    async fn get_state(&self, ctx: SharedWorkflowContext<'_>) -> HandlerResult<String> {
        Ok(ctx.get::<String>(STATE).await?.unwrap_or_default())
    }
}

pub struct Attacher;

#[restate_sdk::service(name = "Attacher")]
impl Attacher {
    /// Waits for the invocation `id` and answers with its (string) result.
    #[handler]
    async fn attach(&self, ctx: Context<'_>, id: String) -> HandlerResult<String> {
        Ok(ctx.invocation_handle(id).attach::<String>().await?)
    }
}
