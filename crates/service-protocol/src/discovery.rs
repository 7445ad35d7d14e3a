//! Discovery: what a deployment says about itself. The server asks `GET {uri}/discover` with
//! [`DISCOVER_ACCEPT`]; the deployment answers with an endpoint manifest (v2, v3 or v4, one JSON
//! shape) that [`parse_manifest`] checks and turns into [`Endpoint`]: its services, their
//! handlers with resolved handler types, and the protocol version to speak with it.
//!
//! Unknown fields are ignored, so a newer SDK's additions do not block registration.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::version::{ServiceProtocolVersion, VersionError, negotiate};

/// The `accept` header of a discovery request: manifest versions 2 to 4.
pub const DISCOVER_ACCEPT: &str = "application/vnd.restate.endpointmanifest.v2+json, \
     application/vnd.restate.endpointmanifest.v3+json, \
     application/vnd.restate.endpointmanifest.v4+json";

const MANIFEST_CONTENT_TYPES: [&str; 3] = [
    "application/vnd.restate.endpointmanifest.v2+json",
    "application/vnd.restate.endpointmanifest.v3+json",
    "application/vnd.restate.endpointmanifest.v4+json",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "the deployment answered discovery with content-type `{0}`, not an endpoint manifest \
         (v2 to v4); is this a Restate SDK endpoint?"
    )]
    ContentType(String),
    #[error("the deployment's endpoint manifest is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error(
        "the endpoint manifest has no `protocolMode`; expected BIDI_STREAM or REQUEST_RESPONSE"
    )]
    MissingProtocolMode,
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error(
        "service name `{0}` is not valid: it must match ^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9._-]*$"
    )]
    ServiceName(String),
    #[error(
        "handler name `{service}/{handler}` is not valid: it must match ^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9_]*$"
    )]
    HandlerName { service: String, handler: String },
    #[error("the endpoint manifest lists service `{0}` twice")]
    DuplicateService(String),
    #[error("service `{service}` lists handler `{handler}` twice")]
    DuplicateHandler { service: String, handler: String },
    #[error(
        "handler `{service}/{handler}` has type {handler_ty:?}, which a {service_ty:?} cannot have"
    )]
    HandlerType {
        service: String,
        handler: String,
        service_ty: ServiceType,
        handler_ty: HandlerType,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProtocolMode {
    BidiStream,
    RequestResponse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceType {
    Service,
    VirtualObject,
    Workflow,
}

impl ServiceType {
    /// Objects and workflows are addressed by key.
    pub fn is_keyed(self) -> bool {
        !matches!(self, ServiceType::Service)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HandlerType {
    Exclusive,
    Shared,
    Workflow,
}

/// What a handler accepts as its request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRules {
    /// When false, an empty body without content-type is accepted.
    pub required: bool,
    /// Accept-style pattern (`*/*`, `application/json`, `text/*`); `None` accepts no body.
    pub content_type: Option<String>,
}

impl Default for InputRules {
    /// What an absent `input` means: anything, or nothing.
    fn default() -> Self {
        Self {
            required: false,
            content_type: Some("*/*".to_owned()),
        }
    }
}

/// The content type the ingress gives a handler's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRules {
    pub content_type: Option<String>,
    pub set_content_type_if_empty: bool,
}

impl Default for OutputRules {
    /// What an absent `output` means.
    fn default() -> Self {
        Self {
            content_type: Some("application/json".to_owned()),
            set_content_type_if_empty: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handler {
    pub name: String,
    pub ty: HandlerType,
    pub input: InputRules,
    pub output: OutputRules,
    /// Per-handler overrides from manifest v3, in milliseconds.
    pub inactivity_timeout_ms: Option<u64>,
    pub abort_timeout_ms: Option<u64>,
    #[serde(default)]
    pub retention: Retention,
    pub documentation: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// How long a completed invocation is kept (manifest v3), in milliseconds; `None` leaves it to
/// the enclosing service, then to the node's configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub journal_ms: Option<u64>,
    pub idempotency_ms: Option<u64>,
    /// A workflow's `run` handler only.
    pub workflow_completion_ms: Option<u64>,
}

impl Retention {
    /// This one's values, the `outer` one's where this one has none.
    pub fn or(self, outer: Retention) -> Retention {
        Retention {
            journal_ms: self.journal_ms.or(outer.journal_ms),
            idempotency_ms: self.idempotency_ms.or(outer.idempotency_ms),
            workflow_completion_ms: self.workflow_completion_ms.or(outer.workflow_completion_ms),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub ty: ServiceType,
    pub handlers: Vec<Handler>,
    pub inactivity_timeout_ms: Option<u64>,
    pub abort_timeout_ms: Option<u64>,
    #[serde(default)]
    pub retention: Retention,
    pub documentation: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

impl Service {
    pub fn handler(&self, name: &str) -> Option<&Handler> {
        self.handlers.iter().find(|h| h.name == name)
    }
}

/// A deployment as discovery describes it, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub protocol_mode: ProtocolMode,
    pub min_protocol_version: u32,
    pub max_protocol_version: u32,
    /// The version Reprise will speak with it.
    pub protocol_version: ServiceProtocolVersion,
    pub services: Vec<Service>,
}

// ---- The wire shape (camelCase JSON) ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    protocol_mode: Option<ProtocolMode>,
    min_protocol_version: u32,
    max_protocol_version: u32,
    services: Vec<RawService>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawService {
    name: String,
    ty: ServiceType,
    handlers: Vec<RawHandler>,
    documentation: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    inactivity_timeout: Option<u64>,
    abort_timeout: Option<u64>,
    journal_retention: Option<u64>,
    idempotency_retention: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHandler {
    name: String,
    ty: Option<HandlerType>,
    input: Option<RawInput>,
    output: Option<RawOutput>,
    documentation: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    inactivity_timeout: Option<u64>,
    abort_timeout: Option<u64>,
    journal_retention: Option<u64>,
    idempotency_retention: Option<u64>,
    workflow_completion_retention: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInput {
    #[serde(default)]
    required: bool,
    content_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOutput {
    content_type: Option<String>,
    #[serde(default)]
    set_content_type_if_empty: bool,
}

/// Checks a discovery response and returns the endpoint it describes.
pub fn parse_manifest(content_type: Option<&str>, body: &[u8]) -> Result<Endpoint, ManifestError> {
    let content_type = content_type.unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !MANIFEST_CONTENT_TYPES
        .iter()
        .any(|known| known.eq_ignore_ascii_case(essence))
    {
        return Err(ManifestError::ContentType(content_type.to_owned()));
    }
    let raw: RawManifest =
        serde_json::from_slice(body).map_err(|err| ManifestError::Json(err.to_string()))?;
    let protocol_mode = raw
        .protocol_mode
        .ok_or(ManifestError::MissingProtocolMode)?;
    let protocol_version = negotiate(raw.min_protocol_version, raw.max_protocol_version)?;

    let mut names = HashSet::new();
    let mut services = Vec::with_capacity(raw.services.len());
    for service in raw.services {
        if !valid_name(&service.name, true) {
            return Err(ManifestError::ServiceName(service.name));
        }
        if !names.insert(service.name.clone()) {
            return Err(ManifestError::DuplicateService(service.name));
        }
        services.push(check_service(service)?);
    }
    Ok(Endpoint {
        protocol_mode,
        min_protocol_version: raw.min_protocol_version,
        max_protocol_version: raw.max_protocol_version,
        protocol_version,
        services,
    })
}

fn check_service(raw: RawService) -> Result<Service, ManifestError> {
    let mut names = HashSet::new();
    let mut handlers = Vec::with_capacity(raw.handlers.len());
    for handler in raw.handlers {
        if !valid_name(&handler.name, false) {
            return Err(ManifestError::HandlerName {
                service: raw.name.clone(),
                handler: handler.name,
            });
        }
        if !names.insert(handler.name.clone()) {
            return Err(ManifestError::DuplicateHandler {
                service: raw.name.clone(),
                handler: handler.name,
            });
        }
        let ty =
            resolve_handler_type(raw.ty, handler.ty).ok_or_else(|| ManifestError::HandlerType {
                service: raw.name.clone(),
                handler: handler.name.clone(),
                service_ty: raw.ty,
                handler_ty: handler.ty.unwrap_or(HandlerType::Shared),
            })?;
        handlers.push(Handler {
            name: handler.name,
            ty,
            input: handler
                .input
                .map(|input| InputRules {
                    required: input.required,
                    content_type: input.content_type,
                })
                .unwrap_or_default(),
            output: handler
                .output
                .map(|output| OutputRules {
                    content_type: output.content_type,
                    set_content_type_if_empty: output.set_content_type_if_empty,
                })
                .unwrap_or_default(),
            inactivity_timeout_ms: handler.inactivity_timeout,
            abort_timeout_ms: handler.abort_timeout,
            retention: Retention {
                journal_ms: handler.journal_retention,
                idempotency_ms: handler.idempotency_retention,
                workflow_completion_ms: handler.workflow_completion_retention,
            },
            documentation: handler.documentation,
            metadata: handler.metadata,
        });
    }
    Ok(Service {
        name: raw.name,
        ty: raw.ty,
        handlers,
        inactivity_timeout_ms: raw.inactivity_timeout,
        abort_timeout_ms: raw.abort_timeout,
        retention: Retention {
            journal_ms: raw.journal_retention,
            idempotency_ms: raw.idempotency_retention,
            workflow_completion_ms: None,
        },
        documentation: raw.documentation,
        metadata: raw.metadata,
    })
}

/// Services: shared only. Objects: exclusive (the default) or shared. Workflows: shared (the
/// default) or the one workflow handler.
fn resolve_handler_type(service: ServiceType, handler: Option<HandlerType>) -> Option<HandlerType> {
    use HandlerType::*;
    match (service, handler) {
        (ServiceType::Service, None | Some(Shared)) => Some(Shared),
        (ServiceType::VirtualObject, None | Some(Exclusive)) => Some(Exclusive),
        (ServiceType::VirtualObject, Some(Shared)) => Some(Shared),
        (ServiceType::Workflow, None | Some(Shared)) => Some(Shared),
        (ServiceType::Workflow, Some(Workflow)) => Some(Workflow),
        _ => None,
    }
}

/// `^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9_]*$` for handlers; services also allow `.` and `-`.
fn valid_name(name: &str, is_service: bool) -> bool {
    let bytes = name.as_bytes();
    let rest_start = match bytes {
        [first, ..] if first.is_ascii_alphabetic() => 1,
        [b'_', second, ..] if second.is_ascii_alphanumeric() => 2,
        _ => return false,
    };
    bytes[rest_start..].iter().all(|b| {
        b.is_ascii_alphanumeric() || *b == b'_' || (is_service && (*b == b'.' || *b == b'-'))
    })
}
