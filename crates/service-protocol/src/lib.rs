//! The Restate service protocol, versions 5 and 6, as Reprise speaks it with SDK deployments:
//! the frame codec ([`codec`]), the protobuf messages ([`proto`], generated from our own
//! `proto/` file), the message type ids ([`MessageType`]), version negotiation ([`negotiate`])
//! and the discovery manifest ([`discovery`]).
//!
//! Nothing here does IO: bytes in, typed messages out, and every malformed input is a
//! [`ProtocolError`] or [`ManifestError`], never a panic.

pub mod awakeable;
pub mod codec;
pub mod discovery;
mod message_type;
mod version;

/// Messages generated from `proto/dev/restate/service/protocol.proto`.
#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/dev.restate.service.protocol.rs"));
}

pub use codec::{
    Frame, FrameDecoder, FrameHeader, FrameWriter, INLINE_PAYLOAD_LIMIT, ProtocolError,
};
pub use discovery::{DISCOVER_ACCEPT, Endpoint, ManifestError, parse_manifest};
pub use message_type::MessageType;
pub use version::{ServiceProtocolVersion, VersionError, negotiate};
