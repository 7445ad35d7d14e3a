//! Ids with the text form `<prefix>_1<base62>` (`inv_1…`, `dp_1…`): a scheme version `1`, then
//! each integer part as fixed-width base62 (alphabet `0-9a-zA-Z`, left-padded with `0`).
//!
//! Compatibility detail: the integer that is base62-encoded is the value's big-endian bytes read
//! as a little-endian integer (a byte swap), as the reference implementation does on every
//! common host. Without the swap, ids would not match the ones SDK tooling and users know.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::PartitionKey;

const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const U64_WIDTH: usize = 11;
const U128_WIDTH: usize = 22;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    #[error("`{text}` is not a valid {kind} id: expected `{prefix}_1` followed by base62 digits")]
    Malformed {
        kind: &'static str,
        prefix: &'static str,
        text: String,
    },
    #[error("an invocation id is 24 bytes, got {0}")]
    RawLength(usize),
}

fn encode_base62(mut value: u128, width: usize, out: &mut String) {
    let mut digits = [b'0'; U128_WIDTH];
    for slot in digits[..width].iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    out.extend(digits[..width].iter().map(|b| char::from(*b)));
}

fn decode_base62(text: &str) -> Option<u128> {
    text.bytes().try_fold(0u128, |acc, b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'z' => b - b'a' + 10,
            b'A'..=b'Z' => b - b'A' + 36,
            _ => return None,
        };
        acc.checked_mul(62)?.checked_add(u128::from(digit))
    })
}

/// Splits `<prefix>_1<rest>` and returns `rest`.
fn strip_scheme<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.strip_prefix(prefix)?.strip_prefix("_1")
}

/// The id of one invocation: the partition key it lives under and a 128-bit unique part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InvocationId {
    partition_key: PartitionKey,
    uuid: u128,
}

impl InvocationId {
    pub const RAW_LEN: usize = 24;
    const PREFIX: &'static str = "inv";

    pub const fn new(partition_key: PartitionKey, uuid: u128) -> Self {
        Self {
            partition_key,
            uuid,
        }
    }

    pub const fn partition_key(self) -> PartitionKey {
        self.partition_key
    }

    pub const fn uuid(self) -> u128 {
        self.uuid
    }

    /// The raw form sent in `StartMessage.id`: partition key then uuid, both big-endian.
    pub fn to_bytes(self) -> [u8; Self::RAW_LEN] {
        let mut out = [0u8; Self::RAW_LEN];
        out[..8].copy_from_slice(&self.partition_key.as_u64().to_be_bytes());
        out[8..].copy_from_slice(&self.uuid.to_be_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdParseError> {
        let raw: &[u8; Self::RAW_LEN] = bytes
            .try_into()
            .map_err(|_| IdParseError::RawLength(bytes.len()))?;
        let mut key = [0u8; 8];
        key.copy_from_slice(&raw[..8]);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&raw[8..]);
        Ok(Self::new(
            PartitionKey::new(u64::from_be_bytes(key)),
            u128::from_be_bytes(uuid),
        ))
    }

    fn malformed(text: &str) -> IdParseError {
        IdParseError::Malformed {
            kind: "invocation",
            prefix: Self::PREFIX,
            text: text.to_owned(),
        }
    }
}

impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(5 + U64_WIDTH + U128_WIDTH);
        out.push_str("inv_1");
        encode_base62(
            u128::from(self.partition_key.as_u64().swap_bytes()),
            U64_WIDTH,
            &mut out,
        );
        encode_base62(self.uuid.swap_bytes(), U128_WIDTH, &mut out);
        f.write_str(&out)
    }
}

impl FromStr for InvocationId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = strip_scheme(s, Self::PREFIX).ok_or_else(|| Self::malformed(s))?;
        if rest.len() != U64_WIDTH + U128_WIDTH || !rest.is_ascii() {
            return Err(Self::malformed(s));
        }
        let (key, uuid) = rest.split_at(U64_WIDTH);
        let key = decode_base62(key)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| Self::malformed(s))?;
        let uuid = decode_base62(uuid).ok_or_else(|| Self::malformed(s))?;
        Ok(Self::new(
            PartitionKey::new(key.swap_bytes()),
            uuid.swap_bytes(),
        ))
    }
}

/// The id of a registered deployment, printed `dp_1…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeploymentId(u128);

impl DeploymentId {
    const PREFIX: &'static str = "dp";

    pub const fn new(value: u128) -> Self {
        Self(value)
    }

    pub const fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(4 + U128_WIDTH);
        out.push_str("dp_1");
        encode_base62(self.0.swap_bytes(), U128_WIDTH, &mut out);
        f.write_str(&out)
    }
}

impl FromStr for DeploymentId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || IdParseError::Malformed {
            kind: "deployment",
            prefix: Self::PREFIX,
            text: s.to_owned(),
        };
        let rest = strip_scheme(s, Self::PREFIX).ok_or_else(malformed)?;
        if rest.len() != U128_WIDTH {
            return Err(malformed());
        }
        decode_base62(rest)
            .map(|v| Self(v.swap_bytes()))
            .ok_or_else(malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_vectors() {
        let bytes: Vec<u8> = (1u8..=24).collect();
        let id = InvocationId::from_bytes(&bytes).expect("24 bytes");
        assert_eq!(id.to_string(), "inv_10GJfy0GGPIZ0JsmI2YhihwhbLzDth0Jvz");
        assert_eq!(id.to_bytes().as_slice(), bytes.as_slice());

        let documented: InvocationId = "inv_1aiqX0vFEFNH1Umgre58JiCLgHfTtztYK5"
            .parse()
            .expect("valid id");
        assert_eq!(documented.partition_key().as_u64(), 0x9ddd_3f37_ac7d_f077);
        assert_eq!(documented.uuid(), 0x018e_e70d_4997_d029_7898_bd5c_976d_b93e);
        assert_eq!(
            documented.to_string(),
            "inv_1aiqX0vFEFNH1Umgre58JiCLgHfTtztYK5"
        );
    }

    #[test]
    fn extremes_round_trip() {
        for (key, uuid) in [(0, 0), (u64::MAX, u128::MAX), (1, 1 << 127)] {
            let id = InvocationId::new(PartitionKey::new(key), uuid);
            let text = id.to_string();
            assert_eq!(text.len(), 38);
            assert_eq!(text.parse::<InvocationId>(), Ok(id));
        }
        let dp = DeploymentId::new(u128::MAX - 7);
        assert_eq!(dp.to_string().parse::<DeploymentId>(), Ok(dp));
        assert!(dp.to_string().starts_with("dp_1"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "inv_1",
            "inv_2aiqX0vFEFNH1Umgre58JiCLgHfTtztYK5",
            "dp_1aiqX0vFEFNH1Umgre58JiCLgHfTtztYK5",
            "inv_1aiqX0vFEFNH1Umgre58JiCLgHfTtztYK!",
            "inv_1ééééééééééééééééé",
        ] {
            assert!(text.parse::<InvocationId>().is_err(), "{text}");
        }
        // Right length, but the digits overflow the integer they encode.
        let overflowing = format!("inv_1{}", "Z".repeat(33));
        assert!(overflowing.parse::<InvocationId>().is_err());
        assert!("dp_1".parse::<DeploymentId>().is_err());
        let overflowing = format!("dp_1{}", "Z".repeat(22));
        assert!(overflowing.parse::<DeploymentId>().is_err());
        assert_eq!(
            InvocationId::from_bytes(&[1, 2, 3]),
            Err(IdParseError::RawLength(3))
        );
    }
}
