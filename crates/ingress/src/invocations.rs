//! Requests about invocations that exist: attaching to one (waiting for its result), reading its
//! output (470 while it has none), and completing awakeables. The invocation is named by id, by
//! its idempotent request or by its workflow; the last two ids are derived, as the partition
//! derives them.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use reprise_partition_processor::{InvocationStatus, Signal, SignalId, SignalResult, ids};
use reprise_schema::Schema;
use reprise_service_protocol::awakeable::{AwakeableId, AwakeableIdError};
use reprise_service_protocol::discovery::Handler;
use reprise_types::InvocationId;
use serde::{Deserialize, Serialize};

use crate::path::{Completion, QueryKind, QueryTarget};
use crate::{IngressError, IngressState, answer, read_body};

/// The body of `POST /restate/attach|output|lookup`, as the reference's clients send it.
#[derive(Debug, Deserialize)]
#[serde(tag = "target", rename_all = "camelCase")]
enum BodyTarget {
    #[serde(rename_all = "camelCase")]
    Invocation { invocation_id: String },
    #[serde(rename_all = "camelCase")]
    Workflow {
        workflow_name: String,
        workflow_key: String,
    },
    #[serde(rename_all = "camelCase")]
    IdempotentInvocation {
        service: String,
        key: Option<String>,
        handler: String,
        idempotency_key: String,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Lookup {
    invocation_id: String,
}

/// `GET …/attach` and `GET …/output`, and `POST /restate/attach|output|lookup` with the target
/// in the body.
pub(crate) async fn query(
    state: &IngressState,
    parts: &http::request::Parts,
    body: Body,
    schema: &Schema,
    target: QueryTarget,
    kind: QueryKind,
) -> Result<Response, IngressError> {
    let expected = if target == QueryTarget::InBody {
        Method::POST
    } else {
        Method::GET
    };
    if parts.method != expected {
        return Err(IngressError::MethodNotAllowed {
            method: parts.method.to_string(),
        });
    }
    let target = match target {
        QueryTarget::InBody => {
            let body = read_body(body, &parts.headers, state.request_size_limit).await?;
            let named: BodyTarget = serde_json::from_slice(&body).map_err(|err| {
                IngressError::BadRequest(format!(
                    "the body does not name an invocation ({err}): send {{\"target\": \"invocation\", \"invocationId\": \"inv_1…\"}}, a workflow or an idempotentInvocation"
                ))
            })?;
            match named {
                BodyTarget::Invocation { invocation_id } => QueryTarget::Id(invocation_id),
                BodyTarget::Workflow {
                    workflow_name,
                    workflow_key,
                } => QueryTarget::Workflow {
                    name: workflow_name,
                    key: workflow_key,
                },
                BodyTarget::IdempotentInvocation {
                    service,
                    key,
                    handler,
                    idempotency_key,
                } => QueryTarget::Idempotent {
                    service,
                    key,
                    handler,
                    idempotency_key,
                },
            }
        }
        other => other,
    };
    let id = match target {
        QueryTarget::Id(text) => text.parse::<InvocationId>().map_err(|_| {
            IngressError::BadRequest(format!("`{text}` is not an invocation id (inv_1…)"))
        })?,
        QueryTarget::Idempotent {
            service,
            key,
            handler,
            idempotency_key,
        } => ids::idempotent_invocation_id(&service, key.as_deref(), &handler, &idempotency_key),
        QueryTarget::Workflow { name, key } => ids::workflow_invocation_id(&name, &key),
        QueryTarget::InBody => {
            return Err(IngressError::BadRequest(
                "the body names no invocation".into(),
            ));
        }
    };
    if kind == QueryKind::Lookup {
        // Ids of idempotent requests and workflow runs are derived: no storage is read.
        let body = Lookup {
            invocation_id: id.to_string(),
        };
        return Ok(axum::Json(body).into_response());
    }
    let status = state
        .worker
        .invocation_status(id)
        .await?
        .ok_or_else(|| IngressError::NotFound(format!("invocation {id} not found")))?;
    let handler = handler_of(schema, &status);
    match kind {
        QueryKind::Output => match status {
            InvocationStatus::Completed { result, .. } => Ok(answer(handler, id, result)),
            _ => Err(IngressError::NotReady(id.to_string())),
        },
        QueryKind::Attach | QueryKind::Lookup => {
            let result = state.worker.attach(id).await?;
            Ok(answer(handler, id, result))
        }
    }
}

/// The handler the invocation runs, for its output's content type.
fn handler_of<'a>(schema: &'a Schema, status: &InvocationStatus) -> Option<&'a Handler> {
    let target = match status {
        InvocationStatus::Completed { target, .. } => target,
        other => &other.in_flight()?.target,
    };
    schema.service(&target.service)?.handler(&target.handler)
}

/// Resolves (with the body as its value) or rejects (with the body as the failure's message,
/// code 500, as the reference does) an awakeable; 202 once the signal is durable in the
/// partition of the invocation that owns the awakeable.
pub(crate) async fn complete_awakeable(
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
