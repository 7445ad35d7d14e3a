//! The ingress: Reprise's public HTTP API (port 8080). `POST /{service}/{handler}` (and
//! `/{object}/{key}/{handler}`) starts an invocation and answers with its result;
//! `…/send` answers 202 once the invocation is durably accepted. Request headers reach the
//! handler; the result carries the handler's output content type and the invocation id in
//! `x-restate-id`. A terminal failure answers with its code as the HTTP status.
//! `POST /restate/awakeables/{id}/resolve|reject` completes an awakeable.

mod error;
mod invocations;
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
use reprise_partition_processor::{InvocationResult, Retention, ServiceInvocation};
use reprise_schema::SchemaView;
use reprise_service_protocol::discovery::Handler;
use reprise_types::{InvocationId, MillisSinceEpoch};
use reprise_worker::WorkerHandle;
use serde::Serialize;
use tokio::sync::watch;

pub use error::IngressError;
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
        return invocations::complete_awakeable(state, &parts, body, &id, completion).await;
    }
    let schema = state
        .schema
        .current()
        .await
        .map_err(|err| IngressError::Unavailable(format!("cannot read the schema: {err}")))?;
    let service_type = |name: &str| schema.service(name).map(|s| s.service.ty);
    if let Some(route) = path::query(parts.uri.path(), service_type) {
        let (target, kind) = route?;
        return invocations::query(state, &parts, body, &schema, target, kind).await;
    }
    let target = path::parse(parts.uri.path(), service_type)?;
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
    let idempotency_key = idempotency_key(&parts.headers)?;
    if idempotency_key.is_some() && resolved.is_workflow_run() {
        return Err(IngressError::BadRequest(format!(
            "`{}/{}` is a workflow's run: it runs once per key, without an idempotency key",
            target.service, target.handler
        )));
    }
    let delay = match delay(&parts.uri)? {
        Some(_) if !target.send => {
            return Err(IngressError::BadRequest(
                "`delay` applies to sends only (`…/send?delay=10s`)".into(),
            ));
        }
        delay => delay,
    };
    let argument = read_body(body, &parts.headers, state.request_size_limit).await?;
    check_input(handler, &parts.headers, &argument)?;

    let invocation_id = resolved.invocation_id(idempotency_key.as_deref());
    // An idempotent request or a workflow run may exist already: a send is then answered
    // as previously accepted (a call joins it, in the partition).
    let derived = idempotency_key.is_some() || resolved.is_workflow_run();
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
        execution_time: delay.map(|delay| {
            let at = MillisSinceEpoch::now()
                .as_u64()
                .saturating_add(delay.as_millis() as u64);
            MillisSinceEpoch::new(at)
        }),
    };
    let id_header = HeaderValue::try_from(invocation_id.to_string())
        .expect("an invocation id is alphanumeric ASCII");

    if target.send {
        let previously = derived
            && state
                .worker
                .invocation_status(invocation_id)
                .await?
                .is_some();
        if !previously {
            state.worker.send(invocation).await?;
        }
        let body = Accepted {
            invocation_id: invocation_id.to_string(),
            status: if previously {
                "PreviouslyAccepted"
            } else {
                "Accepted"
            },
        };
        let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
        response.headers_mut().insert("x-restate-id", id_header);
        return Ok(response);
    }

    let kept_for = std::time::Duration::from_millis(invocation.retention.completion_ms);
    let result = state.worker.call(invocation).await?;
    let mut response = answer(Some(handler), invocation_id, result);
    // Until when a repeat of this request gets this answer (the reference's header).
    if derived && !kept_for.is_zero() {
        let expires = std::time::SystemTime::now() + kept_for;
        if let Ok(value) =
            HeaderValue::try_from(humantime::format_rfc3339_seconds(expires).to_string())
        {
            response.headers_mut().insert("idempotency-expires", value);
        }
    }
    Ok(response)
}

/// The answer to a call (or an attach): the output with the handler's content type, or the
/// failure with its code as the status; `x-restate-id` names the invocation.
fn answer(handler: Option<&Handler>, id: InvocationId, result: InvocationResult) -> Response {
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
    let id_header =
        HeaderValue::try_from(id.to_string()).expect("an invocation id is alphanumeric ASCII");
    response.headers_mut().insert("x-restate-id", id_header);
    response
}

/// The `idempotency-key` header, if the request has one; an empty or non-ASCII one is refused.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, IngressError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() => Ok(Some(key.to_owned())),
        _ => Err(IngressError::BadRequest(
            "the idempotency-key header must be a non-empty ASCII string".into(),
        )),
    }
}

/// The `delay` query parameter of a send: milliseconds (`5000`), ISO 8601 (`PT5S`) or a
/// friendly duration (`5s`, `1h 30m`).
fn delay(uri: &http::Uri) -> Result<Option<std::time::Duration>, IngressError> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    let Some(text) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("delay="))
    else {
        return Ok(None);
    };
    let text = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
    parse_duration(&text).map(Some).ok_or_else(|| {
        IngressError::BadRequest(format!(
            "`delay={text}` is not a duration: use milliseconds, PT10S or 10s"
        ))
    })
}

fn parse_duration(text: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(Duration::from_millis);
    }
    if let Some(iso) = text.strip_prefix('P').or_else(|| text.strip_prefix('p')) {
        let mut total = 0f64;
        let mut number = String::new();
        let mut in_time = false;
        let mut units = 0;
        for c in iso.chars() {
            match c.to_ascii_uppercase() {
                'T' if number.is_empty() => in_time = true,
                '0'..='9' | '.' => number.push(c),
                unit => {
                    let value: f64 = number.parse().ok()?;
                    number.clear();
                    units += 1;
                    total += value
                        * match (unit, in_time) {
                            ('D', false) => 86_400.0,
                            ('W', false) => 604_800.0,
                            ('H', true) => 3_600.0,
                            ('M', true) => 60.0,
                            ('S', true) => 1.0,
                            _ => return None,
                        };
                }
            }
        }
        return (units > 0 && number.is_empty() && total.is_finite() && total < 1e12)
            .then(|| Duration::from_secs_f64(total));
    }
    humantime::parse_duration(text).ok()
}

fn success(handler: Option<&Handler>, output: Bytes) -> Response {
    let content_type = handler
        .and_then(|handler| {
            handler
                .output
                .content_type
                .as_deref()
                .filter(|_| !output.is_empty() || handler.output.set_content_type_if_empty)
        })
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_duration;

    #[test]
    fn delays_are_milliseconds_iso_8601_or_friendly() {
        assert_eq!(parse_duration("5000"), Some(Duration::from_millis(5000)));
        assert_eq!(parse_duration("PT10S"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("PT1.5S"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("P1DT1H"), Some(Duration::from_secs(90_000)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5_400)));
        for bad in ["", "PT", "PT5", "P1H", "soon", "PT1e300S", "-5"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
