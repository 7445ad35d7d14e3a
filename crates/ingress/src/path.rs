//! Parsing the ingress paths. Whether a segment after the service name is a key or the
//! handler depends on the service's type, so parsing takes a lookup of registered services.
//!
//! Forms: `/{service}/{handler}`, `/{object}/{key}/{handler}`, each with an optional `/send`
//! suffix, and the newer `/restate/call/…` and `/restate/send/…` with the same tails.

use reprise_service_protocol::discovery::ServiceType;

use crate::error::IngressError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub service: String,
    pub key: Option<String>,
    pub handler: String,
    /// `/send`: accept and return 202 instead of waiting for the result.
    pub send: bool,
}

/// How an awakeable is completed through the ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Resolve,
    Reject,
}

/// `/restate/awakeables/{id}/resolve|reject` (or `/restate/a/{id}/…`): the id and how it is
/// completed; `None` for any other path.
pub fn awakeable(path: &str) -> Option<Result<(String, Completion), IngressError>> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let [first, kind, rest @ ..] = segments.as_slice() else {
        return None;
    };
    if *first != "restate" || !matches!(*kind, "awakeables" | "a") {
        return None;
    }
    Some(match rest {
        [id, "resolve"] => percent_decode(id).map(|id| (id, Completion::Resolve)),
        [id, "reject"] => percent_decode(id).map(|id| (id, Completion::Reject)),
        _ => Err(IngressError::NotFound(format!(
            "no ingress API at {path}: use /restate/awakeables/{{id}}/resolve or /reject"
        ))),
    })
}

/// Which invocation an attach or output request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryTarget {
    /// By id (`inv_1…`, not parsed yet).
    Id(String),
    /// The request to `service`/`handler` (on `key`) with an idempotency key.
    Idempotent {
        service: String,
        key: Option<String>,
        handler: String,
        idempotency_key: String,
    },
    /// The run of workflow `name` with `key`.
    Workflow { name: String, key: String },
    /// Named by the request's body (`POST /restate/attach|output|lookup`).
    InBody,
}

/// Wait for the result (`attach`), read it as it is (`output`), or only name the invocation
/// (`lookup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Attach,
    Output,
    Lookup,
}

/// `/restate/invocation/{id}/attach|output`, `/restate/invocation/{service}[/{key}]/{handler}/
/// {idempotencyKey}/attach|output`, `/restate/workflow/{name}/{key}/attach|output` and
/// `/restate/attach|output/{id}`; `None` for any other path.
pub fn query(
    path: &str,
    service_type: impl Fn(&str) -> Option<ServiceType>,
) -> Option<Result<(QueryTarget, QueryKind), IngressError>> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (first, second) = (segments.first()?, segments.get(1)?);
    if *first != "restate"
        || !matches!(
            *second,
            "invocation" | "workflow" | "attach" | "output" | "lookup"
        )
    {
        return None;
    }
    Some(parse_query(path, &segments, service_type))
}

