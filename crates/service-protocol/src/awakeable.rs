//! Awakeable ids as the SDKs make them (protocol V4 and later): `sign_1` followed by the
//! URL-safe base64 (no padding) of the owning invocation's raw id (24 bytes) and the signal
//! index (big-endian u32, 17 and above). Resolving one delivers that signal to that invocation.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use reprise_types::InvocationId;

const PREFIX: &str = "sign_1";
const LEGACY_PREFIX: &str = "prom_1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwakeableId {
    pub invocation_id: InvocationId,
    pub signal_index: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwakeableIdError {
    #[error("`{0}` is an awakeable id of protocol versions 1 to 3, which Reprise does not serve")]
    Legacy(String),
    #[error("`{0}` is not an awakeable id (expected `sign_1` and 38 base64url characters)")]
    Malformed(String),
}

impl FromStr for AwakeableId {
    type Err = AwakeableIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || AwakeableIdError::Malformed(text.chars().take(80).collect());
        if text.starts_with(LEGACY_PREFIX) {
            return Err(AwakeableIdError::Legacy(text.chars().take(80).collect()));
        }
        let encoded = text.strip_prefix(PREFIX).ok_or_else(malformed)?;
        // Bounded before decoding: 28 bytes are at most 40 characters with padding.
        if encoded.len() > 40 {
            return Err(malformed());
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .or_else(|_| URL_SAFE.decode(encoded))
            .map_err(|_| malformed())?;
        if bytes.len() != InvocationId::RAW_LEN + 4 {
            return Err(malformed());
        }
        let (id, index) = bytes.split_at(InvocationId::RAW_LEN);
        let invocation_id = InvocationId::from_bytes(id).map_err(|_| malformed())?;
        let signal_index = u32::from_be_bytes(index.try_into().map_err(|_| malformed())?);
        Ok(Self {
            invocation_id,
            signal_index,
        })
    }
}

impl fmt::Display for AwakeableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = self.invocation_id.to_bytes().to_vec();
        bytes.extend_from_slice(&self.signal_index.to_be_bytes());
        write!(f, "{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's vector: id bytes 01..18, the first awakeable (signal 17).
    const VECTOR: &str = "sign_1AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYAAAAEQ";

    #[test]
    fn the_reference_vector_parses_and_prints_back() {
        let id: AwakeableId = VECTOR.parse().expect("parses");
        let raw: Vec<u8> = (1..=24).collect();
        assert_eq!(id.invocation_id.to_bytes().to_vec(), raw);
        assert_eq!(id.signal_index, 17);
        assert_eq!(id.to_string(), VECTOR);
        let padded = format!("{VECTOR}==");
        assert_eq!(padded.parse::<AwakeableId>(), Ok(id));
    }

    #[test]
    fn anything_else_is_refused_without_panicking() {
        for bad in [
            "",
            "sign_1",
            "sign_2AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYAAAAEQ",
            "sign_1AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcY",
            "sign_1!!!!",
            "inv_1aiqX0vFEFNH1Umgre58JiCLgHfTtztYK5",
        ] {
            assert!(
                matches!(
                    bad.parse::<AwakeableId>(),
                    Err(AwakeableIdError::Malformed(_))
                ),
                "{bad}"
            );
        }
        let long = format!("sign_1{}", "A".repeat(10_000));
        assert!(long.parse::<AwakeableId>().is_err());
        assert!(matches!(
            "prom_1AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYAAAAEQ".parse::<AwakeableId>(),
            Err(AwakeableIdError::Legacy(_))
        ));
    }
}
