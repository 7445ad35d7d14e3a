//! The stored forms of the metadata store's commands and values: prost messages from
//! `proto/metadata.proto`. Values' bytes are kept as the writer gave them.

use prost::Message;
use reprise_raft_storage::{DecodeError, PayloadCodec};

use crate::types::{Command, Precondition, VersionedValue};

/// Generated from `proto/metadata.proto`.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/reprise.metadata.v1.rs"));
}

fn precondition_to(precondition: Precondition) -> proto::Precondition {
    use proto::precondition::Kind;
    let kind = match precondition {
        Precondition::None => Kind::None(proto::precondition::Always {}),
        Precondition::DoesNotExist => Kind::DoesNotExist(proto::precondition::DoesNotExist {}),
        Precondition::MatchesVersion(version) => Kind::MatchesVersion(version),
    };
    proto::Precondition { kind: Some(kind) }
}

fn precondition_from(
    precondition: Option<proto::Precondition>,
) -> Result<Precondition, DecodeError> {
    use proto::precondition::Kind;
    let kind = precondition
        .and_then(|p| p.kind)
        .ok_or_else(|| DecodeError::missing("a write's precondition"))?;
    Ok(match kind {
        Kind::None(_) => Precondition::None,
        Kind::DoesNotExist(_) => Precondition::DoesNotExist,
        Kind::MatchesVersion(version) => Precondition::MatchesVersion(version),
    })
}

impl PayloadCodec for Command {
    type Message = proto::Command;

    fn to_message(&self) -> proto::Command {
        use proto::command::Command as Kind;
        let command = match self {
            Command::Put {
                key,
                value,
                precondition,
            } => Kind::Put(proto::Put {
                key: key.clone(),
                value: value.clone(),
                precondition: Some(precondition_to(*precondition)),
            }),
            Command::Delete { key, precondition } => Kind::Delete(proto::Delete {
                key: key.clone(),
                precondition: Some(precondition_to(*precondition)),
            }),
        };
        proto::Command {
            command: Some(command),
        }
    }

    fn from_message(command: proto::Command) -> Result<Self, DecodeError> {
        use proto::command::Command as Kind;
        let command = command
            .command
            .ok_or_else(|| DecodeError::missing("a command"))?;
        Ok(match command {
            Kind::Put(put) => Command::Put {
                key: put.key,
                value: put.value,
                precondition: precondition_from(put.precondition)?,
            },
            Kind::Delete(delete) => Command::Delete {
                key: delete.key,
                precondition: precondition_from(delete.precondition)?,
            },
        })
    }
}

pub fn encode_value(value: &VersionedValue) -> Vec<u8> {
    proto::VersionedValue {
        version: value.version,
        value: value.value.clone(),
    }
    .encode_to_vec()
}

pub fn decode_value(bytes: &[u8]) -> Result<VersionedValue, DecodeError> {
    let value = proto::VersionedValue::decode(bytes)?;
    Ok(VersionedValue {
        version: value.version,
        value: value.value,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn commands_and_values_decode_to_what_was_encoded() {
        for command in [
            Command::Put {
                key: "schema".into(),
                value: Bytes::from_static(b"\x00\x01binary"),
                precondition: Precondition::MatchesVersion(7),
            },
            Command::Delete {
                key: "k".into(),
                precondition: Precondition::DoesNotExist,
            },
            Command::Delete {
                key: "k".into(),
                precondition: Precondition::None,
            },
        ] {
            assert_eq!(
                Command::decode_payload(command.encode_payload().into()),
                Ok(command)
            );
        }
        let value = VersionedValue {
            version: 3,
            value: Bytes::from_static(b"v"),
        };
        assert_eq!(decode_value(&encode_value(&value)), Ok(value));
        assert!(Command::decode_payload(Bytes::from_static(&[0x0a, 0x02, 0x0a])).is_err());
        // A put without its precondition.
        let put = proto::Command {
            command: Some(proto::command::Command::Put(proto::Put::default())),
        };
        assert!(Command::decode_payload(put.encode_to_vec().into()).is_err());
    }
}
