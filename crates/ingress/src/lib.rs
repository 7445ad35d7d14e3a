//! The ingress: Reprise's public HTTP API (port 8080). `POST /{service}/{handler}` (and
//! `/{object}/{key}/{handler}`) starts an invocation and answers with its result;
//! `…/send` answers 202 once the invocation is durably accepted. Request headers reach the
//! handler; the result carries the handler's output content type and the invocation id in
//! `x-restate-id`. A terminal failure answers with its code as the HTTP status.
//! `POST /restate/awakeables/{id}/resolve|reject` completes an awakeable.

mod error;
mod path;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use reprise_invoker::TargetError;
use reprise_partition_processor::{
    InvocationResult, Retention, ServiceInvocation, Signal, SignalId, SignalResult,
};
use reprise_schema::SchemaView;
use reprise_service_protocol::awakeable::{AwakeableId, AwakeableIdError};
use reprise_service_protocol::discovery::Handler;
use reprise_types::{InvocationId, MillisSinceEpoch, PartitionKey};
use reprise_worker::WorkerHandle;
use serde::Serialize;
use tokio::sync::watch;

pub use error::IngressError;
use path::Completion;
pub use path::{Target, parse};

/// Request headers that describe the connection, not the invocation.
const DROPPED_HEADERS: [&str; 4] = [
    "connection",
    "host",
    "idempotency-key",
    "idempotency-expires",
];

/// How long a request that arrives while the node is starting waits for it.
const STARTUP_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct IngressState {
    pub worker: WorkerHandle,
    pub schema: SchemaView,
    pub request_size_limit: u64,
    /// What a completed invocation keeps when its manifest declares nothing
    /// (`worker.completion-retention`, `worker.journal-retention`).
    pub default_retention: Retention,
}

/// The ingress's view of the node: empty until the partitions can take invocations. Requests
/// that arrive before wait for it (boundedly) instead of failing. Cheap to clone.
#[derive(Clone)]
pub struct IngressHandle(watch::Sender<Option<Arc<IngressState>>>);

impl Default for IngressHandle {
    fn default() -> Self {
        Self(watch::Sender::new(None))
    }
}

impl IngressHandle {
    pub fn set(&self, state: IngressState) {
        self.0.send_replace(Some(Arc::new(state)));
    }

    async fn get(&self) -> Result<Arc<IngressState>, IngressError> {
        let mut ready = self.0.subscribe();
        let waited = tokio::time::timeout(STARTUP_WAIT, ready.wait_for(Option::is_some)).await;
        let state = match waited {
            Ok(Ok(state)) => state.clone(),
            _ => None,
        };
        state.ok_or_else(|| IngressError::Unavailable("the node is starting; try again".into()))
    }
}

