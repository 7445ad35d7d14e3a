//! The registry of deployments and services.

use std::collections::BTreeMap;

use reprise_service_protocol::ServiceProtocolVersion;
use reprise_service_protocol::discovery::{Endpoint, Handler, HandlerType, ProtocolMode, Service};
use reprise_types::{DeploymentId, MillisSinceEpoch};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: DeploymentId,
    pub uri: String,
    pub additional_headers: BTreeMap<String, String>,
    /// Free-form labels given at registration.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub protocol_mode: ProtocolMode,
    pub min_protocol_version: u32,
    pub max_protocol_version: u32,
    /// The protocol version invocations speak with this deployment.
    pub protocol_version: ServiceProtocolVersion,
    /// From the deployment's `x-restate-server` header.
    pub sdk_version: Option<String>,
    pub created_at: MillisSinceEpoch,
    /// The services as this deployment described them when it was registered.
    pub services: Vec<Service>,
}

/// The current revision of a service and the deployment that serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSchema {
    pub service: Service,
    pub revision: u32,
    pub deployment_id: DeploymentId,
}

impl ServiceSchema {
    pub fn handler(&self, name: &str) -> Option<&Handler> {
        self.service.handler(name)
    }
}

/// What registering a deployment asks for.
#[derive(Debug, Clone)]
pub struct Registration {
    pub uri: String,
    pub additional_headers: BTreeMap<String, String>,
    pub metadata: BTreeMap<String, String>,
    pub endpoint: Endpoint,
    pub sdk_version: Option<String>,
    /// The id a new deployment gets (ignored when an existing one is returned or overwritten).
    pub new_id: DeploymentId,
    pub now: MillisSinceEpoch,
    /// Overwrite an existing deployment at the same URI; implies `breaking`.
    pub force: bool,
    /// Accept breaking changes to existing services.
    pub breaking: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    Created(DeploymentId),
    /// The same deployment was registered already; nothing changed.
    Unchanged(DeploymentId),
    /// `force` replaced the deployment at the same URI in place.
    Overwritten(DeploymentId),
}

impl RegisterOutcome {
    pub fn id(self) -> DeploymentId {
        match self {
            RegisterOutcome::Created(id)
            | RegisterOutcome::Unchanged(id)
            | RegisterOutcome::Overwritten(id) => id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "registering this deployment would change service `{service}` incompatibly ({reason}); \
         register with \"breaking\": true or \"force\": true to accept it"
    )]
    Breaking { service: String, reason: String },
    #[error("deployment {0} does not exist")]
    DeploymentNotFound(DeploymentId),
    #[error("service `{0}` does not exist")]
    ServiceNotFound(String),
    #[error(
        "deployment {id} still serves the latest revision of {services:?}; remove it with \
         force=true to remove those services too"
    )]
    DeploymentInUse {
        id: DeploymentId,
        services: Vec<String>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    deployments: BTreeMap<DeploymentId, Deployment>,
    services: BTreeMap<String, ServiceSchema>,
}

impl Schema {
    /// A schema of these deployments and service revisions (its stored form decoded).
    pub(crate) fn from_parts(deployments: Vec<Deployment>, services: Vec<ServiceSchema>) -> Self {
        Self {
            deployments: deployments.into_iter().map(|d| (d.id, d)).collect(),
            services: services
                .into_iter()
                .map(|s| (s.service.name.clone(), s))
                .collect(),
        }
    }

