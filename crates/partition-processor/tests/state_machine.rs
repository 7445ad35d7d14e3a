//! The partition state machine without any IO: records in, tables and actions out. Every
//! scenario is also replayed on fresh tables to check that applying is deterministic.

mod support;

use bytes::Bytes;
use prost::Message;
use reprise_partition_processor::{
    Action, EffectKind, InvocationResult, InvocationStatus, PartitionStore, ResponseSink,
    StoredFrame,
};
use reprise_service_protocol::MessageType;
use reprise_service_protocol::proto::{self, notification_template, output_command_message};
use support::*;

#[test]
fn an_invocation_runs_to_completion_and_answers_its_caller() {
    let records = [
        invoke(1, 10),
        effect(
            1,
            EffectKind::PinnedDeployment {
                deployment_id: "dp_1x".into(),
                protocol_version: 6,
            },
        ),
        effect(1, output(b"\"Hello Ann\"")),
        effect(1, EffectKind::End),
    ];
    let (store, actions) = replay(&records);
    assert!(matches!(
        &actions[0][..],
        [Action::Invoke { invocation_id, .. }] if *invocation_id == id(1)
    ));
    let expected = InvocationResult::Success(Bytes::from_static(b"\"Hello Ann\""));
    assert!(actions[3].contains(&Action::Respond {
        sink: ResponseSink::Ingress { request_id: 10 },
        invocation_id: id(1),
        result: expected.clone(),
    }));
    assert!(matches!(
        status(&store, 1),
        InvocationStatus::Completed { result, .. } if result == expected
    ));
    assert!(
        store.journals.is_empty(),
        "the journal goes with completion"
    );
}

