//! Configuration errors. Each problem names the key, where its value came from and what would
//! be accepted, so that the one message an operator sees says what to fix and where.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A TOML configuration file.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, as written (`--base-dir`).
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(flag) => write!(f, "command-line flag {flag}"),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted kebab-case key (`admin.bind-address`), when the problem is about one key.
    pub key: Option<String>,
    pub origin: Option<Origin>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, &self.origin) {
            (Some(key), Some(origin)) => write!(f, "`{key}` (from {origin}): {}", self.message),
            (Some(key), None) => write!(f, "`{key}`: {}", self.message),
            (None, Some(origin)) => write!(f, "{origin}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// The configuration could not be loaded or is not valid. Nothing has been touched when this
/// is returned: the node refuses to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    problems: Vec<Problem>,
}

impl ConfigError {
    pub(crate) fn new(problems: Vec<Problem>) -> Self {
        debug_assert!(!problems.is_empty());
        Self { problems }
    }

    pub(crate) fn single(key: Option<String>, origin: Option<Origin>, message: String) -> Self {
        Self::new(vec![Problem {
            key,
            origin,
            message,
        }])
    }

    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid configuration: {one}"),
            many => {
                f.write_str("invalid configuration:")?;
                for problem in many {
                    write!(f, "\n  - {problem}")?;
                }
                Ok(())
            }
        }
    }
}
