//! Frames from the protocol reference's golden vectors (§2.9), verified there against an SDK's
//! own state machine: we must produce and accept exactly these bytes.

use reprise_service_protocol::proto::{self, notification_template};
use reprise_service_protocol::{
    Frame, FrameDecoder, FrameWriter, INLINE_PAYLOAD_LIMIT, MessageType, ProtocolError,
};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("valid hex"))
        .collect()
}

fn completion(id: u32, result: notification_template::Result) -> proto::NotificationTemplate {
    proto::NotificationTemplate {
        id: Some(notification_template::Id::CompletionId(id)),
        result: Some(result),
    }
}

#[test]
fn encodes_the_reference_frames() {
    let start = proto::StartMessage {
        id: (1u8..=24).collect::<Vec<u8>>().into(),
        debug_id: "inv_1test".into(),
        known_entries: 1,
        partial_state: true,
        key: "mykey".into(),
        random_seed: 7,
        ..Default::default()
    };
    let cases: Vec<(Frame, &str)> = vec![
        (
            Frame::new(MessageType::Start, &start),
            "00000000000000320a180102030405060708090a0b0c0d0e0f1011121314151617181209696e765f31746573741801280132056d796b65794807",
        ),
        (
            Frame::new(
                MessageType::InputCommand,
                &proto::InputCommandMessage {
                    value: Some(proto::Value {
                        content: "\"in\"".into(),
                    }),
                    ..Default::default()
                },
            ),
            "040000000000000872060a0422696e22",
        ),
        (
            Frame::new(
                MessageType::SleepCompletionNotification,
                &completion(4, notification_template::Result::Void(proto::Void {})),
            ),
            "800c00000000000408042200",
        ),
        (
            Frame::new(
                MessageType::CallInvocationIdCompletionNotification,
                &completion(
                    2,
                    notification_template::Result::InvocationId("inv_1x".into()),
                ),
            ),
            "800e00000000000b0802820106696e765f3178",
        ),
        (
            Frame::new(
                MessageType::SignalNotification,
                &proto::NotificationTemplate {
                    id: Some(notification_template::Id::SignalId(1)),
                    result: Some(notification_template::Result::Void(proto::Void {})),
                },
            ),
            "fbff00000000000410012200",
        ),
        (
            Frame::new(MessageType::End, &proto::EndMessage {}),
            "0003000000000000",
        ),
    ];
    for (frame, expected) in cases {
        assert_eq!(hex(&frame.encode()), expected, "{}", frame.ty);
    }
}

#[test]
fn decodes_what_sdks_send() {
    let mut decoder = FrameDecoder::new(1 << 20);
    // A V6 suspension, then an end, arriving split at awkward places.
    let bytes = unhex("00010000000000060a01031201010003000000000000");
    for chunk in bytes.chunks(5) {
        decoder.push(chunk);
    }
    let suspension = decoder.next_frame().expect("valid").expect("complete");
    assert_eq!(suspension.ty, MessageType::Suspension);
    let message: proto::SuspensionMessage = suspension.decode().expect("decodes");
    assert_eq!(message.waiting_completions, [3]);
    assert_eq!(message.waiting_signals, [1]);
    let end = decoder.next_frame().expect("valid").expect("complete");
    assert_eq!(end.ty, MessageType::End);
    assert_eq!(decoder.next_frame(), Ok(None));
    decoder.finish().expect("nothing left over");
}

#[test]
fn accepts_the_v7_requested_ack_flag_on_a_run_proposal() {
    let mut decoder = FrameDecoder::new(1024);
    decoder.push(&unhex("000580000000000808017204226f6b22"));
    let frame = decoder.next_frame().expect("valid").expect("complete");
    assert_eq!(frame.ty, MessageType::ProposeRunCompletion);
    assert_eq!(frame.flags, 0x8000);
    let proposal: proto::ProposeRunCompletionMessage = frame.decode().expect("decodes");
    assert_eq!(proposal.result_completion_id, 1);
    assert_eq!(
        proposal.result,
        Some(proto::propose_run_completion_message::Result::Value(
            "\"ok\"".into()
        ))
    );
}

