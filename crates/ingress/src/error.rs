//! Every error the ingress answers with, and the one place that maps them to HTTP statuses.
//! Bodies follow the reference: `{"code": …, "message": …, "source": "ingress"}` with the
//! `x-restate-error-source: ingress` header.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use tracing::warn;

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{method} is not allowed here; use GET or POST")]
    MethodNotAllowed { method: String },
    #[error(
        "the request body is larger than the limit of {limit} bytes (`ingress.request-size-limit`)"
    )]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("invocation {0} has not completed yet")]
    NotReady(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: u16,
    message: String,
    source: &'a str,
}

impl IngressError {
    fn status(&self) -> StatusCode {
        match self {
            IngressError::BadRequest(_) => StatusCode::BAD_REQUEST,
            IngressError::NotFound(_) => StatusCode::NOT_FOUND,
            IngressError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            IngressError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngressError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            // The reference's status for an output that is not there yet.
            IngressError::NotReady(_) => {
                StatusCode::from_u16(470).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }
}

impl From<reprise_worker::WorkerError> for IngressError {
    fn from(err: reprise_worker::WorkerError) -> Self {
        warn!(%err, "an invocation could not be accepted");
        IngressError::Unavailable(format!("{err}; retry the request"))
    }
}

impl IntoResponse for IngressError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            code: status.as_u16(),
            message: self.to_string(),
            source: "ingress",
        };
        let mut response = (status, Json(body)).into_response();
        response.headers_mut().insert(
            "x-restate-error-source",
            HeaderValue::from_static("ingress"),
        );
        response
    }
}
