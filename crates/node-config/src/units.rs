//! Value types with the human-friendly text forms operators write: durations such as `500ms`,
//! `1m` or `1h 30m`, and sizes such as `32 MiB`. Both serialize back to a form that parses to
//! the same value, so `--dump-config` output is a valid configuration file.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as text: `500ms`, `10s`, `1m`, `1h 30m`, `2days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FriendlyDuration(Duration);

impl FriendlyDuration {
    pub const ZERO: FriendlyDuration = FriendlyDuration(Duration::ZERO);

    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    pub const fn as_duration(self) -> Duration {
        self.0
    }
}

impl From<Duration> for FriendlyDuration {
    fn from(value: Duration) -> Self {
        Self(value)
    }
}

impl fmt::Display for FriendlyDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            f.write_str("0s")
        } else {
            write!(f, "{}", humantime::format_duration(self.0))
        }
    }
}

impl std::str::FromStr for FriendlyDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(Self)
            .map_err(|err| format!("`{s}` is not a duration ({err})"))
    }
}

pub(crate) const DURATION_EXPECTED: &str = "a duration such as `500ms`, `10s`, `1m` or `1h 30m`";

impl Serialize for FriendlyDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FriendlyDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = FriendlyDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(|_| {
                    E::invalid_value(de::Unexpected::Str(v), &self as &dyn de::Expected)
                })
            }
            // `0` alone is unambiguous, and environment variables such as `..._TIMEOUT=0` arrive
            // as numbers; any other bare number lacks a unit and is refused.
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                if v == 0 {
                    Ok(FriendlyDuration::ZERO)
                } else {
                    Err(E::invalid_value(de::Unexpected::Unsigned(v), &self))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// A size in bytes, written as `32 MiB`, `512 KiB`, `1.5 GiB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteCount(u64);

impl ByteCount {
    pub const fn new(bytes: u64) -> Self {
        Self(bytes)
    }

    pub const fn mib(mib: u64) -> Self {
        Self(mib * 1024 * 1024)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The size as `usize`, saturating on targets where it does not fit.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for ByteCount {
    /// Prints the largest binary unit that represents the value exactly, so the text parses
    /// back to the same number of bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (size, unit) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{} {unit}", self.0 / size);
            }
        }
        write!(f, "{} B", self.0)
    }
}

pub(crate) const SIZE_EXPECTED: &str = "a size such as `32 MiB`, `512 KiB` or a number of bytes";

impl std::str::FromStr for ByteCount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(|size| Self(size.as_u64()))
            .map_err(|err| format!("`{s}` is not a size ({err})"))
    }
}

impl Serialize for ByteCount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIZE_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(|_| {
                    E::invalid_value(de::Unexpected::Str(v), &self as &dyn de::Expected)
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ByteCount(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(ByteCount)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

pub(crate) const SOCKET_ADDR_EXPECTED: &str =
    "an address such as `0.0.0.0:8080` or `[::1]:9070` (ip:port, port 0 to 65535)";

/// Serde adapter for socket addresses that says what a valid one looks like when it fails.
pub(crate) mod socket_addr {
    use super::*;

    pub fn serialize<S: Serializer>(addr: &SocketAddr, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(addr)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
        struct AddrVisitor;
        impl Visitor<'_> for AddrVisitor {
            type Value = SocketAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SOCKET_ADDR_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.trim().parse().map_err(|_| {
                    E::invalid_value(de::Unexpected::Str(v), &self as &dyn de::Expected)
                })
            }
        }
        deserializer.deserialize_str(AddrVisitor)
    }
}

/// Serde adapter for text keys: environment variables are parsed like TOML scalars, so a node
/// named `123` arrives as a number. Any scalar is accepted here and kept as its text.
pub(crate) mod text {
    use super::*;

    struct TextVisitor;

    impl Visitor<'_> for TextVisitor {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("text")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.to_owned())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(v.to_string())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }

    pub fn deserialize_path<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<std::path::PathBuf, D::Error> {
        deserialize(deserializer).map(std::path::PathBuf::from)
    }

    pub fn deserialize_option<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        deserialize(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_human_forms_and_print_back() {
        for (text, expected) in [
            ("500ms", Duration::from_millis(500)),
            ("1m", Duration::from_secs(60)),
            ("1h 30m", Duration::from_secs(5400)),
            ("0s", Duration::ZERO),
        ] {
            let parsed: FriendlyDuration = text.parse().expect("valid duration");
            assert_eq!(parsed.as_duration(), expected, "{text}");
            let again: FriendlyDuration = parsed.to_string().parse().expect("round trip");
            assert_eq!(again, parsed);
        }
        assert!("ten seconds".parse::<FriendlyDuration>().is_err());
        assert!("10".parse::<FriendlyDuration>().is_err());
    }

    #[test]
    fn sizes_parse_binary_units_and_print_exactly() {
        let size: ByteCount = "32 MiB".parse().expect("valid size");
        assert_eq!(size, ByteCount::mib(32));
        assert_eq!(size.to_string(), "32 MiB");
        let odd = ByteCount::new(1_500_001);
        assert_eq!(odd.to_string(), "1500001 B");
        assert_eq!(odd.to_string().parse::<ByteCount>(), Ok(odd));
        assert_eq!("1024".parse::<ByteCount>(), Ok(ByteCount::new(1024)));
        assert!("lots".parse::<ByteCount>().is_err());
    }
}
