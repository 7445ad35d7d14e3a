//! Registering deployments through the admin API against real SDK services: discovery, the
//! schema it produces, idempotent and breaking re-registrations, removal, persistence across a
//! restart, and every kind of bad input.

use std::time::Duration;

use nix::sys::signal::Signal;
use reprise_e2e::{NodeSpec, ServerProcess, TestServices};
use serde_json::{Value, json};

const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");
/// The services of the default variant, by name.
const DEFAULT_SERVICES: [&str; 14] = [
    "Attacher",
    "AwakeableHolder",
    "AwakeableWaiter",
    "BlockAndWaitWorkflow",
    "Counter",
    "Failing",
    "ListObject",
    "MapObject",
    "NonDeterministic",
    "Proxy",
    "Recorder",
    "Sleeper",
    "TestUtilsService",
    "VirtualObjectCommandInterpreter",
];

async fn started_node(base: &std::path::Path) -> anyhow::Result<(ServerProcess, String)> {
    let mut node = NodeSpec::new(base, "n1").spawn()?;
    let admin = node.wait_ready().await?.admin.expect("admin role runs");
    Ok((node, format!("http://{admin}")))
}

async fn register(admin: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .post(format!("{admin}/deployments"))
        .json(&body)
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

async fn get(admin: &str, path: &str) -> anyhow::Result<(u16, Value)> {
    let response = reqwest::get(format!("{admin}{path}")).await?;
    Ok((response.status().as_u16(), response.json().await?))
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|s| s["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn registers_an_sdk_deployment_and_reports_its_services() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (mut node, admin) = started_node(tmp.path()).await?;
    let services = TestServices::spawn(SERVICES_BIN, "default").await?;

    let (status, body) = register(&admin, json!({"uri": services.uri()})).await?;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    assert!(id.starts_with("dp_1"), "{body}");
    assert_eq!(names(&body["services"]), DEFAULT_SERVICES);
    assert_eq!(body["min_protocol_version"], 5);
    assert_eq!(body["max_protocol_version"], 7);
    assert!(
        body["sdk_version"]
            .as_str()
            .is_some_and(|v| v.contains("restate-sdk-rust")),
        "{body}"
    );

    let (status, counter) = get(&admin, "/services/Counter").await?;
    assert_eq!(status, 200, "{counter}");
    assert_eq!(counter["ty"], "VirtualObject");
    assert_eq!(counter["revision"], 1);
    assert_eq!(counter["deployment_id"], id.as_str());
    let handler_type = |name: &str| {
        counter["handlers"]
            .as_array()
            .and_then(|hs| hs.iter().find(|h| h["name"] == name))
            .map(|h| h["ty"].clone())
    };
    assert_eq!(handler_type("add"), Some(json!("Exclusive")));
    assert_eq!(handler_type("get"), Some(json!("Shared")));

    let (_, list) = get(&admin, "/deployments").await?;
    assert_eq!(list["deployments"][0]["id"], id.as_str());
    assert_eq!(list["deployments"][0]["uri"], services.uri().as_str());
    assert_eq!(list["deployments"][0]["protocol_type"], "BidiStream");
    let (status, one) = get(&admin, &format!("/deployments/{id}")).await?;
    assert_eq!(status, 200, "{one}");
    assert_eq!(names(&one["services"]), DEFAULT_SERVICES);
    let (_, versioned) = get(&admin, "/v3/services").await?;
    assert_eq!(names(&versioned["services"]), DEFAULT_SERVICES);

    // The same deployment again: unchanged, same id — also written another way.
    let (status, again) = register(&admin, json!({"uri": services.uri()})).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], id.as_str());
    let shouted = format!("{}/", services.uri().replace("http://", "HTTP://"));
    let (status, again) = register(&admin, json!({"uri": shouted})).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], id.as_str());
    let (_, list) = get(&admin, "/deployments").await?;
    assert_eq!(list["deployments"].as_array().map(Vec::len), Some(1));
    assert_eq!(names(&list["deployments"][0]["services"]), DEFAULT_SERVICES);
    // Timestamps are RFC 3339, as the reference's CLI reads them.
    let created_at = list["deployments"][0]["created_at"]
        .as_str()
        .unwrap_or_default();
    assert!(
        created_at.len() == 24 && created_at.as_bytes()[10] == b'T' && created_at.ends_with('Z'),
        "created_at: {created_at}"
    );

    // The schema is durable: a restart still knows it.
    node.signal(Signal::SIGTERM)?;
    assert_eq!(
        node.wait_exit(Duration::from_secs(30)).await?.code(),
        Some(0)
    );
    let (_node, admin) = started_node(tmp.path()).await?;
    let (_, after) = get(&admin, "/services").await?;
    assert_eq!(names(&after["services"]), DEFAULT_SERVICES);
    Ok(())
}

#[tokio::test]
async fn the_admin_api_speaks_http2_prior_knowledge() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_node, admin) = started_node(tmp.path()).await?;
    let services = TestServices::spawn(SERVICES_BIN, "default").await?;
    let client = reqwest::Client::builder().http2_prior_knowledge().build()?;
    let response = client
        .post(format!("{admin}/deployments"))
        .json(&json!({"uri": services.uri(), "additional_headers": null, "use_http_11": false, "force": false, "dry_run": false}))
        .send()
        .await?;
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status().as_u16(), 201);
    Ok(())
}