    pub fn deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.deployments.values()
    }

    pub fn deployment(&self, id: DeploymentId) -> Option<&Deployment> {
        self.deployments.get(&id)
    }

    pub fn services(&self) -> impl Iterator<Item = &ServiceSchema> {
        self.services.values()
    }

    pub fn service(&self, name: &str) -> Option<&ServiceSchema> {
        self.services.get(name)
    }

    /// Registers a deployment and the services it provides.
    pub fn register(&mut self, registration: Registration) -> Result<RegisterOutcome, SchemaError> {
        let existing = self
            .deployments
            .values()
            .find(|d| {
                normalize_uri(&d.uri) == normalize_uri(&registration.uri)
                    && d.additional_headers == registration.additional_headers
            })
            .map(|d| d.id);
        if let Some(id) = existing
            && !registration.force
        {
            return Ok(RegisterOutcome::Unchanged(id));
        }
        let allow_breaking = registration.breaking || registration.force;
        if !allow_breaking {
            for service in &registration.endpoint.services {
                if let Some(current) = self.services.get(&service.name)
                    && let Some(reason) = breaking_change(&current.service, service)
                {
                    return Err(SchemaError::Breaking {
                        service: service.name.clone(),
                        reason,
                    });
                }
            }
        }

        let id = existing.unwrap_or(registration.new_id);
        // Overwriting in place: the services only the old version provided go away.
        if existing.is_some() {
            let provided: Vec<&str> = registration
                .endpoint
                .services
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            self.services
                .retain(|name, s| s.deployment_id != id || provided.contains(&name.as_str()));
        }
        for service in &registration.endpoint.services {
            let revision = self
                .services
                .get(&service.name)
                .map_or(1, |current| current.revision.saturating_add(1));
            self.services.insert(
                service.name.clone(),
                ServiceSchema {
                    service: service.clone(),
                    revision,
                    deployment_id: id,
                },
            );
        }
        let endpoint = registration.endpoint;
        self.deployments.insert(
            id,
            Deployment {
                id,
                uri: registration.uri,
                additional_headers: registration.additional_headers,
                metadata: registration.metadata,
                protocol_mode: endpoint.protocol_mode,
                min_protocol_version: endpoint.min_protocol_version,
                max_protocol_version: endpoint.max_protocol_version,
                protocol_version: endpoint.protocol_version,
                sdk_version: registration.sdk_version,
                created_at: registration.now,
                services: endpoint.services,
            },
        );
        Ok(if existing.is_some() {
            RegisterOutcome::Overwritten(id)
        } else {
            RegisterOutcome::Created(id)
        })
    }

    /// Removes a deployment. Services whose latest revision it serves are removed with it, but
    /// only when `force` is set.
    pub fn remove_deployment(&mut self, id: DeploymentId, force: bool) -> Result<(), SchemaError> {
        if !self.deployments.contains_key(&id) {
            return Err(SchemaError::DeploymentNotFound(id));
        }
        let served: Vec<String> = self
            .services
            .values()
            .filter(|s| s.deployment_id == id)
            .map(|s| s.service.name.clone())
            .collect();
        if !served.is_empty() && !force {
            return Err(SchemaError::DeploymentInUse {
                id,
                services: served,
            });
        }
        self.services.retain(|_, s| s.deployment_id != id);
        self.deployments.remove(&id);
        Ok(())
    }
}

/// Why `next` would break callers of `current`, if it would.
fn breaking_change(current: &Service, next: &Service) -> Option<String> {
    if current.ty != next.ty {
        return Some(format!(
            "its type would change from {:?} to {:?}",
            current.ty, next.ty
        ));
    }
    for handler in &current.handlers {
        match next.handler(&handler.name) {
            None => return Some(format!("handler `{}` would be removed", handler.name)),
            Some(new) if new.ty != handler.ty => {
                return Some(format!(
                    "handler `{}` would change from {} to {}",
                    handler.name,
                    handler_type_name(handler.ty),
                    handler_type_name(new.ty)
                ));
            }
            Some(_) => {}
        }
    }
    None
}

fn handler_type_name(ty: HandlerType) -> &'static str {
    match ty {
        HandlerType::Exclusive => "exclusive",
        HandlerType::Shared => "shared",
        HandlerType::Workflow => "workflow",
    }
}

