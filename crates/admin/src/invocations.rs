//! Managing invocations: `PATCH /invocations/{id}/cancel|kill|purge|resume` and the reference's
//! `DELETE /invocations/{id}?mode=cancel|kill|purge` (cancel when no mode is given). An unknown
//! id is 404; cancelling or killing a completed invocation, purging one that is not completed,
//! or resuming one that is not paused, is 409; otherwise 202 once the request is durable in the invocation's partition
//! (a cancellation then runs its course: the SDK gets the signal and may compensate).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use reprise_partition_processor::{InvocationStatus, TerminationMode};
use reprise_types::InvocationId;
use reprise_worker::WorkerHandle;
use serde::Deserialize;
use tracing::info;

use crate::{AdminError, AdminHandle, worker};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Terminate(TerminationMode),
    Purge,
    Resume,
}

fn operation(name: &str) -> Result<Operation, AdminError> {
    match name {
        "cancel" => Ok(Operation::Terminate(TerminationMode::Cancel)),
        "kill" => Ok(Operation::Terminate(TerminationMode::Kill)),
        "purge" => Ok(Operation::Purge),
        "resume" => Ok(Operation::Resume),
        other => Err(AdminError::NotFound(format!(
            "no invocation operation `{other}`: use cancel, kill, purge or resume"
        ))),
    }
}

/// `PATCH /invocations/{id}/{operation}`.
pub(crate) async fn patch(
    State(handle): State<AdminHandle>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let worker = worker(handle.get()?)?;
    apply(worker, &id, operation(&name)?).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeleteQuery {
    mode: Option<String>,
}

/// `DELETE /invocations/{id}?mode=`.
pub(crate) async fn delete(
    State(handle): State<AdminHandle>,
    Path(id): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<Response, AdminError> {
    let worker = worker(handle.get()?)?;
    let name = query.mode.as_deref().unwrap_or("cancel");
    let operation = operation(name)
        .ok()
        .filter(|operation| *operation != Operation::Resume)
        .ok_or_else(|| {
            AdminError::BadRequest(format!(
                "mode `{name}` is not one of cancel, kill and purge"
            ))
        })?;
    apply(worker, &id, operation).await
}

async fn apply(
    worker: &WorkerHandle,
    id: &str,
    operation: Operation,
) -> Result<Response, AdminError> {
    let id: InvocationId = id
        .parse()
        .map_err(|_| AdminError::BadRequest(format!("`{id}` is not an invocation id (inv_1…)")))?;
    let unavailable = |err: reprise_worker::WorkerError| AdminError::Unavailable(err.to_string());
    let status = worker
        .invocation_status(id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| AdminError::NotFound(format!("invocation {id} not found")))?;
    let completed = matches!(status, InvocationStatus::Completed { .. });
    match operation {
        Operation::Terminate(mode) => {
            if completed {
                return Err(AdminError::Conflict(format!(
                    "invocation {id} is already completed"
                )));
            }
            worker.terminate(id, mode).await.map_err(unavailable)?;
            info!(invocation = %id, ?mode, "invocation terminated through the admin API");
        }
        Operation::Purge => {
            if !completed {
                return Err(AdminError::Conflict(format!(
                    "invocation {id} is not completed: cancel or kill it first"
                )));
            }
            worker.purge(id).await.map_err(unavailable)?;
            info!(invocation = %id, "invocation purged through the admin API");
        }
        Operation::Resume => {
            if !matches!(status, InvocationStatus::Paused(_)) {
                return Err(AdminError::Conflict(format!(
                    "invocation {id} is not paused"
                )));
            }
            worker.resume(id).await.map_err(unavailable)?;
            info!(invocation = %id, "invocation resumed through the admin API");
        }
    }
    Ok(StatusCode::ACCEPTED.into_response())
}
