//! The JSON shapes of the admin API, named and spelled as the reference system's clients
//! expect them (snake_case fields; `Service`/`VirtualObject`/`Workflow` type names).

use std::collections::BTreeMap;

use reprise_schema::{Deployment, ServiceSchema};
use reprise_service_protocol::discovery::{
    Handler, HandlerType, InputRules, ProtocolMode, ServiceType,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterDeploymentRequest {
    pub uri: String,
    #[serde(default)]
    pub additional_headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub use_http_11: bool,
    #[serde(default)]
    pub force: Option<bool>,
    #[serde(default)]
    pub breaking: bool,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
pub struct RegisterDeploymentResponse {
    pub id: String,
    pub services: Vec<ServiceMetadata>,
    pub min_protocol_version: u32,
    pub max_protocol_version: u32,
    pub sdk_version: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ServiceMetadata {
    pub name: String,
    pub ty: &'static str,
    pub handlers: Vec<HandlerMetadata>,
    pub deployment_id: String,
    pub revision: u32,
    pub public: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documentation: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct HandlerMetadata {
    pub name: String,
    pub ty: &'static str,
    pub public: bool,
    pub input_description: String,
    pub output_description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documentation: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ServiceNameRevision {
    pub name: String,
    pub revision: u32,
}

#[derive(Debug, Serialize)]
pub struct DeploymentResponse<S> {
    pub id: String,
    pub uri: String,
    pub protocol_type: &'static str,
    pub http_version: &'static str,
    pub additional_headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// RFC 3339, as the reference's CLI parses it.
    pub created_at: String,
    pub min_protocol_version: u32,
    pub max_protocol_version: u32,
    pub sdk_version: Option<String>,
    pub services: Vec<S>,
}

#[derive(Debug, Serialize)]
pub struct ListDeploymentsResponse {
    pub deployments: Vec<DeploymentResponse<ServiceNameRevision>>,
}

#[derive(Debug, Serialize)]
pub struct ListServicesResponse {
    pub services: Vec<ServiceMetadata>,
}

#[derive(Debug, Serialize)]
pub struct VersionResponse {
    pub version: &'static str,
    pub min_admin_api_version: u32,
    pub max_admin_api_version: u32,
    pub ingress_endpoint: Option<String>,
    /// Experimental features and whether they are on: none yet, but the reference's CLI
    /// requires the field.
    pub features: BTreeMap<String, bool>,
}

fn service_type_name(ty: ServiceType) -> &'static str {
    match ty {
        ServiceType::Service => "Service",
        ServiceType::VirtualObject => "VirtualObject",
        ServiceType::Workflow => "Workflow",
    }
}

fn handler_type_name(ty: HandlerType) -> &'static str {
    match ty {
        HandlerType::Exclusive => "Exclusive",
        HandlerType::Shared => "Shared",
        HandlerType::Workflow => "Workflow",
    }
}

fn input_description(input: &InputRules) -> String {
    match (&input.content_type, input.required) {
        (None, _) => "none".to_owned(),
        (Some(ct), true) => format!("value with content-type matching {ct}"),
        (Some(ct), false) => format!("none, or value with content-type matching {ct}"),
    }
}

fn handler_metadata(handler: &Handler) -> HandlerMetadata {
    HandlerMetadata {
        name: handler.name.clone(),
        ty: handler_type_name(handler.ty),
        public: true,
        input_description: input_description(&handler.input),
        output_description: match &handler.output.content_type {
            Some(ct) => format!("value with content-type {ct}"),
            None => "value without content-type".to_owned(),
        },
        documentation: handler.documentation.clone(),
    }
}

impl From<&ServiceSchema> for ServiceMetadata {
    fn from(schema: &ServiceSchema) -> Self {
        let service = &schema.service;
        ServiceMetadata {
            name: service.name.clone(),
            ty: service_type_name(service.ty),
            handlers: service.handlers.iter().map(handler_metadata).collect(),
            deployment_id: schema.deployment_id.to_string(),
            revision: schema.revision,
            public: true,
            documentation: service.documentation.clone(),
            metadata: service.metadata.clone(),
        }
    }
}

impl<S> DeploymentResponse<S> {
    pub fn new(deployment: &Deployment, services: Vec<S>) -> Self {
        DeploymentResponse {
            id: deployment.id.to_string(),
            uri: deployment.uri.clone(),
            protocol_type: match deployment.protocol_mode {
                ProtocolMode::BidiStream => "BidiStream",
                ProtocolMode::RequestResponse => "RequestResponse",
            },
            http_version: "HTTP/2.0",
            additional_headers: deployment.additional_headers.clone(),
            metadata: deployment.metadata.clone(),
            created_at: rfc3339(deployment.created_at),
            min_protocol_version: deployment.min_protocol_version,
            max_protocol_version: deployment.max_protocol_version,
            sdk_version: deployment.sdk_version.clone(),
            services,
        }
    }
}

/// A time as RFC 3339 in UTC with milliseconds (`2026-12-01T16:20:00.123Z`).
fn rfc3339(time: reprise_types::MillisSinceEpoch) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(time.as_u64());
    humantime::format_rfc3339_millis(at).to_string()
}

#[derive(Serialize)]
pub struct PartitionsResponse {
    pub partitions: Vec<reprise_worker::PartitionState>,
}

#[derive(Serialize)]
pub struct StepDownResponse {
    pub partition_id: reprise_types::PartitionId,
}
