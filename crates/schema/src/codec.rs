//! The schema's stored form: prost messages of `proto/schema.proto`, converted to and from the
//! registry's types here and nowhere else. Decoding checks what it takes (ids, enum values,
//! protocol versions), so a damaged value is a [`DecodeError`] saying what is wrong, never a
//! panic. Values written before this format (JSON, the development format) still decode; the
//! next change writes them in this one.

use prost::Message;
use reprise_service_protocol::ServiceProtocolVersion;
use reprise_service_protocol::discovery::{
    Handler, HandlerType, InputRules, OutputRules, ProtocolMode, Retention, Service, ServiceType,
};
use reprise_types::{DeploymentId, MillisSinceEpoch};

use crate::registry::{Deployment, Schema, ServiceSchema};

/// Generated from `proto/schema.proto`.
#[allow(clippy::enum_variant_names)]
mod proto {
    include!(concat!(env!("OUT_DIR"), "/reprise.schema.v1.rs"));
}

/// A stored schema that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

pub fn encode(schema: &Schema) -> Vec<u8> {
    proto::Schema {
        deployments: schema.deployments().map(deployment_to).collect(),
        services: schema.services().map(revision_to).collect(),
    }
    .encode_to_vec()
}

pub fn decode(bytes: &[u8]) -> Result<Schema, DecodeError> {
    if bytes.first() == Some(&b'{') {
        // A JSON document: the development format. A protobuf `Schema` never starts with `{`
        // (0x7b would be field 15, which it does not have).
        return serde_json::from_slice(bytes)
            .map_err(|err| DecodeError(format!("a schema in the JSON format: {err}")));
    }
    let schema = proto::Schema::decode(bytes).map_err(|err| DecodeError(err.to_string()))?;
    let deployments = schema
        .deployments
        .into_iter()
        .map(deployment_from)
        .collect::<Result<Vec<_>, _>>()?;
    let services = schema
        .services
        .into_iter()
        .map(revision_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Schema::from_parts(deployments, services))
}

fn id_to(id: DeploymentId) -> Vec<u8> {
    id.as_u128().to_be_bytes().to_vec()
}

fn id_from(bytes: &[u8]) -> Result<DeploymentId, DecodeError> {
    let raw: [u8; 16] = bytes
        .try_into()
        .map_err(|_| DecodeError(format!("a deployment id of {} bytes, not 16", bytes.len())))?;
    Ok(DeploymentId::new(u128::from_be_bytes(raw)))
}

fn deployment_to(deployment: &Deployment) -> proto::Deployment {
    proto::Deployment {
        id: id_to(deployment.id),
        uri: deployment.uri.clone(),
        additional_headers: deployment.additional_headers.clone(),
        metadata: deployment.metadata.clone(),
        protocol_mode: match deployment.protocol_mode {
            ProtocolMode::BidiStream => proto::ProtocolMode::BidiStream,
            ProtocolMode::RequestResponse => proto::ProtocolMode::RequestResponse,
        } as i32,
        min_protocol_version: deployment.min_protocol_version,
        max_protocol_version: deployment.max_protocol_version,
        protocol_version: deployment.protocol_version.as_u32(),
        sdk_version: deployment.sdk_version.clone(),
        created_at: deployment.created_at.as_u64(),
        services: deployment.services.iter().map(service_to).collect(),
    }
}

fn deployment_from(deployment: proto::Deployment) -> Result<Deployment, DecodeError> {
    let id = id_from(&deployment.id)?;
    let protocol_mode = match proto::ProtocolMode::try_from(deployment.protocol_mode) {
        Ok(proto::ProtocolMode::BidiStream) => ProtocolMode::BidiStream,
        Ok(proto::ProtocolMode::RequestResponse) => ProtocolMode::RequestResponse,
        _ => {
            return Err(DecodeError(format!(
                "deployment {id} has an unknown protocol mode {}",
                deployment.protocol_mode
            )));
        }
    };
    let protocol_version = ServiceProtocolVersion::from_u32(deployment.protocol_version)
        .ok_or_else(|| {
            DecodeError(format!(
                "deployment {id} speaks protocol version {}, which this build does not know",
                deployment.protocol_version
            ))
        })?;
    Ok(Deployment {
        id,
        uri: deployment.uri,
        additional_headers: deployment.additional_headers,
        metadata: deployment.metadata,
        protocol_mode,
        min_protocol_version: deployment.min_protocol_version,
        max_protocol_version: deployment.max_protocol_version,
        protocol_version,
        sdk_version: deployment.sdk_version,
        created_at: MillisSinceEpoch::new(deployment.created_at),
        services: deployment
            .services
            .into_iter()
            .map(service_from)
            .collect::<Result<_, _>>()?,
    })
}

