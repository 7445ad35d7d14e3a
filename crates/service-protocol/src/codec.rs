//! Frames: an 8-byte big-endian header (type id in bits 63–48, flags in bits 47–32, payload
//! length in bits 31–0) followed by a protobuf payload.
//!
//! [`FrameDecoder`] takes bytes as they arrive and yields whole frames. It reads a frame's
//! length before buffering its payload and refuses one longer than the configured limit, so a
//! peer cannot make it allocate without bound. Journal entries are kept as [`Frame`]s, payload
//! bytes untouched, because replay must send the deployment exactly what it sent.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::message_type::MessageType;
use crate::proto;

/// Size of a frame header in bytes.
pub const HEADER_LEN: usize = 8;

/// The `REQUESTED_ACK` flag (V7); V5/V6 peers never set it.
pub const FLAG_REQUESTED_ACK: u16 = 0x8000;

/// A protocol violation by the peer. Fails the attempt; never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of type {ty:#06x} declares {length} bytes, more than the limit of {limit}")]
    TooLarge { ty: u16, length: u64, limit: usize },
    #[error("the stream ended inside a frame: {buffered} bytes of an incomplete frame are left")]
    Truncated { buffered: usize },
    #[error("unknown message type {0:#06x}")]
    UnknownType(u16),
    #[error("cannot decode the payload of {ty}: {reason}")]
    Decode { ty: MessageType, reason: String },
    #[error("{ty} is not expected from a deployment")]
    Unexpected { ty: MessageType },
}

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub ty: u16,
    pub flags: u16,
    pub length: u32,
}

impl FrameHeader {
    pub fn to_u64(self) -> u64 {
        (u64::from(self.ty) << 48) | (u64::from(self.flags) << 32) | u64::from(self.length)
    }

    pub fn from_u64(raw: u64) -> Self {
        // Truncating casts select the header's bit fields.
        Self {
            ty: (raw >> 48) as u16,
            flags: (raw >> 32) as u16,
            length: raw as u32,
        }
    }
}

/// One message as it travels: its type, flags and undecoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub ty: MessageType,
    pub flags: u16,
    pub payload: Bytes,
}

impl Frame {
    /// A frame carrying `message` as `ty`.
    pub fn new(ty: MessageType, message: &impl prost::Message) -> Self {
        Self {
            ty,
            flags: 0,
            payload: message.encode_to_vec().into(),
        }
    }

    /// Header and payload, ready for the wire.
    ///
    /// Payloads are built by us or were accepted under the size limit, which is far below
    /// `u32::MAX`; a larger one would be a bug, so the length saturates rather than wraps.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + self.payload.len());
        self.encode_into(&mut out);
        out.freeze()
    }

    pub fn encode_into(&self, out: &mut BytesMut) {
        out.reserve(HEADER_LEN + self.payload.len());
        self.encode_header_into(out);
        out.put_slice(&self.payload);
    }

    fn encode_header_into(&self, out: &mut BytesMut) {
        let header = FrameHeader {
            ty: self.ty.id(),
            flags: self.flags,
            length: u32::try_from(self.payload.len()).unwrap_or(u32::MAX),
        };
        out.put_u64(header.to_u64());
    }

    /// Decodes the payload as `M`.
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, ProtocolError> {
        M::decode(self.payload.clone()).map_err(|err| ProtocolError::Decode {
            ty: self.ty,
            reason: err.to_string(),
        })
    }

    /// For a notification: its payload in the one shape all notifications share.
    pub fn decode_notification(&self) -> Result<proto::NotificationTemplate, ProtocolError> {
        self.decode()
    }

    /// For a command: checks that the payload decodes as that command's message. A command is
    /// journaled verbatim and read back later (replayed to the SDK, interpreted by the
    /// partition), so a malformed one must be refused when it arrives. Custom entries are
    /// opaque and always pass.
    pub fn check_command(&self) -> Result<(), ProtocolError> {
        macro_rules! check {
            ($($ty:ident => $message:ident),* $(,)?) => {
                match self.ty {
                    $(MessageType::$ty => self.decode::<proto::$message>().map(drop),)*
                    _ => Ok(()),
                }
            };
        }
        check! {
            InputCommand => InputCommandMessage,
            OutputCommand => OutputCommandMessage,
            GetLazyStateCommand => GetLazyStateCommandMessage,
            SetStateCommand => SetStateCommandMessage,
            ClearStateCommand => ClearStateCommandMessage,
            ClearAllStateCommand => ClearAllStateCommandMessage,
            GetLazyStateKeysCommand => GetLazyStateKeysCommandMessage,
            GetEagerStateCommand => GetEagerStateCommandMessage,
            GetEagerStateKeysCommand => GetEagerStateKeysCommandMessage,
            GetPromiseCommand => GetPromiseCommandMessage,
            PeekPromiseCommand => PeekPromiseCommandMessage,
            CompletePromiseCommand => CompletePromiseCommandMessage,
            SleepCommand => SleepCommandMessage,
            CallCommand => CallCommandMessage,
            OneWayCallCommand => OneWayCallCommandMessage,
            SendSignalCommand => SendSignalCommandMessage,
            RunCommand => RunCommandMessage,
            AttachInvocationCommand => AttachInvocationCommandMessage,
            GetInvocationOutputCommand => GetInvocationOutputCommandMessage,
            CompleteAwakeableCommand => CompleteAwakeableCommandMessage,
        }
    }
}

