//! `Unimplemented`: a test-only service whose handlers use parts of the SDK's API that Reprise
//! does not carry out yet, to check that they fail loudly instead of being acknowledged and
//! dropped.

use restate_sdk::prelude::*;

pub struct Unimplemented;

#[restate_sdk::service(name = "Unimplemented")]
impl Unimplemented {
    /// Attaches to an invocation (an `AttachInvocationCommand`).
    #[handler]
    async fn attach(&self, ctx: Context<'_>, id: String) -> HandlerResult<String> {
        Ok(ctx.invocation_handle(id).attach::<String>().await?)
    }
}
