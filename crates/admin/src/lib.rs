//! The admin HTTP API (port 9070): register deployments by discovery, list and remove them,
//! list services, report the version; cancel, kill and purge invocations; list this node's
//! partitions and make it step down as a partition's leader. The same routes are served at `/`, `/v3` and `/v4`, as
//! the reference system's CLI addresses them. Errors are `{"message": …}` with the status
//! chosen in one place ([`error`]).
//!
//! The router can be served before the node has opened its storage: until
//! [`AdminHandle::set`] is called every route answers 503.

mod error;
mod invocations;
mod model;
mod query;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use reprise_schema::{RegisterOutcome, Registration, Schema, SchemaError, SchemaStore};
use reprise_service_client::ServiceClient;
use reprise_types::{DeploymentId, MillisSinceEpoch, PartitionId};
use reprise_worker::{WorkerError, WorkerHandle};
use serde::Deserialize;
use tracing::info;

pub use error::AdminError;
use model::*;

/// The admin API versions served: the same routes under `/v1` … `/v4` and at `/` (the newest).
/// The reference's CLI reads them from `/version` and prefixes its paths with the highest one
/// both support.
const MIN_API_VERSION: u32 = 1;
const MAX_API_VERSION: u32 = 4;

/// Where the admin port answers health, besides `/health` (served by the node).
pub const HEALTH_PATHS: [&str; 4] = ["/v1/health", "/v2/health", "/v3/health", "/v4/health"];

/// What the admin API needs to serve requests.
#[derive(Clone)]
pub struct AdminState {
    pub schema: SchemaStore,
    pub service_client: ServiceClient,
    /// This node's partitions, when it runs the worker role.
    pub worker: Option<WorkerHandle>,
    /// The ingress's address (`http://host:port/`), when this node runs the ingress role.
    pub ingress_endpoint: Option<String>,
    /// SQL over this node's invocations, services and deployments (with the worker role).
    pub query: Option<reprise_query::QueryEngine>,
}

/// The API's state, filled in once the node can serve. Cheap to clone.
#[derive(Clone, Default)]
pub struct AdminHandle(Arc<OnceLock<AdminState>>);

impl AdminHandle {
    pub fn set(&self, state: AdminState) {
        // Set once per process; a second call would mean two starts of one node.
        let _ = self.0.set(state);
    }

    fn get(&self) -> Result<&AdminState, AdminError> {
        self.0
            .get()
            .ok_or_else(|| AdminError::Unavailable("the node is starting; try again".into()))
    }
}

/// The admin routes (without `/health`, which the node serves).
pub fn router(handle: AdminHandle) -> Router {
    let api = Router::new()
        .route("/version", get(version))
        .route(
            "/deployments",
            get(list_deployments).post(register_deployment),
        )
        .route(
            "/deployments/{id}",
            get(get_deployment).delete(delete_deployment),
        )
        .route("/services", get(list_services))
        .route("/services/{name}", get(get_service))
        .route("/partitions", get(list_partitions))
        .route("/partitions/{id}/step-down", post(step_down))
        .route("/query", post(query::query))
        .route("/invocations/{id}", delete(invocations::delete))
        .route("/invocations/{id}/{operation}", patch(invocations::patch))
        .with_state(handle);
    (MIN_API_VERSION..=MAX_API_VERSION)
        .fold(Router::new(), |router, version| {
            router.nest(&format!("/v{version}"), api.clone())
        })
        .merge(api)
}

/// For paths no route serves.
pub async fn not_found(uri: Uri) -> AdminError {
    AdminError::NotFound(format!("no admin API at {}", uri.path()))
}

fn worker(state: &AdminState) -> Result<&WorkerHandle, AdminError> {
    state
        .worker
        .as_ref()
        .ok_or_else(|| AdminError::NotFound("this node runs no partitions (no worker role)".into()))
}

