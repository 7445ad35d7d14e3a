//! `POST /query` of the admin API, as the reference's CLI calls it: SQL over the node's
//! invocations, services and deployments, answered as JSON rows (or an Arrow IPC stream); a
//! statement that cannot run is a 400 with the reason.

use reprise_e2e::{QUICK_RETRIES, Setup};
use serde_json::{Value, json};

const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");

async fn query(setup: &Setup, sql: &str, accept: &str) -> anyhow::Result<reqwest::Response> {
    Ok(setup
        .client
        .post(format!("http://{}/v4/query", setup.admin()?))
        .header("accept", accept)
        .json(&json!({ "query": sql }))
        .send()
        .await?)
}

#[tokio::test]
async fn sql_over_invocations_services_and_deployments() -> anyhow::Result<()> {
    let setup = Setup::start(SERVICES_BIN, &QUICK_RETRIES).await?;
    let (status, headers, _) = setup.post("/TestUtilsService/echo", &json!("hi")).await?;
    assert_eq!(status, 200);
    let id = headers
        .get("x-restate-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // What the CLI asks before it cancels, kills or purges.
    let sql = format!("SELECT id, target, status FROM sys_invocation WHERE id = '{id}' LIMIT 500");
    let answer: Value = query(&setup, &sql, "application/json")
        .await?
        .json()
        .await?;
    assert_eq!(
        answer,
        json!({"rows": [{"id": id, "target": "TestUtilsService/echo", "status": "completed"}]})
    );
    let answer: Value = query(
        &setup,
        "SELECT name, ty FROM sys_service WHERE name IN ('Counter', 'Proxy') ORDER BY name",
        "application/json",
    )
    .await?
    .json()
    .await?;
    assert_eq!(
        answer,
        json!({"rows": [{"name": "Counter", "ty": "virtual_object"}, {"name": "Proxy", "ty": "service"}]})
    );
    let answer: Value = query(
        &setup,
        "SELECT count(*) AS n FROM sys_deployment",
        "application/json",
    )
    .await?
    .json()
    .await?;
    assert_eq!(answer, json!({"rows": [{"n": 1}]}));
    // Without JSON in `accept`: an Arrow IPC stream.
    let arrow = query(&setup, "SELECT name FROM sys_service", "*/*").await?;
    assert_eq!(arrow.status().as_u16(), 200);
    assert_eq!(
        arrow
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/vnd.apache.arrow.stream")
    );
    assert!(!arrow.bytes().await?.is_empty());
    // A statement that cannot run says why.
    let bad = query(
        &setup,
        "SELECT nope FROM sys_invocation",
        "application/json",
    )
    .await?;
    assert_eq!(bad.status().as_u16(), 400);
    let body: Value = bad.json().await?;
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("nope")),
        "{body}"
    );
    Ok(())
}