/// Payloads at least this long are not copied when framed: they go out as chunks of their own.
pub const INLINE_PAYLOAD_LIMIT: usize = 64 * 1024;

/// Frames turned into the chunks of a byte stream: small frames are packed into one buffer,
/// and a large payload is passed on as it is, after a chunk that ends with its header — so
/// a payload read from the journal is not copied again on its way to the deployment.
#[derive(Debug, Default)]
pub struct FrameWriter {
    packed: BytesMut,
    chunks: Vec<Bytes>,
}

impl FrameWriter {
    pub fn push(&mut self, frame: &Frame) {
        if frame.payload.len() < INLINE_PAYLOAD_LIMIT {
            frame.encode_into(&mut self.packed);
        } else {
            frame.encode_header_into(&mut self.packed);
            self.chunks.push(self.packed.split().freeze());
            self.chunks.push(frame.payload.clone());
        }
    }

    /// The chunks, in order.
    pub fn finish(mut self) -> Vec<Bytes> {
        if !self.packed.is_empty() {
            self.chunks.push(self.packed.freeze());
        }
        self.chunks
    }
}

/// Splits a byte stream into frames.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: BytesMut,
    limit: usize,
}

impl FrameDecoder {
    /// A decoder that refuses frames whose payload is longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            limit,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next whole frame, `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        if self.buffer.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(&self.buffer[..HEADER_LEN]);
        let header = FrameHeader::from_u64(u64::from_be_bytes(raw));
        let length = header.length as usize;
        if length > self.limit {
            return Err(ProtocolError::TooLarge {
                ty: header.ty,
                length: u64::from(header.length),
                limit: self.limit,
            });
        }
        let ty = MessageType::from_id(header.ty).ok_or(ProtocolError::UnknownType(header.ty))?;
        let whole = HEADER_LEN + length;
        if self.buffer.len() < whole {
            // Once half of a frame is in, room for all of it at once: the rest of a large
            // payload then arrives into one buffer instead of one that doubles, and is copied,
            // again. Not before half: what a peer makes us allocate stays within twice what it
            // actually sent, whatever length it announces.
            if self.buffer.len() >= whole / 2 {
                self.buffer.reserve(whole - self.buffer.len());
            }
            return Ok(None);
        }
        self.buffer.advance(HEADER_LEN);
        let payload = self.buffer.split_to(length).freeze();
        Ok(Some(Frame {
            ty,
            flags: header.flags,
            payload,
        }))
    }

    /// Call when the stream has ended: leftover bytes are a truncated frame.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Truncated {
                buffered: self.buffer.len(),
            })
        }
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_frame_gets_one_buffer_of_its_size_once_half_of_it_is_in() {
        let length = 1 << 20;
        let frame = Frame {
            ty: MessageType::OutputCommand,
            flags: 0,
            payload: Bytes::from(vec![7u8; length]),
        };
        let wire = frame.encode();
        let mut decoder = FrameDecoder::new(length);
        // A header announcing 1 MiB reserves nothing of it yet.
        decoder.push(&wire[..HEADER_LEN + 100]);
        assert_eq!(decoder.next_frame(), Ok(None));
        assert!(
            decoder.buffer.capacity() < length / 2,
            "not sized from the header alone"
        );
        // Half of it in: room for the rest at once.
        let half = HEADER_LEN + length / 2;
        decoder.push(&wire[HEADER_LEN + 100..half]);
        assert_eq!(decoder.next_frame(), Ok(None));
        assert!(
            decoder.buffer.capacity() >= HEADER_LEN + length,
            "room for the whole frame"
        );
        let pointer = decoder.buffer.as_ptr();
        for piece in wire[half..].chunks(16 * 1024) {
            decoder.push(piece);
        }
        // Filled in place: never moved to a bigger buffer.
        assert_eq!(decoder.buffer.as_ptr(), pointer);
        assert_eq!(decoder.next_frame(), Ok(Some(frame)));
    }
}
