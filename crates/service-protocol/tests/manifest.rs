//! Endpoint manifests as SDKs produce them, and the ones a server must refuse.

use reprise_service_protocol::discovery::{HandlerType, ProtocolMode, ServiceType};
use reprise_service_protocol::{
    ManifestError, ServiceProtocolVersion, VersionError, parse_manifest,
};

const V4: Option<&str> = Some("application/vnd.restate.endpointmanifest.v4+json");

/// Abbreviated from a real SDK's manifest (reference §4.3).
const EXAMPLE: &str = r#"{"protocolMode":"BIDI_STREAM","minProtocolVersion":5,"maxProtocolVersion":7,
 "services":[
  {"name":"Greeter","ty":"SERVICE","handlers":[{"name":"greet","input":{"required":false,"contentType":"application/json","jsonSchema":{"type":"string"}},"output":{"contentType":"application/json","setContentTypeIfEmpty":false}}]},
  {"name":"Counter","ty":"VIRTUAL_OBJECT","handlers":[{"name":"add","ty":"EXCLUSIVE"},{"name":"get","ty":"SHARED","input":{}},{"name":"reset"}]},
  {"name":"Signup","ty":"WORKFLOW","inactivityTimeout":5000,"journalRetention":60000,"handlers":[{"name":"run","ty":"WORKFLOW","workflowCompletionRetention":7200000,"journalRetention":1000},{"name":"click","output":{"setContentTypeIfEmpty":false}}],"someFutureField":true}
 ]}"#;

#[test]
fn parses_a_real_manifest_and_resolves_defaults() {
    let endpoint = parse_manifest(V4, EXAMPLE.as_bytes()).expect("valid manifest");
    assert_eq!(endpoint.protocol_mode, ProtocolMode::BidiStream);
    assert_eq!(endpoint.protocol_version, ServiceProtocolVersion::V6);
    let names: Vec<&str> = endpoint.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Greeter", "Counter", "Signup"]);

    let greeter = &endpoint.services[0];
    assert_eq!(greeter.ty, ServiceType::Service);
    let greet = greeter.handler("greet").expect("listed");
    assert_eq!(greet.ty, HandlerType::Shared);
    assert_eq!(
        greet.input.content_type.as_deref(),
        Some("application/json")
    );

    let counter = &endpoint.services[1];
    let reset = counter.handler("reset").expect("listed");
    assert_eq!(
        reset.ty,
        HandlerType::Exclusive,
        "objects default to exclusive"
    );
    assert_eq!(
        reset.input.content_type.as_deref(),
        Some("*/*"),
        "absent input: anything"
    );
    assert_eq!(
        reset.output.content_type.as_deref(),
        Some("application/json"),
        "absent output: json"
    );
    let get = counter.handler("get").expect("listed");
    assert_eq!(get.ty, HandlerType::Shared);
    assert_eq!(
        get.input.content_type, None,
        "`input: {{}}` accepts no body"
    );

    let signup = &endpoint.services[2];
    assert_eq!(signup.inactivity_timeout_ms, Some(5000));
    assert_eq!(signup.retention.journal_ms, Some(60_000));
    let run = signup.handler("run").expect("listed");
    assert_eq!(run.retention.workflow_completion_ms, Some(7_200_000));
    assert_eq!(run.retention.journal_ms, Some(1_000));
    // The handler's own values first, then the service's.
    let click = signup.handler("click").expect("listed");
    assert_eq!(
        click.retention.or(signup.retention).journal_ms,
        Some(60_000)
    );
    assert_eq!(run.retention.or(signup.retention).journal_ms, Some(1_000));
    assert_eq!(
        signup.handler("run").map(|h| h.ty),
        Some(HandlerType::Workflow)
    );
    let click = signup.handler("click").expect("listed");
    assert_eq!(click.ty, HandlerType::Shared);
    assert_eq!(
        click.output.content_type, None,
        "output present without content type"
    );
}

#[test]
fn accepts_manifest_versions_2_to_4_with_parameters() {
    for ct in [
        "application/vnd.restate.endpointmanifest.v2+json",
        "application/vnd.restate.endpointmanifest.v3+json; charset=utf-8",
    ] {
        parse_manifest(Some(ct), EXAMPLE.as_bytes()).expect(ct);
    }
}

#[test]
fn refuses_what_is_not_a_usable_manifest() {
    let err = parse_manifest(Some("text/html"), b"<html>").expect_err("not a manifest");
    assert!(matches!(err, ManifestError::ContentType(_)), "{err}");
    let err = parse_manifest(None, EXAMPLE.as_bytes()).expect_err("no content type");
    assert!(matches!(err, ManifestError::ContentType(_)), "{err}");
    let err = parse_manifest(V4, b"{not json").expect_err("garbage");
    assert!(matches!(err, ManifestError::Json(_)), "{err}");

    let old = r#"{"protocolMode":"BIDI_STREAM","minProtocolVersion":1,"maxProtocolVersion":4,"services":[]}"#;
    let err = parse_manifest(V4, old.as_bytes()).expect_err("too old");
    assert_eq!(
        err,
        ManifestError::Version(VersionError::NoOverlap { min: 1, max: 4 })
    );

    let no_mode = r#"{"minProtocolVersion":5,"maxProtocolVersion":6,"services":[]}"#;
    assert_eq!(
        parse_manifest(V4, no_mode.as_bytes()),
        Err(ManifestError::MissingProtocolMode)
    );

    let cases = [
        (
            r#"[{"name":"9lives","ty":"SERVICE","handlers":[]}]"#,
            "service name",
        ),
        (
            r#"[{"name":"A","ty":"SERVICE","handlers":[{"name":"a-b"}]}]"#,
            "handler name",
        ),
        (
            r#"[{"name":"A","ty":"SERVICE","handlers":[]},{"name":"A","ty":"SERVICE","handlers":[]}]"#,
            "twice",
        ),
        (
            r#"[{"name":"A","ty":"SERVICE","handlers":[{"name":"h"},{"name":"h"}]}]"#,
            "twice",
        ),
        (
            r#"[{"name":"A","ty":"SERVICE","handlers":[{"name":"h","ty":"EXCLUSIVE"}]}]"#,
            "cannot have",
        ),
        (
            r#"[{"name":"A","ty":"VIRTUAL_OBJECT","handlers":[{"name":"h","ty":"WORKFLOW"}]}]"#,
            "cannot have",
        ),
        (
            r#"[{"name":"A","ty":"ACTOR","handlers":[]}]"#,
            "expected shape",
        ),
    ];
    for (services, expected) in cases {
        let manifest = format!(
            r#"{{"protocolMode":"REQUEST_RESPONSE","minProtocolVersion":5,"maxProtocolVersion":6,"services":{services}}}"#
        );
        let err = parse_manifest(V4, manifest.as_bytes()).expect_err(services);
        assert!(err.to_string().contains(expected), "{services}: {err}");
    }
}
