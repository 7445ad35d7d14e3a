//! Durable promises, attach and output: a promise completes once and wakes who waits for it; a
//! workflow's state and promises go with its run's retention; attaching answers now or at
//! completion; an output query answers with what there is.

mod support;

use bytes::Bytes;
use prost::Message;
use reprise_partition_processor::{
    Action, EffectKind, HandlerType, InvocationResult, InvocationTarget, MemoryStore, ObjectId,
    OutboxMessage, Promise, Record, ResponseSink, Retention, ServiceInvocation, StoredFrame,
    TimerKey, TimerKind,
};
use reprise_service_protocol::MessageType;
use reprise_service_protocol::proto::{
    self, complete_promise_command_message, notification_template,
};
use reprise_types::MillisSinceEpoch;
use support::*;

fn workflow_invocation(n: u128, handler: &str, handler_type: HandlerType) -> Record {
    Record::Invoke(ServiceInvocation {
        invocation_id: id(n),
        target: InvocationTarget {
            service: "Signup".into(),
            handler: handler.into(),
            key: Some("ann".into()),
            handler_type,
        },
        argument: Bytes::from_static(b"1"),
        headers: vec![],
        response_sink: Some(ResponseSink::Ingress {
            request_id: n as u64,
        }),
        created_at: MillisSinceEpoch::new(1),
        retention: Retention {
            completion_ms: 1_000,
            journal_ms: 0,
        },
        execution_time: None,
    })
}

fn get_promise(completion_id: u32) -> EffectKind {
    command(
        MessageType::GetPromiseCommand,
        &proto::GetPromiseCommandMessage {
            key: "done".into(),
            result_completion_id: completion_id,
            name: String::new(),
        },
    )
}

fn complete_promise(value: &'static [u8], completion_id: u32) -> EffectKind {
    command(
        MessageType::CompletePromiseCommand,
        &proto::CompletePromiseCommandMessage {
            key: "done".into(),
            completion: Some(
                complete_promise_command_message::Completion::CompletionValue(proto::Value {
                    content: Bytes::from_static(value),
                }),
            ),
            result_completion_id: completion_id,
            name: String::new(),
        },
    )
}

fn peek_promise(completion_id: u32) -> EffectKind {
    command(
        MessageType::PeekPromiseCommand,
        &proto::PeekPromiseCommandMessage {
            key: "done".into(),
            result_completion_id: completion_id,
            name: String::new(),
        },
    )
}