fn parse_query(
    path: &str,
    segments: &[&str],
    service_type: impl Fn(&str) -> Option<ServiceType>,
) -> Result<(QueryTarget, QueryKind), IngressError> {
    let decoded = segments
        .iter()
        .map(|segment| percent_decode(segment))
        .collect::<Result<Vec<_>, _>>()?;
    let kind = |name: &str| match name {
        "attach" => Ok(QueryKind::Attach),
        "output" => Ok(QueryKind::Output),
        _ => Err(IngressError::NotFound(format!(
            "no ingress API at {path}: it ends with /attach or /output"
        ))),
    };
    let decoded: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match decoded.as_slice() {
        [_, "attach"] => Ok((QueryTarget::InBody, QueryKind::Attach)),
        [_, "output"] => Ok((QueryTarget::InBody, QueryKind::Output)),
        [_, "lookup"] => Ok((QueryTarget::InBody, QueryKind::Lookup)),
        [_, verb @ ("attach" | "output"), id] => {
            Ok((QueryTarget::Id((*id).to_owned()), kind(verb)?))
        }
        [_, "invocation", id, verb] => Ok((QueryTarget::Id((*id).to_owned()), kind(verb)?)),
        [_, "invocation", service, rest @ .., idempotency_key, verb] if !rest.is_empty() => {
            let keyed = service_type(service)
                .ok_or_else(|| IngressError::NotFound(format!("service `{service}` not found")))?
                .is_keyed();
            let (key, handler) = match (keyed, rest) {
                (false, [handler]) => (None, *handler),
                (true, [key, handler]) => (Some((*key).to_owned()), *handler),
                _ => {
                    return Err(IngressError::NotFound(format!(
                        "no ingress API at {path}: use /restate/invocation/{service}/{}{{handler}}/{{idempotencyKey}}/attach",
                        if keyed { "{key}/" } else { "" }
                    )));
                }
            };
            let target = QueryTarget::Idempotent {
                service: (*service).to_owned(),
                key,
                handler: handler.to_owned(),
                idempotency_key: (*idempotency_key).to_owned(),
            };
            Ok((target, kind(verb)?))
        }
        [_, "workflow", name, key, verb] => Ok((
            QueryTarget::Workflow {
                name: (*name).to_owned(),
                key: (*key).to_owned(),
            },
            kind(verb)?,
        )),
        _ => Err(IngressError::NotFound(format!("no ingress API at {path}"))),
    }
}

/// Parses `path`; `service_type` says how a registered service is addressed (`None`: unknown).
pub fn parse(
    path: &str,
    service_type: impl Fn(&str) -> Option<ServiceType>,
) -> Result<Target, IngressError> {
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect::<Result<Vec<_>, _>>()?;
    let (send, tail) = match segments.as_slice() {
        [first, verb, tail @ ..] if first == "restate" && verb == "call" => (Some(false), tail),
        [first, verb, tail @ ..] if first == "restate" && verb == "send" => (Some(true), tail),
        [first, ..] if first == "restate" => {
            return Err(IngressError::NotFound(format!("no ingress API at {path}")));
        }
        [first, ..] if first == "openapi" => {
            return Err(IngressError::NotFound(
                "OpenAPI documents are not served".into(),
            ));
        }
        tail => (None, tail),
    };
    let Some((service, rest)) = tail.split_first() else {
        return Err(IngressError::NotFound(
            "call /{service}/{handler} or /{object}/{key}/{handler}".into(),
        ));
    };
    let ty = service_type(service)
        .ok_or_else(|| IngressError::NotFound(format!("service `{service}` not found")))?;
    // The legacy form marks sends with a trailing `/send`.
    let (rest, send) = match (send, rest) {
        (Some(send), rest) => (rest, send),
        (None, [init @ .., last]) if last == "send" && !init.is_empty() => (init, true),
        (None, rest) => (rest, false),
    };
    let (key, handler) = match (ty.is_keyed(), rest) {
        (false, [handler]) => (None, handler.clone()),
        (true, [key, handler]) => (Some(key.clone()), handler.clone()),
        (true, [_handler]) => {
            return Err(IngressError::BadRequest(format!(
                "`{service}` is keyed: call /{service}/{{key}}/{{handler}}"
            )));
        }
        (false, _) => {
            return Err(IngressError::NotFound(format!(
                "`{service}` is a service: call /{service}/{{handler}}"
            )));
        }
        (true, _) => {
            return Err(IngressError::NotFound(format!(
                "call /{service}/{{key}}/{{handler}}"
            )));
        }
    };
    Ok(Target {
        service: service.clone(),
        key,
        handler,
        send,
    })
}