/// A deployment URI as registrations are compared: scheme and host in lower case, without the
/// scheme's default port, without trailing slashes — so `http://Host:80/` and `http://host`
/// are one endpoint.
pub fn normalize_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.trim_end_matches('/').to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, authority),
    };
    let host = host.to_ascii_lowercase();
    let host = match (scheme.as_str(), host.rsplit_once(':')) {
        ("http", Some((name, "80"))) | ("https", Some((name, "443"))) => name.to_owned(),
        _ => host,
    };
    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    format!("{scheme}://{userinfo}{host}{}", path.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reprise_service_protocol::parse_manifest;

    fn endpoint(services: &str) -> Endpoint {
        let manifest = format!(
            r#"{{"protocolMode":"BIDI_STREAM","minProtocolVersion":5,"maxProtocolVersion":6,"services":{services}}}"#
        );
        parse_manifest(
            Some("application/vnd.restate.endpointmanifest.v3+json"),
            manifest.as_bytes(),
        )
        .expect("valid manifest")
    }

    fn registration(uri: &str, id: u128, services: &str) -> Registration {
        Registration {
            uri: uri.into(),
            additional_headers: BTreeMap::new(),
            metadata: BTreeMap::new(),
            endpoint: endpoint(services),
            sdk_version: Some("restate-sdk-rust/0.13.0".into()),
            new_id: DeploymentId::new(id),
            now: MillisSinceEpoch::new(1),
            force: false,
            breaking: false,
        }
    }

    const GREETER: &str =
        r#"[{"name":"Greeter","ty":"SERVICE","handlers":[{"name":"greet"},{"name":"wave"}]}]"#;

    #[test]
    fn one_endpoint_written_differently_is_one_deployment() {
        for (a, b) in [
            ("http://host:9080", "http://host:9080/"),
            ("http://Host:9080", "HTTP://host:9080"),
            ("http://host:80/", "http://host"),
            ("https://host:443/svc/", "https://host/svc"),
            ("http://[::1]:80", "http://[::1]"),
        ] {
            assert_eq!(normalize_uri(a), normalize_uri(b), "{a} / {b}");
        }
        for (a, b) in [
            ("http://host:9080", "http://host:9081"),
            ("http://host:443", "https://host"),
            ("http://host/a", "http://host/b"),
            ("http://User@host", "http://user@host"),
        ] {
            assert_ne!(normalize_uri(a), normalize_uri(b), "{a} / {b}");
        }
        let mut schema = Schema::default();
        schema
            .register(registration("http://localhost:9080", 1, GREETER))
            .expect("registers");
        let again = schema
            .register(registration("http://LOCALHOST:9080/", 2, GREETER))
            .expect("registers");
        assert_eq!(again, RegisterOutcome::Unchanged(DeploymentId::new(1)));
        assert_eq!(schema.deployments().count(), 1);
    }

    #[test]
    fn new_deployments_create_services_at_revision_one() {
        let mut schema = Schema::default();
        let outcome = schema
            .register(registration("http://a:9080", 1, GREETER))
            .expect("registers");
        assert_eq!(outcome, RegisterOutcome::Created(DeploymentId::new(1)));
        let greeter = schema.service("Greeter").expect("registered");
        assert_eq!(greeter.revision, 1);
        assert_eq!(greeter.deployment_id, DeploymentId::new(1));
        assert!(greeter.handler("greet").is_some());
    }

    #[test]
    fn the_same_deployment_again_is_unchanged_unless_forced() {
        let mut schema = Schema::default();
        schema
            .register(registration("http://a:9080", 1, GREETER))
            .expect("registers");
        let other = r#"[{"name":"Other","ty":"SERVICE","handlers":[]}]"#;
        let again = schema
            .register(registration("http://a:9080", 2, other))
            .expect("same uri");
        assert_eq!(again, RegisterOutcome::Unchanged(DeploymentId::new(1)));
        assert!(schema.service("Other").is_none(), "nothing changed");

        let forced = schema
            .register(Registration {
                force: true,
                ..registration("http://a:9080", 3, other)
            })
            .expect("forced");
        assert_eq!(forced, RegisterOutcome::Overwritten(DeploymentId::new(1)));
        assert!(schema.service("Other").is_some());
        assert!(
            schema.service("Greeter").is_none(),
            "the overwritten deployment no longer provides Greeter"
        );
        assert_eq!(schema.deployments().count(), 1);
    }

    #[test]
    fn a_new_deployment_of_a_service_is_a_new_revision_and_may_add_handlers() {
        let mut schema = Schema::default();
        schema
            .register(registration("http://a:9080", 1, GREETER))
            .expect("registers");
        let more = r#"[{"name":"Greeter","ty":"SERVICE","handlers":[{"name":"greet"},{"name":"wave"},{"name":"hug"}]}]"#;
        schema
            .register(registration("http://b:9080", 2, more))
            .expect("adding handlers is not breaking");
        let greeter = schema.service("Greeter").expect("registered");
        assert_eq!(greeter.revision, 2);
        assert_eq!(greeter.deployment_id, DeploymentId::new(2));
    }

    #[test]
    fn breaking_changes_need_breaking_or_force() {
        let cases = [
            (
                r#"[{"name":"Greeter","ty":"SERVICE","handlers":[{"name":"greet"}]}]"#,
                "`wave` would be removed",
            ),
            (
                r#"[{"name":"Greeter","ty":"VIRTUAL_OBJECT","handlers":[{"name":"greet"},{"name":"wave"}]}]"#,
                "type would change",
            ),
        ];
        for (services, reason) in cases {
            let mut schema = Schema::default();
            schema
                .register(registration("http://a:9080", 1, GREETER))
                .expect("registers");
            let err = schema
                .register(registration("http://b:9080", 2, services))
                .expect_err("breaking");
            assert!(err.to_string().contains(reason), "{err}");
            assert_eq!(schema.deployments().count(), 1, "nothing was added");
            for (breaking, force) in [(true, false), (false, true)] {
                let mut accepted = schema.clone();
                accepted
                    .register(Registration {
                        breaking,
                        force,
                        ..registration("http://b:9080", 2, services)
                    })
                    .expect("accepted when asked");
                assert_eq!(accepted.service("Greeter").map(|s| s.revision), Some(2));
            }
        }
        let object = r#"[{"name":"C","ty":"VIRTUAL_OBJECT","handlers":[{"name":"add"}]}]"#;
        let shared =
            r#"[{"name":"C","ty":"VIRTUAL_OBJECT","handlers":[{"name":"add","ty":"SHARED"}]}]"#;
        let mut schema = Schema::default();
        schema
            .register(registration("http://a:9080", 1, object))
            .expect("registers");
        let err = schema
            .register(registration("http://b:9080", 2, shared))
            .expect_err("exclusive to shared");
        assert!(
            err.to_string().contains("from exclusive to shared"),
            "{err}"
        );
    }

    #[test]
    fn removing_a_deployment_that_serves_services_needs_force() {
        let mut schema = Schema::default();
        schema
            .register(registration("http://a:9080", 1, GREETER))
            .expect("registers");
        let id = DeploymentId::new(1);
        assert!(matches!(
            schema.remove_deployment(id, false),
            Err(SchemaError::DeploymentInUse { .. })
        ));
        schema.remove_deployment(id, true).expect("forced");
        assert!(schema.service("Greeter").is_none());
        assert_eq!(
            schema.remove_deployment(id, true),
            Err(SchemaError::DeploymentNotFound(id))
        );

        // A deployment superseded for all its services can go without force.
        schema
            .register(registration("http://a:9080", 1, GREETER))
            .expect("registers");
        schema
            .register(registration("http://b:9080", 2, GREETER))
            .expect("new revision");
        schema
            .remove_deployment(id, false)
            .expect("serves nothing current");
        assert_eq!(schema.service("Greeter").map(|s| s.revision), Some(2));
    }
}