fn notified(actions: &[Action], n: u128) -> Vec<(u16, proto::NotificationTemplate)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Notify {
                invocation_id,
                entry: StoredFrame { ty, payload },
                ..
            } if *invocation_id == id(n) => Some((
                *ty,
                proto::NotificationTemplate::decode(payload.clone()).expect("decodes"),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn a_promise_completes_once_and_wakes_who_waits_for_it() {
    let mut store = MemoryStore::default();
    apply_fenced(
        &mut store,
        &workflow_invocation(1, "run", HandlerType::Workflow),
    );
    apply_fenced(
        &mut store,
        &workflow_invocation(2, "unblock", HandlerType::Shared),
    );
    assert_eq!(
        apply_fenced(&mut store, &effect(1, get_promise(1))),
        Vec::new()
    );
    let workflow = ObjectId::new("Signup", "ann");
    assert_eq!(
        store.promises.get(&(workflow.clone(), "done".into())),
        Some(&Promise::Pending {
            listeners: vec![(id(1), 1)]
        })
    );
    let actions = apply_fenced(&mut store, &effect(2, complete_promise(b"\"ok\"", 1)));
    let to_completer = notified(&actions, 2);
    assert_eq!(to_completer.len(), 1);
    assert_eq!(
        to_completer[0].0,
        MessageType::CompletePromiseCompletionNotification.id()
    );
    assert_eq!(
        to_completer[0].1.result,
        Some(notification_template::Result::Void(proto::Void {}))
    );
    let to_waiter = notified(&actions, 1);
    assert_eq!(
        to_waiter[0].0,
        MessageType::GetPromiseCompletionNotification.id()
    );
    assert_eq!(
        to_waiter[0].1.result,
        Some(notification_template::Result::Value(proto::Value {
            content: Bytes::from_static(b"\"ok\"")
        }))
    );
    // A second completion fails and changes nothing; a peek sees the first value.
    let actions = apply_fenced(&mut store, &effect(2, complete_promise(b"\"again\"", 2)));
    let failure = &notified(&actions, 2)[0].1;
    assert!(matches!(
        &failure.result,
        Some(notification_template::Result::Failure(f)) if f.code == 409
    ));
    let actions = apply_fenced(&mut store, &effect(2, peek_promise(3)));
    assert_eq!(
        notified(&actions, 2)[0].1.result,
        Some(notification_template::Result::Value(proto::Value {
            content: Bytes::from_static(b"\"ok\"")
        }))
    );
    // A get after completion is answered at once.
    let actions = apply_fenced(&mut store, &effect(1, get_promise(2)));
    assert_eq!(notified(&actions, 1).len(), 1);
}

#[test]
fn a_workflows_state_and_promises_go_with_its_run() {
    let mut store = MemoryStore::default();
    apply_fenced(
        &mut store,
        &workflow_invocation(1, "run", HandlerType::Workflow),
    );
    apply_fenced(&mut store, &effect(1, set_state(b"k", b"v")));
    apply_fenced(&mut store, &effect(1, complete_promise(b"1", 1)));
    apply_fenced(&mut store, &effect(1, output(b"\"done\"")));
    apply_fenced(&mut store, &effect(1, EffectKind::End));
    assert!(!store.state.is_empty() && !store.promises.is_empty());
    let purge = Record::TimerFired(TimerKey {
        wake_at: MillisSinceEpoch::new(NOW.as_u64() + 1_000),
        invocation_id: id(1),
        kind: TimerKind::PurgeInvocation,
    });
    apply_fenced(&mut store, &purge);
    assert!(store.statuses.is_empty());
    assert!(store.state.is_empty() && store.promises.is_empty());
}

#[test]
fn attach_answers_now_or_at_completion_and_output_answers_with_what_there_is() {
    let mut store = MemoryStore::default();
    apply_fenced(&mut store, &invoke(1, 10));
    let attach = |request_id| Record::Attach {
        target: id(1),
        sink: ResponseSink::Ingress { request_id },
    };
    assert_eq!(apply_fenced(&mut store, &attach(20)), Vec::new());
    // An output query from another invocation, while 1 runs: nothing yet.
    let query = Record::Deliver(reprise_partition_processor::Delivery {
        producer: PRODUCER,
        messages: vec![(
            0,
            OutboxMessage::GetOutput {
                target: id(1),
                caller: id(5),
                completion_id: 3,
            },
        )],
    });
    apply_fenced(&mut store, &query);
    assert!(matches!(
        store.outbox.values().next(),
        Some(OutboxMessage::Output {
            result: None,
            completion_id: 3,
            ..
        })
    ));
    apply_fenced(&mut store, &effect(1, output(b"\"r\"")));
    let actions = apply_fenced(&mut store, &effect(1, EffectKind::End));
    let answered: Vec<u64> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Respond {
                sink: ResponseSink::Ingress { request_id },
                ..
            } => Some(*request_id),
            _ => None,
        })
        .collect();
    assert_eq!(answered, vec![10, 20]);
    let actions = apply_fenced(&mut store, &attach(30));
    assert!(matches!(
        actions.as_slice(),
        [Action::Respond {
            result: InvocationResult::Success(_),
            ..
        }]
    ));
    let unknown = Record::Attach {
        target: id(9),
        sink: ResponseSink::Ingress { request_id: 40 },
    };
    let actions = apply_fenced(&mut store, &unknown);
    assert!(matches!(
        actions.as_slice(),
        [Action::Respond {
            result: InvocationResult::Failure { code: 404, .. },
            ..
        }]
    ));
}