fn revision_to(revision: &ServiceSchema) -> proto::ServiceRevision {
    proto::ServiceRevision {
        service: Some(service_to(&revision.service)),
        revision: revision.revision,
        deployment_id: id_to(revision.deployment_id),
    }
}

fn revision_from(revision: proto::ServiceRevision) -> Result<ServiceSchema, DecodeError> {
    let service = revision
        .service
        .ok_or_else(|| DecodeError("a service revision without its service".into()))?;
    Ok(ServiceSchema {
        service: service_from(service)?,
        revision: revision.revision,
        deployment_id: id_from(&revision.deployment_id)?,
    })
}

fn retention_to(retention: Retention) -> proto::Retention {
    proto::Retention {
        journal_ms: retention.journal_ms,
        idempotency_ms: retention.idempotency_ms,
        workflow_completion_ms: retention.workflow_completion_ms,
    }
}

fn retention_from(retention: Option<proto::Retention>) -> Retention {
    let retention = retention.unwrap_or_default();
    Retention {
        journal_ms: retention.journal_ms,
        idempotency_ms: retention.idempotency_ms,
        workflow_completion_ms: retention.workflow_completion_ms,
    }
}

fn service_to(service: &Service) -> proto::Service {
    proto::Service {
        name: service.name.clone(),
        ty: match service.ty {
            ServiceType::Service => proto::ServiceType::Service,
            ServiceType::VirtualObject => proto::ServiceType::VirtualObject,
            ServiceType::Workflow => proto::ServiceType::Workflow,
        } as i32,
        handlers: service.handlers.iter().map(handler_to).collect(),
        inactivity_timeout_ms: service.inactivity_timeout_ms,
        abort_timeout_ms: service.abort_timeout_ms,
        retention: Some(retention_to(service.retention)),
        documentation: service.documentation.clone(),
        metadata: service.metadata.clone(),
    }
}

fn service_from(service: proto::Service) -> Result<Service, DecodeError> {
    let ty = match proto::ServiceType::try_from(service.ty) {
        Ok(proto::ServiceType::Service) => ServiceType::Service,
        Ok(proto::ServiceType::VirtualObject) => ServiceType::VirtualObject,
        Ok(proto::ServiceType::Workflow) => ServiceType::Workflow,
        _ => {
            return Err(DecodeError(format!(
                "service `{}` has an unknown type {}",
                service.name, service.ty
            )));
        }
    };
    let handlers = service
        .handlers
        .into_iter()
        .map(|handler| handler_from(&service.name, handler))
        .collect::<Result<_, _>>()?;
    Ok(Service {
        name: service.name,
        ty,
        handlers,
        inactivity_timeout_ms: service.inactivity_timeout_ms,
        abort_timeout_ms: service.abort_timeout_ms,
        retention: retention_from(service.retention),
        documentation: service.documentation,
        metadata: service.metadata,
    })
}

fn handler_to(handler: &Handler) -> proto::Handler {
    proto::Handler {
        name: handler.name.clone(),
        ty: match handler.ty {
            HandlerType::Exclusive => proto::HandlerType::Exclusive,
            HandlerType::Shared => proto::HandlerType::Shared,
            HandlerType::Workflow => proto::HandlerType::WorkflowRun,
        } as i32,
        input_required: handler.input.required,
        input_content_type: handler.input.content_type.clone(),
        output_content_type: handler.output.content_type.clone(),
        output_set_content_type_if_empty: handler.output.set_content_type_if_empty,
        inactivity_timeout_ms: handler.inactivity_timeout_ms,
        abort_timeout_ms: handler.abort_timeout_ms,
        retention: Some(retention_to(handler.retention)),
        documentation: handler.documentation.clone(),
        metadata: handler.metadata.clone(),
    }
}