async fn list_partitions(
    State(handle): State<AdminHandle>,
) -> Result<Json<PartitionsResponse>, AdminError> {
    let partitions = worker(handle.get()?)?.partitions();
    Ok(Json(PartitionsResponse { partitions }))
}

/// `POST /partitions/{id}/step-down`: this node stops leading the partition; the group elects
/// again. 202: the election is under way.
async fn step_down(
    State(handle): State<AdminHandle>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let id: u16 = id.parse().map_err(|_| {
        AdminError::BadRequest(format!("`{id}` is not a partition id (0 to 65535)"))
    })?;
    let id = PartitionId::new(id);
    match worker(handle.get()?)?.step_down(id) {
        Ok(()) => {
            info!(partition = %id, "stepping down as the partition's leader");
            Ok((
                StatusCode::ACCEPTED,
                Json(StepDownResponse { partition_id: id }),
            )
                .into_response())
        }
        Err(WorkerError::UnknownPartition(_)) => Err(AdminError::NotFound(format!(
            "this node runs no partition {id}"
        ))),
        Err(err) => Err(AdminError::Unavailable(err.to_string())),
    }
}

/// `GET /version`. Served before the node is ready too (then without the ingress endpoint):
/// the CLI reads it first.
async fn version(State(handle): State<AdminHandle>) -> Json<VersionResponse> {
    Json(VersionResponse {
        version: env!("CARGO_PKG_VERSION"),
        min_admin_api_version: MIN_API_VERSION,
        max_admin_api_version: MAX_API_VERSION,
        ingress_endpoint: handle
            .get()
            .ok()
            .and_then(|state| state.ingress_endpoint.clone()),
        features: BTreeMap::new(),
    })
}

async fn register_deployment(
    State(handle): State<AdminHandle>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let state = handle.get()?;
    // The body is JSON whatever content type the client declared: `curl -d` sends
    // `application/x-www-form-urlencoded`, and registering with plain curl must work.
    let request: RegisterDeploymentRequest = serde_json::from_slice(&body).map_err(|err| {
        AdminError::BadRequest(format!(
            "the request body is not a valid registration ({err}); expected JSON like \
             {{\"uri\": \"http://localhost:9080\"}}"
        ))
    })?;
    if request.use_http_11 {
        return Err(AdminError::BadRequest(
            "\"use_http_11\": true is not supported: Reprise talks to deployments over HTTP/2"
                .into(),
        ));
    }
    let uri: Uri = request.uri.parse().map_err(|_| {
        AdminError::BadRequest(format!(
            "`{}` is not a URI; use e.g. http://localhost:9080",
            request.uri
        ))
    })?;
    let additional_headers = request.additional_headers.unwrap_or_default();
    let headers = header_map(&additional_headers)?;
    let discovered = state.service_client.discover(&uri, &headers).await?;

    let services: Vec<String> = discovered
        .endpoint
        .services
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let registration = Registration {
        uri: request.uri.clone(),
        additional_headers,
        metadata: request.metadata.clone().unwrap_or_default(),
        endpoint: discovered.endpoint.clone(),
        sdk_version: discovered.sdk_version.clone(),
        new_id: DeploymentId::new(rand::random()),
        now: MillisSinceEpoch::now(),
        force: request.force.unwrap_or(false),
        breaking: request.breaking,
    };
    let (outcome, schema) = if request.dry_run {
        let mut schema = state.schema.load().await?;
        let outcome = schema.register(registration)?;
        (outcome, schema)
    } else {
        // The schema as written, not re-read: a concurrent change must not make the
        // deployment we just registered look missing.
        state
            .schema
            .update(|schema| {
                let outcome = schema.register(registration.clone())?;
                Ok::<_, SchemaError>((outcome, schema.clone()))
            })
            .await?
    };
    let id = outcome.id();
    info!(deployment = %id, uri = %request.uri, ?services, ?outcome, dry_run = request.dry_run, "deployment registered");

    let status = match outcome {
        RegisterOutcome::Unchanged(_) => StatusCode::OK,
        RegisterOutcome::Created(_) | RegisterOutcome::Overwritten(_) => StatusCode::CREATED,
    };
    let deployment = schema
        .deployment(id)
        .ok_or_else(|| AdminError::Internal(format!("deployment {id} vanished")))?;
    let body = RegisterDeploymentResponse {
        id: id.to_string(),
        services: served_by(&schema, id),
        min_protocol_version: deployment.min_protocol_version,
        max_protocol_version: deployment.max_protocol_version,
        sdk_version: deployment.sdk_version.clone(),
    };
    let location = HeaderValue::from_str(&format!("deployments/{id}"))
        .map_err(|err| AdminError::Internal(err.to_string()))?;
    Ok((status, [(header::LOCATION, location)], Json(body)).into_response())
}

