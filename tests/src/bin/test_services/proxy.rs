//! `Proxy` from the SDK conformance contract: calls and one-way calls to any handler, passing the
//! request's bytes through and answering with the response's bytes (JSON arrays of numbers, as
//! the contract's other SDKs send them).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use restate_sdk::context::RequestTarget;
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};

pub struct Proxy;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyRequest {
    service_name: String,
    virtual_object_key: Option<String>,
    handler_name: String,
    message: Vec<u8>,
    delay_millis: Option<u64>,
    idempotency_key: Option<String>,
}

impl ProxyRequest {
    fn target(&self) -> RequestTarget {
        match &self.virtual_object_key {
            Some(key) => RequestTarget::object(&self.service_name, key, &self.handler_name),
            None => RequestTarget::service(&self.service_name, &self.handler_name),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManyCallRequest {
    proxy_request: ProxyRequest,
    one_way_call: bool,
    await_at_the_end: bool,
}

type PendingCall<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, TerminalError>> + Send + 'a>>;

#[restate_sdk::service(name = "Proxy")]
impl Proxy {
    #[handler]
    async fn call(
        &self,
        ctx: Context<'_>,
        Json(request): Json<ProxyRequest>,
    ) -> HandlerResult<Json<Vec<u8>>> {
        Ok(Json(Self::request(&ctx, request).call().await?))
    }

    /// Sends the request (after `delayMillis`, if set) and answers with the callee's id.
    #[handler(name = "oneWayCall")]
    async fn one_way_call(
        &self,
        ctx: Context<'_>,
        Json(request): Json<ProxyRequest>,
    ) -> HandlerResult<String> {
        let delay = request.delay_millis;
        let request = Self::request(&ctx, request);
        let handle = match delay {
            Some(millis) => request.send_after(Duration::from_millis(millis)),
            None => request.send(),
        };
        Ok(handle.await?.invocation_id().to_owned())
    }

    /// Makes the calls in order: one-way calls are sent, the others awaited at once or, with
    /// `awaitAtTheEnd`, after all of them were made.
    #[handler(name = "manyCalls")]
    async fn many_calls(
        &self,
        ctx: Context<'_>,
        Json(requests): Json<Vec<ManyCallRequest>>,
    ) -> HandlerResult<()> {
        let mut pending: Vec<PendingCall<'_>> = Vec::new();
        for many in requests {
            let delay = many.proxy_request.delay_millis;
            let request = Self::request(&ctx, many.proxy_request);
            if many.one_way_call {
                match delay {
                    Some(millis) => drop(request.send_after(Duration::from_millis(millis))),
                    None => drop(request.send()),
                }
            } else if many.await_at_the_end {
                pending.push(Box::pin(request.call()));
            } else {
                request.call().await?;
            }
        }
        for call in pending {
            call.await?;
        }
        Ok(())
    }
}

impl Proxy {
    fn request<'a>(
        ctx: &Context<'a>,
        request: ProxyRequest,
    ) -> restate_sdk::context::Request<'a, Vec<u8>, Vec<u8>> {
        let target = request.target();
        let mut call = ctx.request::<Vec<u8>, Vec<u8>>(target, request.message);
        if let Some(key) = request.idempotency_key {
            call = call.idempotency_key(key);
        }
        call
    }
}