/// The invocation routes; everything not matched by the caller's other routes lands here.
pub fn router(handle: IngressHandle) -> Router {
    Router::new().fallback(invoke).with_state(handle)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Accepted {
    invocation_id: String,
    status: &'static str,
}

#[derive(Serialize)]
struct FailureBody {
    code: u32,
    message: String,
    source: &'static str,
}

async fn invoke(State(ingress): State<IngressHandle>, request: Request) -> Response {
    let state = match ingress.get().await {
        Ok(state) => state,
        Err(err) => return err.into_response(),
    };
    match handle(&state, request).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn handle(state: &IngressState, request: Request) -> Result<Response, IngressError> {
    let (parts, body) = request.into_parts();
    if let Some(route) = path::awakeable(parts.uri.path()) {
        let (id, completion) = route?;
        return complete_awakeable(state, &parts, body, &id, completion).await;
    }
    let schema = state
        .schema
        .current()
        .await
        .map_err(|err| IngressError::Unavailable(format!("cannot read the schema: {err}")))?;
    let target = path::parse(parts.uri.path(), |name| {
        schema.service(name).map(|s| s.service.ty)
    })?;
    if parts.method != Method::POST && parts.method != Method::GET {
        return Err(IngressError::MethodNotAllowed {
            method: parts.method.to_string(),
        });
    }
    let resolved = reprise_invoker::resolve(
        &schema,
        &target.service,
        &target.handler,
        target.key.as_deref(),
        state.default_retention,
    )
    .map_err(|err| match err {
        TargetError::MissingKey(_) => IngressError::BadRequest(err.to_string()),
        _ => IngressError::NotFound(err.to_string()),
    })?;
    let handler = resolved.handler;
    let argument = read_body(body, &parts.headers, state.request_size_limit).await?;
    check_input(handler, &parts.headers, &argument)?;

    let partition_key = match &target.key {
        Some(key) => PartitionKey::from_key(key),
        None => PartitionKey::new(rand::random()),
    };
    let invocation_id = InvocationId::new(partition_key, rand::random());
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter(|(name, _)| !DROPPED_HEADERS.contains(&name.as_str()))
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
        .collect();
    let ingress_path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    headers.push(("x-restate-ingress-path".into(), ingress_path));
    let invocation = ServiceInvocation {
        invocation_id,
        target: resolved.target,
        argument,
        headers,
        response_sink: None,
        created_at: MillisSinceEpoch::now(),
        retention: resolved.retention,
        execution_time: None,
    };
    let id_header = HeaderValue::try_from(invocation_id.to_string())
        .expect("an invocation id is alphanumeric ASCII");

    if target.send {
        state.worker.send(invocation).await?;
        let body = Accepted {
            invocation_id: invocation_id.to_string(),
            status: "Accepted",
        };
        let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
        response.headers_mut().insert("x-restate-id", id_header);
        return Ok(response);
    }

    let result = state.worker.call(invocation).await?;
    let mut response = match result {
        InvocationResult::Success(output) => success(handler, output),
        InvocationResult::Failure { code, message } => {
            let status = u16::try_from(code)
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = FailureBody {
                code,
                message,
                source: "invocation",
            };
            let mut response = (status, axum::Json(body)).into_response();
            response.headers_mut().insert(
                "x-restate-error-source",
                HeaderValue::from_static("invocation"),
            );
            response
        }
    };
    response.headers_mut().insert("x-restate-id", id_header);
    Ok(response)
}

/// Resolves (with the body as its value) or rejects (with the body as the failure's message,
/// code 500, as the reference does) an awakeable; 202 once the signal is durable in the
/// partition of the invocation that owns the awakeable.
async fn complete_awakeable(
    state: &IngressState,
    parts: &http::request::Parts,
    body: Body,
    id: &str,
    completion: Completion,
) -> Result<Response, IngressError> {
    if parts.method != Method::POST {
        return Err(IngressError::MethodNotAllowed {
            method: parts.method.to_string(),
        });
    }
    let awakeable: AwakeableId = id
        .parse()
        .map_err(|err: AwakeableIdError| IngressError::BadRequest(err.to_string()))?;
    let body = read_body(body, &parts.headers, state.request_size_limit).await?;
    let result = match completion {
        Completion::Resolve => SignalResult::Value(body),
        Completion::Reject => SignalResult::Failure {
            code: 500,
            message: String::from_utf8_lossy(&body).into_owned(),
        },
    };
    state
        .worker
        .signal(Signal {
            target: awakeable.invocation_id,
            id: SignalId::Index(awakeable.signal_index),
            result,
        })
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

fn success(handler: &Handler, output: Bytes) -> Response {
    let content_type = handler
        .output
        .content_type
        .as_deref()
        .filter(|_| !output.is_empty() || handler.output.set_content_type_if_empty)
        .and_then(|ct| HeaderValue::try_from(ct).ok());
    let mut response = Response::new(Body::from(output));
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
}

/// Reads a request body of at most `limit` bytes into one buffer. Once half of what
/// `content-length` announces has arrived, the buffer makes room for the rest at once, so a
/// large body is not copied again and again as its buffer doubles; before that it grows with
/// what arrives, so a client that only announces a length makes the node allocate nothing.
async fn read_body(body: Body, headers: &HeaderMap, limit: u64) -> Result<Bytes, IngressError> {
    let limit_bytes = usize::try_from(limit).unwrap_or(usize::MAX);
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    if announced > limit_bytes {
        return Err(IngressError::TooLarge { limit });
    }
    let mut body = Limited::new(body, limit_bytes);
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| {
            if err.is::<http_body_util::LengthLimitError>() {
                IngressError::TooLarge { limit }
            } else {
                IngressError::BadRequest(format!("cannot read the request body: {err}"))
            }
        })?;
        if let Ok(data) = frame.into_data() {
            let arrived = buffer.len() + data.len();
            if arrived >= announced / 2 && announced > arrived {
                buffer.reserve(announced - buffer.len());
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

/// The handler's input rules: a body it does not accept is refused before it is invoked.
fn check_input(handler: &Handler, headers: &HeaderMap, body: &Bytes) -> Result<(), IngressError> {
    let rules = &handler.input;
    if body.is_empty() {
        if rules.required {
            return Err(IngressError::BadRequest(format!(
                "handler `{}` requires a request body",
                handler.name
            )));
        }
        return Ok(());
    }
    let Some(accepted) = rules.content_type.as_deref() else {
        return Err(IngressError::BadRequest(format!(
            "handler `{}` takes no request body",
            handler.name
        )));
    };
    let Some(sent) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        // No content type: the body is taken as the handler's.
        return Ok(());
    };
    // `curl -d` labels every body as a form; the reference's documented `curl … -d '"Ann"'`
    // calls must work, so that label is taken as "unspecified".
    if content_type_matches(accepted, sent) || sent.starts_with("application/x-www-form-urlencoded")
    {
        Ok(())
    } else {
        Err(IngressError::BadRequest(format!(
            "handler `{}` accepts `{accepted}`, not `{sent}`",
            handler.name
        )))
    }
}

/// Accept-style matching: `*/*`, `type/*` or an exact media type (parameters ignored).
fn content_type_matches(pattern: &str, sent: &str) -> bool {
    let media = |s: &str| {
        s.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let (pattern, sent) = (media(pattern), media(sent));
    match pattern.split_once('/') {
        Some(("*", "*")) => true,
        Some((ty, "*")) => sent.split_once('/').is_some_and(|(t, _)| t == ty),
        _ => pattern == sent,
    }
}
