//! Which handler an invocation runs and how long it is kept, resolved against the schema: the
//! one place the ingress (for requests) and the invoker (for calls and sends from handlers)
//! turn a service, handler and key into an [`InvocationTarget`] and a [`Retention`].

use reprise_partition_processor::{HandlerType, InvocationTarget, Retention, ids};
use reprise_schema::{Schema, ServiceSchema};
use reprise_service_protocol::discovery::{self, Handler, ServiceType};
use reprise_types::{InvocationId, PartitionKey};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("service `{0}` not found")]
    UnknownService(String),
    #[error("service `{service}` has no handler `{handler}`")]
    UnknownHandler { service: String, handler: String },
    #[error("`{0}` is a virtual object or workflow: a call to it needs a key")]
    MissingKey(String),
}

/// A handler as an invocation of it is created.
#[derive(Debug, Clone)]
pub struct Resolved<'a> {
    pub service: &'a ServiceSchema,
    pub handler: &'a Handler,
    pub target: InvocationTarget,
    pub retention: Retention,
}

impl Resolved<'_> {
    /// Whether this is a workflow's `run` handler: one run per workflow key.
    pub fn is_workflow_run(&self) -> bool {
        self.handler.ty == discovery::HandlerType::Workflow
    }

    /// The id of a new invocation of this target: a workflow run's is its workflow's (so there
    /// is one per key), an idempotent request's is derived from the idempotency key (so a retry
    /// is the same invocation), any other is new, in the partition of its key (or a random one).
    pub fn invocation_id(&self, idempotency_key: Option<&str>) -> InvocationId {
        let key = self.target.key.as_deref();
        match (key, idempotency_key) {
            (Some(key), _) if self.is_workflow_run() => {
                ids::workflow_invocation_id(&self.target.service, key)
            }
            (_, Some(idempotency_key)) => ids::idempotent_invocation_id(
                &self.target.service,
                key,
                &self.target.handler,
                idempotency_key,
            ),
            (Some(key), None) => InvocationId::new(PartitionKey::from_key(key), rand::random()),
            (None, None) => InvocationId::new(PartitionKey::new(rand::random()), rand::random()),
        }
    }
}

/// Resolves `service`/`handler`; `key` is used only by virtual objects and workflows, which
/// need one.
pub fn resolve<'a>(
    schema: &'a Schema,
    service: &str,
    handler: &str,
    key: Option<&str>,
    defaults: Retention,
) -> Result<Resolved<'a>, TargetError> {
    let found = schema
        .service(service)
        .ok_or_else(|| TargetError::UnknownService(service.to_owned()))?;
    let handler_schema = found
        .handler(handler)
        .ok_or_else(|| TargetError::UnknownHandler {
            service: service.to_owned(),
            handler: handler.to_owned(),
        })?;
    let key = match found.service.ty {
        ServiceType::Service => None,
        ServiceType::VirtualObject | ServiceType::Workflow => Some(
            key.ok_or_else(|| TargetError::MissingKey(service.to_owned()))?
                .to_owned(),
        ),
    };
    Ok(Resolved {
        service: found,
        handler: handler_schema,
        target: InvocationTarget {
            service: service.to_owned(),
            handler: handler.to_owned(),
            key,
            handler_type: match handler_schema.ty {
                discovery::HandlerType::Shared => HandlerType::Shared,
                discovery::HandlerType::Exclusive => HandlerType::Exclusive,
                discovery::HandlerType::Workflow => HandlerType::Workflow,
            },
        },
        retention: retention(
            handler_schema.ty,
            handler_schema.retention.or(found.service.retention),
            defaults,
        ),
    })
}

/// What an invocation of a handler keeps once completed: the manifest's retention (the
/// workflow completion retention for a workflow's `run`, the idempotency retention otherwise),
/// else the node's defaults; the journal never outlives the status.
fn retention(
    ty: discovery::HandlerType,
    declared: discovery::Retention,
    defaults: Retention,
) -> Retention {
    let completion = match ty {
        discovery::HandlerType::Workflow => declared.workflow_completion_ms,
        _ => declared.idempotency_ms,
    };
    let completion_ms = completion.unwrap_or(defaults.completion_ms);
    let journal_ms = declared.journal_ms.unwrap_or(defaults.journal_ms);
    Retention {
        completion_ms,
        journal_ms: journal_ms.min(completion_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Retention = Retention {
        completion_ms: 86_400_000,
        journal_ms: 0,
    };

    #[test]
    fn retention_comes_from_the_manifest_then_the_defaults() {
        let none = discovery::Retention::default();
        assert_eq!(
            retention(discovery::HandlerType::Exclusive, none, DEFAULTS),
            DEFAULTS
        );
        let declared = discovery::Retention {
            journal_ms: Some(5_000),
            idempotency_ms: Some(60_000),
            workflow_completion_ms: Some(120_000),
        };
        assert_eq!(
            retention(discovery::HandlerType::Shared, declared, DEFAULTS),
            Retention {
                completion_ms: 60_000,
                journal_ms: 5_000
            }
        );
        assert_eq!(
            retention(discovery::HandlerType::Workflow, declared, DEFAULTS),
            Retention {
                completion_ms: 120_000,
                journal_ms: 5_000
            }
        );
        // The journal never outlives the status.
        let long_journal = discovery::Retention {
            journal_ms: Some(u64::MAX),
            ..none
        };
        assert_eq!(
            retention(discovery::HandlerType::Exclusive, long_journal, DEFAULTS).journal_ms,
            DEFAULTS.completion_ms
        );
    }
}