#[tokio::test]
async fn breaking_changes_need_force_and_removal_needs_force() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_node, admin) = started_node(tmp.path()).await?;
    let first = TestServices::spawn(SERVICES_BIN, "default").await?;
    let second = TestServices::spawn(SERVICES_BIN, "breaking").await?;

    let (status, body) = register(&admin, json!({"uri": first.uri()})).await?;
    assert_eq!(status, 201, "{body}");
    let first_id = body["id"].as_str().unwrap_or_default().to_owned();

    let (status, body) = register(&admin, json!({"uri": second.uri()})).await?;
    assert_eq!(status, 409, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("TestUtilsService"), "{message}");
    assert!(message.contains("would be removed"), "{message}");
    assert!(message.contains("force"), "says how to proceed: {message}");
    let (_, service) = get(&admin, "/services/TestUtilsService").await?;
    assert_eq!(service["revision"], 1, "nothing changed");

    let (status, body) = register(&admin, json!({"uri": second.uri(), "force": true})).await?;
    assert_eq!(status, 201, "{body}");
    let (_, service) = get(&admin, "/services/TestUtilsService").await?;
    assert_eq!(service["revision"], 2);
    assert_eq!(service["deployment_id"], body["id"]);

    // The first deployment still serves Counter's latest revision.
    let client = reqwest::Client::new();
    let delete = |force: bool| {
        client
            .delete(format!("{admin}/deployments/{first_id}?force={force}"))
            .send()
    };
    let response = delete(false).await?;
    assert_eq!(response.status().as_u16(), 409);
    let body: Value = response.json().await?;
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Counter"),
        "{body}"
    );
    assert_eq!(delete(true).await?.status().as_u16(), 202);
    let (status, _) = get(&admin, "/services/Counter").await?;
    assert_eq!(status, 404);
    let (status, _) = get(&admin, &format!("/deployments/{first_id}")).await?;
    assert_eq!(status, 404);
    Ok(())
}

/// Serves `manifest` as the discovery response of a fake deployment, over h2c.
async fn fake_deployment(
    content_type: &'static str,
    manifest: &'static str,
) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/discover",
        axum::routing::get(move || async move { ([("content-type", content_type)], manifest) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}"))
}

#[tokio::test]
async fn bad_registrations_are_refused_with_a_reason() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_node, admin) = started_node(tmp.path()).await?;

    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let (status, body) = register(&admin, json!({"uri": format!("http://{closed}")})).await?;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot reach"),
        "{body}"
    );

    // Something answers, but not a deployment: the admin API itself (404 on /discover).
    let (status, body) = register(&admin, json!({"uri": admin.clone()})).await?;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap_or_default().contains("404"),
        "{body}"
    );

    // A deployment that answers garbage.
    let garbage =
        fake_deployment("application/vnd.restate.endpointmanifest.v3+json", "{oops").await?;
    let (status, body) = register(&admin, json!({"uri": garbage})).await?;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not valid JSON"),
        "{body}"
    );

    // A deployment whose protocol versions Reprise does not speak.
    let old = fake_deployment(
        "application/vnd.restate.endpointmanifest.v3+json",
        r#"{"protocolMode":"BIDI_STREAM","minProtocolVersion":1,"maxProtocolVersion":4,"services":[]}"#,
    )
    .await?;
    let (status, body) = register(&admin, json!({"uri": old})).await?;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("[1, 4]") && message.contains("[5, 6]"),
        "{message}"
    );

    // Malformed requests.
    for (request, expected) in [
        (json!({"uri": "not a uri"}), "not a URI"),
        (json!({"uri": "ftp://x"}), "not a usable deployment URI"),
        (json!({"url": "http://x"}), "uri"),
        (json!({"uri": "http://x", "use_http_11": true}), "HTTP/2"),
        (
            json!({"uri": "http://x", "additional_headers": {"bad header": "v"}}),
            "header name",
        ),
    ] {
        let (status, body) = register(&admin, request.clone()).await?;
        assert_eq!(status, 400, "{request}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains(expected),
            "{request}: {body}"
        );
    }
    let response = reqwest::Client::new()
        .post(format!("{admin}/deployments"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 400);

    let (status, _) = get(&admin, "/deployments/dp_1nope").await?;
    assert_eq!(status, 400);
    let (status, _) = get(&admin, "/deployments/dp_10000000000000000000000").await?;
    assert_eq!(status, 404);
    let (status, body) = get(&admin, "/services/Nope").await?;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(&admin, "/no/such/path").await?;
    assert_eq!(status, 404, "{body}");
    assert!(body["message"].is_string());
    Ok(())
}

/// What the reference's CLI reads before anything else, and the versioned paths it then uses.
#[tokio::test]
async fn the_admin_api_answers_as_the_reference_cli_expects() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (node, admin) = started_node(tmp.path()).await?;
    let (status, version) = get(&admin, "/version").await?;
    assert_eq!(status, 200);
    assert_eq!(version["min_admin_api_version"], 1, "{version}");
    assert_eq!(version["max_admin_api_version"], 4, "{version}");
    assert!(version["version"].is_string(), "{version}");
    assert!(version["features"].is_object(), "{version}");
    let ingress = node.addresses()?.ingress.expect("the ingress role runs");
    assert_eq!(version["ingress_endpoint"], format!("http://{ingress}/"));
    for v in 1..=4 {
        let (status, body) = get(&admin, &format!("/v{v}/deployments")).await?;
        assert_eq!(status, 200, "/v{v}/deployments: {body}");
        let (status, body) = get(&admin, &format!("/v{v}/services")).await?;
        assert_eq!(status, 200, "/v{v}/services: {body}");
        let (status, body) = get(&admin, &format!("/v{v}/version")).await?;
        assert_eq!(status, 200, "/v{v}/version: {body}");
        let response = reqwest::get(format!("{admin}/v{v}/health")).await?;
        assert_eq!(response.status().as_u16(), 200, "/v{v}/health");
    }
    Ok(())
}