fn handler_from(service: &str, handler: proto::Handler) -> Result<Handler, DecodeError> {
    let ty = match proto::HandlerType::try_from(handler.ty) {
        Ok(proto::HandlerType::Exclusive) => HandlerType::Exclusive,
        Ok(proto::HandlerType::Shared) => HandlerType::Shared,
        Ok(proto::HandlerType::WorkflowRun) => HandlerType::Workflow,
        _ => {
            return Err(DecodeError(format!(
                "handler `{service}/{}` has an unknown type {}",
                handler.name, handler.ty
            )));
        }
    };
    Ok(Handler {
        name: handler.name,
        ty,
        input: InputRules {
            required: handler.input_required,
            content_type: handler.input_content_type,
        },
        output: OutputRules {
            content_type: handler.output_content_type,
            set_content_type_if_empty: handler.output_set_content_type_if_empty,
        },
        inactivity_timeout_ms: handler.inactivity_timeout_ms,
        abort_timeout_ms: handler.abort_timeout_ms,
        retention: retention_from(handler.retention),
        documentation: handler.documentation,
        metadata: handler.metadata,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use reprise_service_protocol::parse_manifest;

    use super::*;
    use crate::registry::Registration;

    /// A schema using every field: two deployments, retention and timeouts, documentation,
    /// metadata, input and output rules, every service and handler type.
    fn full_schema() -> Schema {
        let manifest = r#"{"protocolMode":"REQUEST_RESPONSE","minProtocolVersion":5,"maxProtocolVersion":6,
            "services":[
              {"name":"Cart","ty":"VIRTUAL_OBJECT","documentation":"a cart","metadata":{"team":"shop"},
               "inactivityTimeout":1000,"abortTimeout":2000,"journalRetention":3000,"idempotencyRetention":4000,
               "handlers":[
                 {"name":"add","ty":"EXCLUSIVE","input":{"required":true,"contentType":"application/json"},
                  "output":{"contentType":"text/plain","setContentTypeIfEmpty":true},
                  "inactivityTimeout":10,"abortTimeout":20,"journalRetention":30,"documentation":"adds",
                  "metadata":{"k":"v"}},
                 {"name":"get","ty":"SHARED","input":{},"output":{}}]},
              {"name":"Signup","ty":"WORKFLOW","handlers":[{"name":"run","ty":"WORKFLOW","workflowCompletionRetention":5000}]},
              {"name":"Greeter","ty":"SERVICE","handlers":[{"name":"greet"}]}]}"#;
        let endpoint = parse_manifest(
            Some("application/vnd.restate.endpointmanifest.v3+json"),
            manifest.as_bytes(),
        )
        .expect("valid manifest");
        let mut schema = Schema::default();
        for (id, uri) in [(7u128 << 100 | 3, "http://a:9080"), (9, "https://b")] {
            schema
                .register(Registration {
                    uri: uri.into(),
                    additional_headers: BTreeMap::from([("x-key".into(), "secret".into())]),
                    metadata: BTreeMap::from([("owner".into(), "me".into())]),
                    endpoint: endpoint.clone(),
                    sdk_version: (id == 9).then(|| "restate-sdk-rust/0.13.0".into()),
                    new_id: DeploymentId::new(id),
                    now: MillisSinceEpoch::new(1_700_000_000_000),
                    force: false,
                    breaking: true,
                })
                .expect("registers");
        }
        schema
    }

    #[test]
    fn a_schema_decodes_to_what_was_encoded() {
        let schema = full_schema();
        assert_eq!(schema.deployments().count(), 2);
        // The manifest's optional fields made it in, so the round trip covers them.
        let cart = &schema.service("Cart").expect("registered").service;
        assert_eq!(cart.retention.journal_ms, Some(3000));
        assert_eq!(cart.inactivity_timeout_ms, Some(1000));
        let add = cart.handler("add").expect("handler");
        assert_eq!(add.output.content_type.as_deref(), Some("text/plain"));
        assert_eq!(add.documentation.as_deref(), Some("adds"));
        let run = &schema
            .service("Signup")
            .expect("registered")
            .service
            .handlers[0];
        assert_eq!(run.retention.workflow_completion_ms, Some(5000));
        assert_eq!(decode(&encode(&schema)), Ok(schema));
        assert_eq!(decode(&encode(&Schema::default())), Ok(Schema::default()));
    }

    #[test]
    fn a_schema_stored_as_json_by_an_earlier_build_still_reads() {
        let schema = full_schema();
        let json = serde_json::to_vec(&schema).expect("serializes");
        assert_eq!(decode(&json), Ok(schema));
    }

    #[test]
    fn damaged_values_are_errors_that_say_what_is_wrong() {
        assert!(decode(&[0x0a, 0x05, 0x0a]).is_err(), "truncated");
        let bad_id = proto::Schema {
            deployments: vec![proto::Deployment {
                id: vec![1, 2, 3],
                ..Default::default()
            }],
            services: vec![],
        };
        let err = decode(&bad_id.encode_to_vec()).expect_err("refused");
        assert!(err.to_string().contains("3 bytes"), "{err}");
        let bad_version = proto::Schema {
            deployments: vec![proto::Deployment {
                id: vec![0; 16],
                protocol_mode: proto::ProtocolMode::BidiStream as i32,
                protocol_version: 99,
                ..Default::default()
            }],
            services: vec![],
        };
        let err = decode(&bad_version.encode_to_vec()).expect_err("refused");
        assert!(err.to_string().contains("version 99"), "{err}");
        let bad_type = proto::Schema {
            deployments: vec![],
            services: vec![proto::ServiceRevision {
                service: Some(proto::Service {
                    name: "S".into(),
                    ty: 42,
                    ..Default::default()
                }),
                revision: 1,
                deployment_id: vec![0; 16],
            }],
        };
        let err = decode(&bad_type.encode_to_vec()).expect_err("refused");
        assert!(err.to_string().contains("unknown type 42"), "{err}");
    }
}
