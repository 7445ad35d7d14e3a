//! Wall-clock time as stored on disk and sent over the wire.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch. Stored rather than `SystemTime` so that the on-disk form
/// is one integer and comparisons are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MillisSinceEpoch(u64);

impl MillisSinceEpoch {
    pub const UNIX_EPOCH: MillisSinceEpoch = MillisSinceEpoch(0);

    pub const fn new(millis: u64) -> Self {
        Self(millis)
    }

    /// The current wall-clock time. A clock set before 1970 reads as the epoch rather than
    /// failing: time values order events, they never gate correctness on their own.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    pub fn as_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
}

impl fmt::Display for MillisSinceEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_the_epoch_and_monotone_enough() {
        let a = MillisSinceEpoch::now();
        assert!(a > MillisSinceEpoch::UNIX_EPOCH);
        let as_time = a.as_system_time();
        let back = as_time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .ok();
        assert_eq!(back, Some(u128::from(a.as_u64())));
    }
}