#[test]
fn the_input_is_journal_entry_zero() {
    let (store, _) = replay(&[invoke(1, 10)]);
    let input = store.journal_entry(id(1), 0).expect("ok").expect("present");
    assert_eq!(input.ty, MessageType::InputCommand.id());
    let decoded = proto::InputCommandMessage::decode(input.payload).expect("decodes");
    assert_eq!(
        decoded.value.map(|v| v.content),
        Some(Bytes::from_static(b"\"Ann\""))
    );
    assert_eq!(decoded.headers[0].key, "x-test");
    match status(&store, 1) {
        InvocationStatus::Invoked(in_flight) => assert_eq!(in_flight.journal_length, 1),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_run_result_is_journaled_before_it_is_sent_and_only_once() {
    let records = [
        invoke(1, 10),
        effect(1, run_command(1)),
        effect(
            1,
            EffectKind::RunProposal {
                completion_id: 1,
                result: InvocationResult::Success(Bytes::from_static(b"42")),
            },
        ),
        // A duplicate proposal (e.g. a retried attempt racing) changes nothing.
        effect(
            1,
            EffectKind::RunProposal {
                completion_id: 1,
                result: InvocationResult::Success(Bytes::from_static(b"43")),
            },
        ),
    ];
    let (store, actions) = replay(&records);
    let [
        Action::Notify {
            entry_index, entry, ..
        },
    ] = &actions[2][..]
    else {
        panic!("expected one notify, got {:?}", actions[2]);
    };
    assert_eq!(*entry_index, 2, "input, run command, then the notification");
    assert_eq!(
        store.journal_entry(id(1), 2).expect("ok").as_ref(),
        Some(entry),
        "what is sent is what is stored"
    );
    let notification = proto::NotificationTemplate::decode(entry.payload.clone()).expect("decodes");
    assert_eq!(
        notification.id,
        Some(notification_template::Id::CompletionId(1))
    );
    assert_eq!(
        notification.result,
        Some(notification_template::Result::Value(proto::Value {
            content: Bytes::from_static(b"42")
        }))
    );
    assert!(actions[3].is_empty());
    assert_eq!(store.journals.len(), 3);
}

#[test]
fn suspension_waits_for_a_completion_unless_it_is_already_there() {
    // Waiting on a completion that exists: resume at once.
    let (store, actions) = replay(&[
        invoke(1, 10),
        effect(1, run_command(1)),
        effect(
            1,
            EffectKind::RunProposal {
                completion_id: 1,
                result: InvocationResult::Success(Bytes::from_static(b"1")),
            },
        ),
        effect(
            1,
            EffectKind::Suspended {
                waiting_completions: vec![1],
                waiting_signals: vec![1],
                waiting_named_signals: vec![],
            },
        ),
    ]);
    assert!(matches!(&actions[3][..], [Action::Invoke { .. }]));
    assert!(matches!(status(&store, 1), InvocationStatus::Invoked(_)));

    // Waiting on one that does not exist yet: suspended, and a stale effect changes nothing.
    let (store, actions) = replay(&[
        invoke(2, 11),
        effect(
            2,
            EffectKind::Suspended {
                waiting_completions: vec![5],
                waiting_signals: vec![1],
                waiting_named_signals: vec![],
            },
        ),
        effect(2, output(b"late")),
    ]);
    assert!(actions[1].is_empty());
    assert!(actions[2].is_empty(), "no attempt runs while suspended");
    match status(&store, 2) {
        InvocationStatus::Suspended { waiting, in_flight } => {
            assert_eq!(waiting.completions, [5]);
            assert_eq!(in_flight.journal_length, 1);
            assert_eq!(in_flight.output, None);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn failures_are_recorded_and_giving_up_completes_with_the_error() {
    let (store, actions) = replay(&[
        invoke(1, 10),
        effect(
            1,
            EffectKind::AttemptFailed {
                code: 500,
                message: "connection refused".into(),
            },
        ),
    ]);
    assert!(actions[1].is_empty(), "the invoker retries by itself");
    match status(&store, 1) {
        InvocationStatus::Invoked(in_flight) => assert_eq!(
            in_flight.last_failure.as_deref(),
            Some("[500] connection refused")
        ),
        other => panic!("unexpected {other:?}"),
    }

    let (store, actions) = replay(&[
        invoke(1, 10),
        effect(
            1,
            EffectKind::GaveUp {
                code: 500,
                message: "retries exhausted".into(),
            },
        ),
    ]);
    assert!(actions[1].contains(&Action::AbortAttempt {
        invocation_id: id(1)
    }));
    assert!(matches!(
        status(&store, 1),
        InvocationStatus::Completed {
            result: InvocationResult::Failure { code: 500, .. },
            ..
        }
    ));
}

#[test]
fn a_terminal_failure_in_the_output_is_the_result() {
    let failure = command(
        MessageType::OutputCommand,
        &proto::OutputCommandMessage {
            result: Some(output_command_message::Result::Failure(proto::Failure {
                code: 418,
                message: "teapot".into(),
                metadata: vec![],
            })),
            name: String::new(),
        },
    );
    let (store, _) = replay(&[
        invoke(1, 10),
        effect(1, failure),
        effect(1, EffectKind::End),
    ]);
    assert!(matches!(
        status(&store, 1),
        InvocationStatus::Completed { result: InvocationResult::Failure { code: 418, message }, .. }
            if message == "teapot"
    ));
    // Ending without any output is a failure, not a silent empty success.
    let (store, _) = replay(&[invoke(2, 10), effect(2, EffectKind::End)]);
    assert!(matches!(
        status(&store, 2),
        InvocationStatus::Completed {
            result: InvocationResult::Failure { code: 500, .. },
            ..
        }
    ));
}

#[test]
fn duplicates_join_or_answer_and_nonsense_is_ignored() {
    let (store, actions) = replay(&[
        invoke(1, 10),
        invoke(1, 11),
        effect(1, output(b"1")),
        effect(1, EffectKind::End),
        invoke(1, 12),
    ]);
    assert!(
        actions[1].is_empty(),
        "the duplicate joins the running invocation"
    );
    let responded: Vec<u64> = actions[3]
        .iter()
        .filter_map(|a| match a {
            Action::Respond {
                sink: ResponseSink::Ingress { request_id },
                ..
            } => Some(*request_id),
            _ => None,
        })
        .collect();
    assert_eq!(responded, [10, 11]);
    assert!(
        matches!(
            &actions[4][..],
            [Action::Respond {
                sink: ResponseSink::Ingress { request_id: 12 },
                ..
            }]
        ),
        "a completed invocation answers at once: {:?}",
        actions[4]
    );

    let notification_as_command = EffectKind::JournalEntry(StoredFrame {
        ty: MessageType::SleepCompletionNotification.id(),
        payload: Bytes::new(),
    });
    let unknown_type = EffectKind::JournalEntry(StoredFrame {
        ty: 0x0123,
        payload: Bytes::new(),
    });
    let (after, actions) = replay(&[
        invoke(2, 10),
        effect(2, notification_as_command),
        effect(2, unknown_type),
        effect(99, EffectKind::End),
    ]);
    assert!(actions.iter().skip(1).all(Vec::is_empty));
    match status(&after, 2) {
        InvocationStatus::Invoked(in_flight) => assert_eq!(in_flight.journal_length, 1),
        other => panic!("unexpected {other:?}"),
    }
    assert!(store.statuses.len() == 1 && after.statuses.len() == 1);
}

fn get_lazy_state(key: &'static [u8], completion_id: u32) -> EffectKind {
    command(
        MessageType::GetLazyStateCommand,
        &proto::GetLazyStateCommandMessage {
            key: Bytes::from_static(key),
            result_completion_id: completion_id,
            name: String::new(),
        },
    )
}

/// The notification a lazy state read produced, decoded.
fn notified(actions: &[Action]) -> (u32, MessageType, notification_template::Result) {
    match actions {
        [
            Action::Notify {
                entry_index, entry, ..
            },
        ] => {
            let ty = MessageType::from_id(entry.ty).expect("a known type");
            let notification =
                proto::NotificationTemplate::decode(entry.payload.clone()).expect("a notification");
            (*entry_index, ty, notification.result.expect("a result"))
        }
        other => panic!("expected one notification, got {other:?}"),
    }
}

#[test]
fn state_commands_change_the_objects_state_and_lazy_reads_are_completed() {
    let keys_command = command(
        MessageType::GetLazyStateKeysCommand,
        &proto::GetLazyStateKeysCommandMessage {
            result_completion_id: 4,
            name: String::new(),
        },
    );
    let records = [
        invoke_object(1, "ann"),
        effect(1, set_state(b"count", b"1")),
        effect(1, set_state(b"other", b"x")),
        effect(1, get_lazy_state(b"count", 1)),
        effect(
            1,
            command(
                MessageType::ClearStateCommand,
                &proto::ClearStateCommandMessage {
                    key: Bytes::from_static(b"count"),
                    name: String::new(),
                },
            ),
        ),
        effect(1, get_lazy_state(b"count", 2)),
        effect(1, keys_command),
        // Another object of the same service is a separate state.
        invoke_object(2, "bob"),
        effect(2, set_state(b"count", b"9")),
        effect(
            1,
            command(
                MessageType::ClearAllStateCommand,
                &proto::ClearAllStateCommandMessage {
                    name: String::new(),
                },
            ),
        ),
    ];
    let (store, actions) = replay(&records);

    let (index, ty, result) = notified(&actions[3]);
    assert_eq!(ty, MessageType::GetLazyStateCompletionNotification);
    // Input, two sets, the read: the notification follows its command.
    assert_eq!(index, 4);
    assert_eq!(
        result,
        notification_template::Result::Value(proto::Value {
            content: Bytes::from_static(b"1")
        })
    );
    let (_, _, result) = notified(&actions[5]);
    assert_eq!(result, notification_template::Result::Void(proto::Void {}));
    let (_, ty, result) = notified(&actions[6]);
    assert_eq!(ty, MessageType::GetLazyStateKeysCompletionNotification);
    assert_eq!(
        result,
        notification_template::Result::StateKeys(proto::StateKeys {
            keys: vec![Bytes::from_static(b"other")]
        })
    );
    match status(&store, 1) {
        InvocationStatus::Invoked(in_flight) => {
            assert_eq!(in_flight.notified_completions, [1, 2, 4]);
        }
        other => panic!("still running, not {other:?}"),
    }

    let ann = reprise_partition_processor::ObjectId::new("Counter", "ann");
    let bob = reprise_partition_processor::ObjectId::new("Counter", "bob");
    assert_eq!(store.all_state(&ann).expect("memory"), Vec::new());
    assert_eq!(
        store.all_state(&bob).expect("memory"),
        vec![(Bytes::from_static(b"count"), Bytes::from_static(b"9"))]
    );
}

#[test]
fn state_commands_of_a_service_without_a_key_change_nothing() {
    let records = [invoke(1, 10), effect(1, set_state(b"count", b"1"))];
    let (store, actions) = replay(&records);
    assert!(actions[1].is_empty());
    assert!(store.state.is_empty());
}
