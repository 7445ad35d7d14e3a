//! Which protocol version an invocation speaks. Reprise speaks V5 and V6 and picks
//! `min(deployment max, 6)` when the deployment accepts it.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ServiceProtocolVersion {
    V5,
    V6,
}

impl ServiceProtocolVersion {
    pub const MIN: ServiceProtocolVersion = ServiceProtocolVersion::V5;
    pub const MAX: ServiceProtocolVersion = ServiceProtocolVersion::V6;

    pub fn as_u32(self) -> u32 {
        match self {
            ServiceProtocolVersion::V5 => 5,
            ServiceProtocolVersion::V6 => 6,
        }
    }

    pub fn from_u32(version: u32) -> Option<Self> {
        match version {
            5 => Some(ServiceProtocolVersion::V5),
            6 => Some(ServiceProtocolVersion::V6),
            _ => None,
        }
    }

    /// The `content-type` (and `accept`) of an invocation request in this version.
    pub fn content_type(self) -> &'static str {
        match self {
            ServiceProtocolVersion::V5 => "application/vnd.restate.invocation.v5",
            ServiceProtocolVersion::V6 => "application/vnd.restate.invocation.v6",
        }
    }
}

impl fmt::Display for ServiceProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "V{}", self.as_u32())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error(
        "the deployment's protocol version range [{min}, {max}] is invalid: it must satisfy \
         1 <= minProtocolVersion <= maxProtocolVersion"
    )]
    InvalidRange { min: u32, max: u32 },
    #[error(
        "the deployment speaks service protocol versions [{min}, {max}], Reprise speaks [{}, {}]: \
         upgrade or downgrade the SDK so the ranges overlap",
        ServiceProtocolVersion::MIN.as_u32(),
        ServiceProtocolVersion::MAX.as_u32()
    )]
    NoOverlap { min: u32, max: u32 },
}

/// Picks the version for a deployment that speaks `[min, max]`.
pub fn negotiate(min: u32, max: u32) -> Result<ServiceProtocolVersion, VersionError> {
    if min < 1 || min > max {
        return Err(VersionError::InvalidRange { min, max });
    }
    let chosen = max.min(ServiceProtocolVersion::MAX.as_u32());
    if chosen < min {
        return Err(VersionError::NoOverlap { min, max });
    }
    ServiceProtocolVersion::from_u32(chosen).ok_or(VersionError::NoOverlap { min, max })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_common_version() {
        assert_eq!(negotiate(5, 7), Ok(ServiceProtocolVersion::V6));
        assert_eq!(negotiate(5, 6), Ok(ServiceProtocolVersion::V6));
        assert_eq!(negotiate(5, 5), Ok(ServiceProtocolVersion::V5));
        assert_eq!(negotiate(1, 6), Ok(ServiceProtocolVersion::V6));
    }

    #[test]
    fn refuses_ranges_without_overlap_naming_both() {
        let too_old = negotiate(1, 4).expect_err("no overlap");
        assert_eq!(too_old, VersionError::NoOverlap { min: 1, max: 4 });
        let text = too_old.to_string();
        assert!(text.contains("[1, 4]") && text.contains("[5, 6]"), "{text}");
        assert_eq!(
            negotiate(7, 8),
            Err(VersionError::NoOverlap { min: 7, max: 8 })
        );
        assert_eq!(
            negotiate(6, 5),
            Err(VersionError::InvalidRange { min: 6, max: 5 })
        );
        assert_eq!(
            negotiate(0, 6),
            Err(VersionError::InvalidRange { min: 0, max: 6 })
        );
    }
}
