//! A deployment that answers invocations with bytes no SDK would send: every kind of malformed
//! response is a failed attempt with a message that says what was wrong — retried, then, with
//! retries exhausted, the caller's error — and never hurts the node.

use std::time::Duration;

use axum::extract::Path;
use axum::response::IntoResponse;
use reprise_e2e::NodeSpec;
use serde_json::{Value, json};

const V6: &str = "application/vnd.restate.invocation.v6";

/// One frame header: type, flags, length (big-endian), as the protocol frames them.
fn header(ty: u16, length: u32) -> Vec<u8> {
    let mut bytes = ty.to_be_bytes().to_vec();
    bytes.extend_from_slice(&0u16.to_be_bytes());
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes
}

/// `OutputCommandMessage`: a type a deployment may send.
const OUTPUT_COMMAND: u16 = 0x0401;

/// The misbehaviours, by handler name, and what the caller's error must mention.
const CASES: [(&str, &str); 7] = [
    ("unknownType", "unknown message type"),
    ("oversized", "more than the limit"),
    ("truncated", "ended inside a frame"),
    ("undecodable", "cannot decode"),
    ("noEnd", "without End"),
    ("status500", "HTTP 500"),
    ("wrongContentType", "content-type"),
];

async fn invoke(Path(handler): Path<String>) -> axum::response::Response {
    let frames = |body: Vec<u8>| ([("content-type", V6)], body).into_response();
    match handler.as_str() {
        // Below the custom-entry range (0xFC00 and up), and no message of the protocol.
        "unknownType" => frames(header(0x7777, 0)),
        "oversized" => frames(header(OUTPUT_COMMAND, u32::MAX)),
        "truncated" => {
            let mut body = header(OUTPUT_COMMAND, 100);
            body.extend_from_slice(&[0u8; 10]);
            frames(body)
        }
        "undecodable" => {
            let mut body = header(OUTPUT_COMMAND, 3);
            body.extend_from_slice(&[0xff, 0xff, 0xff]);
            frames(body)
        }
        "noEnd" => frames(Vec::new()),
        "status500" => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the service fell over",
        )
            .into_response(),
        _ => ([("content-type", "text/plain")], "hello").into_response(),
    }
}

/// Serves discovery and the misbehaving invoke endpoint over h2c; returns its URI.
async fn misbehaving_deployment() -> anyhow::Result<String> {
    let handlers: Vec<Value> = CASES
        .iter()
        .map(|(name, _)| json!({"name": name}))
        .collect();
    let manifest = json!({
        "protocolMode": "BIDI_STREAM",
        "minProtocolVersion": 5,
        "maxProtocolVersion": 6,
        "services": [{"name": "Fake", "ty": "SERVICE", "handlers": handlers}],
    })
    .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/discover",
            axum::routing::get(move || async move {
                (
                    [(
                        "content-type",
                        "application/vnd.restate.endpointmanifest.v3+json",
                    )],
                    manifest,
                )
            }),
        )
        .route("/invoke/Fake/{handler}", axum::routing::post(invoke));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}"))
}

#[tokio::test]
async fn malformed_responses_fail_the_attempt_with_a_reason() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut node = NodeSpec::new(tmp.path(), "n1")
        .env(
            "REPRISE_WORKER__INVOKER__RETRY_POLICY__INITIAL_INTERVAL",
            "10ms",
        )
        .env("REPRISE_WORKER__INVOKER__RETRY_POLICY__MAX_ATTEMPTS", "2")
        .env(
            "REPRISE_WORKER__INVOKER__RETRY_POLICY__ON_MAX_ATTEMPTS",
            "kill",
        )
        .env("REPRISE_WORKER__INVOKER__MESSAGE_SIZE_LIMIT", "64 KiB")
        .spawn()?;
    let addresses = node.wait_ready().await?.clone();
    let admin = addresses.admin.expect("the admin role runs by default");
    let ingress = addresses.ingress.expect("the ingress role runs by default");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let registered = client
        .post(format!("http://{admin}/deployments"))
        .json(&json!({"uri": misbehaving_deployment().await?}))
        .send()
        .await?;
    assert_eq!(registered.status(), 201, "{}", registered.text().await?);

    for (done, (handler, mentions)) in CASES.into_iter().enumerate() {
        let response = client
            .post(format!("http://{ingress}/Fake/{handler}"))
            .send()
            .await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await?;
        assert!(status >= 500, "{handler}: {status} {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(mentions), "{handler}: {body}");
        // Two attempts each (max-attempts 2): the first retried, the second final.
        let failed_attempts = node.logs().matches("attempt failed").count();
        assert!(
            failed_attempts >= 2 * (done + 1),
            "{handler}: {failed_attempts}"
        );
    }

    let (status, _) = node.node_health().await?;
    assert_eq!(status, 200, "{}", node.logs());
    Ok(())
}
