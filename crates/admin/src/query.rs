//! `POST /query`: SQL over the node's invocations, services and deployments
//! (`{"query": "SELECT …"}`), answered as the reference does: `{"rows": [...]}` for a client
//! that accepts JSON, else an Arrow IPC stream. A statement that cannot run is 400, one that
//! would read or answer too much is 413.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::ipc::writer::StreamWriter;
use reprise_query::{QueryError, json_rows};
use serde::Deserialize;

use crate::{AdminError, AdminHandle};

#[derive(Debug, Deserialize)]
struct QueryRequest {
    query: String,
}

pub(crate) async fn query(
    State(handle): State<AdminHandle>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    let engine = handle.get()?.query.as_ref().ok_or_else(|| {
        AdminError::NotFound(
            "this node runs no partitions (no worker role): nothing to query".into(),
        )
    })?;
    let request: QueryRequest = serde_json::from_slice(&body).map_err(|err| {
        AdminError::BadRequest(format!(
            "the body is not a query ({err}); send {{\"query\": \"SELECT …\"}}"
        ))
    })?;
    let batches = engine
        .query(&request.query)
        .await
        .map_err(|err| match err {
            QueryError::Invalid(message) => AdminError::BadRequest(message),
            QueryError::TooLarge(message) => AdminError::TooLarge(message),
            QueryError::Unavailable(message) => AdminError::Unavailable(message),
        })?;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("json"));
    if wants_json {
        let body = json_rows(&batches).map_err(|err| AdminError::Internal(err.to_string()))?;
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response());
    }
    let schema = match batches.first() {
        Some(batch) => batch.schema(),
        None => std::sync::Arc::new(datafusion::arrow::datatypes::Schema::empty()),
    };
    let encode = || -> Result<Vec<u8>, datafusion::arrow::error::ArrowError> {
        let mut writer = StreamWriter::try_new(Vec::new(), &schema)?;
        for batch in &batches {
            writer.write(batch)?;
        }
        writer.into_inner()
    };
    let body =
        encode().map_err(|err| AdminError::Internal(format!("cannot encode the answer: {err}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.apache.arrow.stream"),
        )],
        body,
    )
        .into_response())
}