fn percent_decode(segment: &str) -> Result<String, IngressError> {
    // The decoder leaves a malformed escape as it is; a path with one is a client's mistake.
    let well_formed = segment.split('%').skip(1).all(|rest| {
        rest.as_bytes()
            .get(..2)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(IngressError::BadRequest(format!(
            "bad percent-encoding in `{segment}`"
        )));
    }
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| IngressError::BadRequest(format!("`{segment}` is not UTF-8 once decoded")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<ServiceType> {
        match name {
            "Greeter" => Some(ServiceType::Service),
            "Counter" => Some(ServiceType::VirtualObject),
            _ => None,
        }
    }

    #[test]
    fn attach_and_output_paths_name_their_invocation() {
        let parse = |path: &str| query(path, lookup).expect("a query path");
        assert_eq!(
            parse("/restate/invocation/inv_1x/attach").expect("parses"),
            (QueryTarget::Id("inv_1x".into()), QueryKind::Attach)
        );
        assert_eq!(
            parse("/restate/output/inv_1x").expect("parses"),
            (QueryTarget::Id("inv_1x".into()), QueryKind::Output)
        );
        assert_eq!(
            parse("/restate/invocation/Counter/a%20b/add/key-1/output").expect("parses"),
            (
                QueryTarget::Idempotent {
                    service: "Counter".into(),
                    key: Some("a b".into()),
                    handler: "add".into(),
                    idempotency_key: "key-1".into(),
                },
                QueryKind::Output
            )
        );
        assert_eq!(
            parse("/restate/invocation/Greeter/greet/k/attach").expect("parses"),
            (
                QueryTarget::Idempotent {
                    service: "Greeter".into(),
                    key: None,
                    handler: "greet".into(),
                    idempotency_key: "k".into(),
                },
                QueryKind::Attach
            )
        );
        assert_eq!(
            parse("/restate/workflow/Signup/ann/attach").expect("parses"),
            (
                QueryTarget::Workflow {
                    name: "Signup".into(),
                    key: "ann".into()
                },
                QueryKind::Attach
            )
        );
        for bad in [
            "/restate/invocation/inv_1x/peek",
            "/restate/invocation/Nope/h/k/attach",
            "/restate/invocation/Greeter/x/greet/k/attach",
            "/restate/workflow/Signup/attach",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(query("/Greeter/greet", lookup).is_none());
        assert!(query("/restate/call/Greeter/greet", lookup).is_none());
    }

    fn target(service: &str, key: Option<&str>, handler: &str, send: bool) -> Target {
        Target {
            service: service.into(),
            key: key.map(Into::into),
            handler: handler.into(),
            send,
        }
    }

    #[test]
    fn parses_every_form() {
        let ok = |path| parse(path, lookup).expect(path);
        assert_eq!(
            ok("/Greeter/greet"),
            target("Greeter", None, "greet", false)
        );
        assert_eq!(
            ok("/Greeter/greet/send"),
            target("Greeter", None, "greet", true)
        );
        assert_eq!(
            ok("/Counter/a%20b/add"),
            target("Counter", Some("a b"), "add", false)
        );
        assert_eq!(
            ok("/Counter/k/add/send"),
            target("Counter", Some("k"), "add", true)
        );
        assert_eq!(
            ok("/restate/call/Greeter/greet"),
            target("Greeter", None, "greet", false)
        );
        assert_eq!(
            ok("/restate/send/Counter/k/add"),
            target("Counter", Some("k"), "add", true)
        );
        // A handler may be called `send` in the new form.
        assert_eq!(
            ok("/restate/call/Greeter/send"),
            target("Greeter", None, "send", false)
        );
    }

    #[test]
    fn refuses_bad_paths_with_the_right_error() {
        let err = |path| parse(path, lookup).expect_err(path);
        assert!(matches!(err("/Nope/greet"), IngressError::NotFound(_)));
        assert!(matches!(err("/Counter/add"), IngressError::BadRequest(_)));
        assert!(matches!(err("/Greeter/a/b/c"), IngressError::NotFound(_)));
        assert!(matches!(err("/"), IngressError::NotFound(_)));
        assert!(matches!(err("/restate/nothing"), IngressError::NotFound(_)));
        assert!(matches!(
            err("/Counter/%zz/add"),
            IngressError::BadRequest(_)
        ));
    }
}