/// The current services whose latest revision `id` serves.
fn served_by(schema: &Schema, id: DeploymentId) -> Vec<ServiceMetadata> {
    schema
        .services()
        .filter(|s| s.deployment_id == id)
        .map(ServiceMetadata::from)
        .collect()
}

fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, AdminError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::try_from(name.as_str()).map_err(|_| {
            AdminError::BadRequest(format!(
                "`{name}` in additional_headers is not a header name"
            ))
        })?;
        let value = HeaderValue::try_from(value.as_str()).map_err(|_| {
            AdminError::BadRequest(format!("the value of `{name}` is not a valid header value"))
        })?;
        map.insert(name, value);
    }
    Ok(map)
}

fn parse_deployment_id(text: &str) -> Result<DeploymentId, AdminError> {
    text.parse()
        .map_err(|err: reprise_types::IdParseError| AdminError::BadRequest(err.to_string()))
}

async fn list_deployments(
    State(handle): State<AdminHandle>,
) -> Result<Json<ListDeploymentsResponse>, AdminError> {
    let schema = handle.get()?.schema.load().await?;
    let deployments = schema
        .deployments()
        .map(|deployment| {
            let services = schema
                .services()
                .filter(|s| s.deployment_id == deployment.id)
                .map(|s| ServiceNameRevision {
                    name: s.service.name.clone(),
                    revision: s.revision,
                })
                .collect();
            DeploymentResponse::new(deployment, services)
        })
        .collect();
    Ok(Json(ListDeploymentsResponse { deployments }))
}

async fn get_deployment(
    State(handle): State<AdminHandle>,
    Path(id): Path<String>,
) -> Result<Json<DeploymentResponse<ServiceMetadata>>, AdminError> {
    let id = parse_deployment_id(&id)?;
    let schema = handle.get()?.schema.load().await?;
    let deployment = schema
        .deployment(id)
        .ok_or(SchemaError::DeploymentNotFound(id))?;
    Ok(Json(DeploymentResponse::new(
        deployment,
        served_by(&schema, id),
    )))
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn delete_deployment(
    State(handle): State<AdminHandle>,
    Path(id): Path<String>,
    query: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, AdminError> {
    let id = parse_deployment_id(&id)?;
    let Query(query) = query.map_err(|rejection| AdminError::BadRequest(rejection.body_text()))?;
    handle
        .get()?
        .schema
        .update(|schema| schema.remove_deployment(id, query.force))
        .await?;
    info!(deployment = %id, force = query.force, "deployment removed");
    Ok(StatusCode::ACCEPTED)
}

async fn list_services(
    State(handle): State<AdminHandle>,
) -> Result<Json<ListServicesResponse>, AdminError> {
    let schema = handle.get()?.schema.load().await?;
    Ok(Json(ListServicesResponse {
        services: schema.services().map(ServiceMetadata::from).collect(),
    }))
}

async fn get_service(
    State(handle): State<AdminHandle>,
    Path(name): Path<String>,
) -> Result<Json<ServiceMetadata>, AdminError> {
    let schema = handle.get()?.schema.load().await?;
    let service = schema
        .service(&name)
        .ok_or(SchemaError::ServiceNotFound(name))?;
    Ok(Json(ServiceMetadata::from(service)))
}
