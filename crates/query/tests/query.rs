//! SQL over real partition tables (RocksDB in a temp dir): the invocation tables answer with
//! what the statuses hold, a filter on `id` reads only those, aggregates and joins work, and a
//! bad statement is an error that says why.

use std::sync::Arc;

use bytes::Bytes;
use reprise_partition_processor::{
    ApplyContext, EffectKind, Fence, HandlerType, InvocationTarget, InvokerEffect, Record,
    ResponseSink, Retention, RocksDbStore, ServiceInvocation, StoredFrame, apply,
};
use reprise_query::{QueryError, json_rows, run};
use reprise_schema::Schema;
use reprise_types::{InvocationId, MillisSinceEpoch, PartitionKey};
use serde_json::{Value, json};

fn id(n: u128) -> InvocationId {
    InvocationId::new(PartitionKey::new(1 << 40), n)
}

fn invoke(n: u128, service: &str, key: Option<&str>) -> Record {
    Record::Invoke(ServiceInvocation {
        invocation_id: id(n),
        target: InvocationTarget {
            service: service.into(),
            handler: "run".into(),
            key: key.map(str::to_owned),
            handler_type: HandlerType::Exclusive,
        },
        argument: Bytes::from_static(b"1"),
        headers: vec![],
        response_sink: Some(ResponseSink::Ingress {
            request_id: n as u64,
        }),
        created_at: MillisSinceEpoch::new(1_700_000_000_000),
        retention: Retention {
            completion_ms: 86_400_000,
            journal_ms: 0,
        },
        execution_time: None,
    })
}

fn effect(n: u128, command_index: u32, kind: EffectKind) -> Record {
    Record::Effect(InvokerEffect {
        invocation_id: id(n),
        kind,
        fence: Fence {
            leader_epoch: 0,
            attempt: 0,
            command_index,
        },
    })
}

/// Three invocations: 1 completed, 2 running, 3 waiting behind 2 for the key `k`.
fn store() -> (tempfile::TempDir, RocksDbStore) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = RocksDbStore::open(tmp.path()).expect("open");
    let output = {
        use prost::Message;
        let message = reprise_service_protocol::proto::OutputCommandMessage {
            result: Some(
                reprise_service_protocol::proto::output_command_message::Result::Value(
                    reprise_service_protocol::proto::Value {
                        content: Bytes::from_static(b"\"done\""),
                    },
                ),
            ),
            name: String::new(),
        };
        EffectKind::JournalEntry(StoredFrame {
            ty: reprise_service_protocol::MessageType::OutputCommand.id(),
            payload: message.encode_to_vec().into(),
        })
    };
    let records = [
        invoke(1, "Greeter", None),
        effect(1, 1, output),
        effect(1, 2, EffectKind::End),
        invoke(2, "Counter", Some("k")),
        invoke(3, "Counter", Some("k")),
    ];
    let mut txn = store.transaction(PartitionKey::new(1 << 40));
    for record in &records {
        apply(
            &mut txn,
            record,
            ApplyContext {
                now: MillisSinceEpoch::new(1_700_000_000_500),
            },
        )
        .expect("apply");
    }
    txn.commit().expect("commit");
    (tmp, store)
}

async fn rows(store: &RocksDbStore, sql: &str) -> Value {
    let batches = run(store, Arc::new(Schema::default()), sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
    let json: Value = serde_json::from_slice(&json_rows(&batches).expect("json")).expect("json");
    json["rows"].clone()
}

#[tokio::test]
async fn the_invocation_tables_answer_with_the_statuses() {
    let (_tmp, store) = store();
    let all = rows(
        &store,
        "SELECT id, target, status FROM sys_invocation ORDER BY id",
    )
    .await;
    assert_eq!(
        all,
        json!([
            {"id": id(1).to_string(), "target": "Greeter/run", "status": "completed"},
            {"id": id(2).to_string(), "target": "Counter/k/run", "status": "running"},
            {"id": id(3).to_string(), "target": "Counter/k/run", "status": "pending"},
        ])
    );
    let stored = rows(
        &store,
        "SELECT status, count(*) AS n FROM sys_invocation_status GROUP BY status ORDER BY status",
    )
    .await;
    assert_eq!(
        stored,
        json!([
            {"status": "completed", "n": 1},
            {"status": "inboxed", "n": 1},
            {"status": "invoked", "n": 1},
        ])
    );
    let completed = rows(
        &store,
        &format!(
            "SELECT completion_result, target_service_ty, journal_length FROM sys_invocation WHERE id = '{}'",
            id(1)
        ),
    )
    .await;
    assert_eq!(
        completed,
        json!([{"completion_result": "success", "target_service_ty": "service", "journal_length": 0}])
    );
}

#[tokio::test]
async fn a_filter_on_id_reads_only_those_invocations() {
    let (_tmp, store) = store();
    // What the reference's CLI asks before it cancels an invocation.
    let sql = format!(
        "SELECT id, target, status FROM sys_invocation WHERE id = '{}' AND status != 'completed' LIMIT 500",
        id(2)
    );
    assert_eq!(
        rows(&store, &sql).await,
        json!([{"id": id(2).to_string(), "target": "Counter/k/run", "status": "running"}])
    );
    let sql = format!(
        "SELECT id FROM sys_invocation WHERE id IN ('{}', '{}', 'nonsense') ORDER BY id",
        id(1),
        id(3)
    );
    assert_eq!(
        rows(&store, &sql).await,
        json!([{"id": id(1).to_string()}, {"id": id(3).to_string()}])
    );
    let sql = "SELECT id FROM sys_invocation WHERE id = 'inv_1aiqX0vFEFNH1Umgre58JiCLgHfTtztYK5'";
    assert_eq!(rows(&store, sql).await, json!([]));
}

#[tokio::test]
async fn joins_with_the_registry_and_bad_statements_are_errors() {
    let (_tmp, store) = store();
    let joined = rows(
        &store,
        "SELECT inv.id, svc.name FROM sys_invocation inv LEFT JOIN sys_service svc ON svc.name = inv.target_service_name WHERE inv.status = 'running'",
    )
    .await;
    assert_eq!(joined, json!([{"id": id(2).to_string()}]));
    for bad in [
        "SELEKT 1",
        "SELECT nope FROM sys_invocation",
        "SELECT * FROM no_such_table",
    ] {
        let err = run(&store, Arc::new(Schema::default()), bad)
            .await
            .expect_err(bad);
        assert!(matches!(err, QueryError::Invalid(_)), "{bad}: {err}");
    }
}
