//! The one place admin errors become HTTP statuses. Bodies are `{"message": …}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use reprise_schema::{SchemaError, StoreError};
use reprise_service_client::DiscoveryError;
use serde::Serialize;
use tracing::warn;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Internal(String),
}

impl AdminError {
    fn status(&self) -> StatusCode {
        match self {
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody {
    message: String,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            warn!(%status, "admin request failed: {self}");
        }
        (
            status,
            Json(ErrorBody {
                message: self.to_string(),
            }),
        )
            .into_response()
    }
}

impl From<SchemaError> for AdminError {
    fn from(err: SchemaError) -> Self {
        match err {
            SchemaError::Breaking { .. } | SchemaError::DeploymentInUse { .. } => {
                AdminError::Conflict(err.to_string())
            }
            SchemaError::DeploymentNotFound(_) | SchemaError::ServiceNotFound(_) => {
                AdminError::NotFound(err.to_string())
            }
        }
    }
}

impl<E: Into<AdminError>> From<StoreError<E>> for AdminError {
    fn from(err: StoreError<E>) -> Self {
        match err {
            StoreError::Rejected(inner) => inner.into(),
            StoreError::Metadata(err) => AdminError::Unavailable(err.to_string()),
            StoreError::Contended => AdminError::Unavailable(
                "the schema changed concurrently too often; try again".into(),
            ),
            StoreError::Corrupt(reason) => {
                AdminError::Internal(format!("the stored schema is not readable: {reason}"))
            }
        }
    }
}

impl From<std::convert::Infallible> for AdminError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// Every discovery failure is the registrant's to fix: a wrong URI, a service that is down,
/// not an SDK endpoint, or an SDK too old or too new.
impl From<DiscoveryError> for AdminError {
    fn from(err: DiscoveryError) -> Self {
        AdminError::BadRequest(err.to_string())
    }
}