#[test]
fn a_frame_over_the_limit_is_refused_before_it_is_buffered() {
    let mut decoder = FrameDecoder::new(16);
    // Header only: type Output, length 4 GiB - 1. Nothing of the payload has arrived.
    decoder.push(&unhex("04010000ffffffff"));
    let err = decoder.next_frame().expect_err("too large");
    assert!(
        matches!(
            err,
            ProtocolError::TooLarge {
                length: 0xffff_ffff,
                limit: 16,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn truncated_unknown_and_undecodable_frames_are_errors() {
    let mut decoder = FrameDecoder::new(1024);
    decoder.push(&unhex("0003000000000004aa"));
    assert_eq!(decoder.next_frame(), Ok(None), "waits for the rest");
    assert_eq!(
        decoder.finish(),
        Err(ProtocolError::Truncated { buffered: 9 })
    );

    let mut decoder = FrameDecoder::new(1024);
    decoder.push(&unhex("0123000000000000"));
    assert_eq!(
        decoder.next_frame(),
        Err(ProtocolError::UnknownType(0x0123))
    );

    let mut decoder = FrameDecoder::new(1024);
    // A SetState command whose payload claims a 100-byte field that is not there.
    decoder.push(&unhex("0403000000000002"));
    decoder.push(&[0x0a, 0x64]);
    let frame = decoder
        .next_frame()
        .expect("framing is fine")
        .expect("complete");
    let err = frame
        .decode::<proto::SetStateCommandMessage>()
        .expect_err("payload does not decode");
    assert!(matches!(err, ProtocolError::Decode { .. }), "{err}");
    // The invoker's check of a command before it is journaled sees the same.
    let err = frame.check_command().expect_err("a malformed command");
    assert!(matches!(err, ProtocolError::Decode { .. }), "{err}");
}

#[test]
fn well_formed_commands_and_custom_entries_pass_the_command_check() {
    let mut decoder = FrameDecoder::new(1024);
    // A Run command (completion 1, named "x"), then a custom entry with arbitrary bytes.
    decoder.push(&unhex("04110000000000055801620178"));
    decoder.push(&unhex("fc01000000000003ffffff"));
    let run = decoder.next_frame().expect("valid").expect("complete");
    assert_eq!(run.ty, MessageType::RunCommand);
    assert_eq!(run.check_command(), Ok(()));
    let custom = decoder.next_frame().expect("valid").expect("complete");
    assert_eq!(custom.check_command(), Ok(()));
}

#[test]
fn custom_entries_are_carried_opaquely() {
    let mut decoder = FrameDecoder::new(1024);
    decoder.push(&unhex("fc01000000000003010203"));
    let frame = decoder.next_frame().expect("valid").expect("complete");
    assert_eq!(frame.ty, MessageType::Custom(0xfc01));
    assert!(frame.ty.is_journal_entry());
    assert_eq!(hex(&frame.encode()), "fc01000000000003010203");
}

#[test]
fn type_ids_round_trip_and_classify() {
    for id in 0u16..=u16::MAX {
        if let Some(ty) = MessageType::from_id(id) {
            assert_eq!(ty.id(), id);
            let kinds = [ty.is_command(), ty.is_notification(), ty.is_custom()];
            assert!(kinds.iter().filter(|k| **k).count() <= 1, "{ty}");
        }
    }
    assert!(MessageType::RunCommand.is_command());
    assert!(MessageType::SignalNotification.is_notification());
    assert!(!MessageType::Start.is_journal_entry());
}

#[test]
fn a_large_payload_goes_out_as_its_own_chunk_and_decodes_back() {
    let large = Frame {
        ty: MessageType::InputCommand,
        flags: 0,
        payload: bytes::Bytes::from(vec![b'x'; INLINE_PAYLOAD_LIMIT + 1]),
    };
    let small = Frame::new(MessageType::End, &proto::EndMessage {});
    let mut writer = FrameWriter::default();
    writer.push(&small);
    writer.push(&large);
    writer.push(&small);
    let chunks = writer.finish();
    // The small frame and the large one's header; the payload itself, not copied; the rest.
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[1].as_ptr(), large.payload.as_ptr());
    assert_eq!(chunks[1].len(), large.payload.len());

    let mut decoder = FrameDecoder::new(INLINE_PAYLOAD_LIMIT * 2);
    let mut frames = Vec::new();
    for chunk in &chunks {
        decoder.push(chunk);
        while let Some(frame) = decoder.next_frame().expect("valid") {
            frames.push(frame);
        }
    }
    decoder.finish().expect("nothing left over");
    assert_eq!(frames, [small.clone(), large, small]);
}
