//! The one place configuration is loaded. Layers, each overriding the one before it:
//!
//! 1. built-in defaults ([`Configuration::default`]);
//! 2. the TOML file named by `--config-file` or `REPRISE_CONFIG`;
//! 3. the environment: `RUST_LOG` sets `log-filter`, then every `REPRISE_*` variable sets one
//!    key (`__` separates nesting levels and `_` inside a name becomes `-`, so
//!    `REPRISE_ADMIN__BIND_ADDRESS` sets `admin.bind-address`);
//! 4. command-line flags;
//!
//! and then [`Configuration::validate`]. Every layer is a separate figment provider named after
//! its [`Origin`], so an error can say exactly which file, variable or flag to fix.

use std::ffi::OsString;
use std::path::PathBuf;

use figment::error::Kind;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use crate::cli::{CliOverrides, FlagValue};
use crate::error::{ConfigError, Origin, Problem};
use crate::options::Configuration;

const ENV_PREFIX: &str = "REPRISE_";
/// Names the config file; it is not a configuration key itself.
const CONFIG_FILE_ENV: &str = "REPRISE_CONFIG";

/// Loads the configuration from the process environment and the given flags.
pub fn load(cli: &CliOverrides) -> Result<Configuration, ConfigError> {
    load_from(cli, std::env::vars_os())
}

/// Loads the configuration from the given environment instead of the process's, so tests can
/// run side by side without touching global state.
pub fn load_from(
    cli: &CliOverrides,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Configuration, ConfigError> {
    let env = utf8_env(env)?;
    let mut layers = Layers::default();
    layers.push(
        Origin::Default,
        Serialized::defaults(Configuration::default()),
    );

    let config_file = cli.config_file.clone().or_else(|| {
        env.iter()
            .find(|(name, _)| name == CONFIG_FILE_ENV)
            .map(|(_, value)| PathBuf::from(value))
    });
    if let Some(path) = config_file {
        let text = std::fs::read_to_string(&path).map_err(|err| {
            ConfigError::single(
                None,
                Some(Origin::File(path.clone())),
                format!("cannot read the file: {err}"),
            )
        })?;
        layers.push(Origin::File(path), Toml::string(&text));
    }

    if let Some((_, filter)) = env.iter().find(|(name, _)| name == "RUST_LOG") {
        layers.push(
            Origin::Env("RUST_LOG".to_owned()),
            Serialized::default("log-filter", filter.clone()),
        );
    }
    for (name, value) in &env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if name == CONFIG_FILE_ENV {
            continue;
        }
        let key = env_key(rest).ok_or_else(|| {
            ConfigError::single(
                None,
                Some(Origin::Env(name.clone())),
                "does not name a configuration key: use REPRISE_<SECTION>__<KEY>, \
                 e.g. REPRISE_ADMIN__BIND_ADDRESS"
                    .to_owned(),
            )
        })?;
        // Values are parsed like TOML scalars (`true`, `8`, `[a, b]`); everything else is text.
        let value: Value = value.parse().unwrap_or_else(|never| match never {});
        layers.push(Origin::Env(name.clone()), Serialized::default(&key, value));
    }

    for (key, value) in cli.overrides() {
        let origin = Origin::Flag(format!("--{key}"));
        match value {
            FlagValue::Text(v) => layers.push(origin, Serialized::default(key, v)),
            FlagValue::Bool(v) => layers.push(origin, Serialized::default(key, v)),
            FlagValue::Number(v) => layers.push(origin, Serialized::default(key, v)),
        }
    }

    let config: Configuration = layers
        .figment
        .extract()
        .map_err(|err| layers.explain(err))?;
    config.validate().map_err(|err| layers.attribute(err))?;
    Ok(config)
}

/// `ADMIN__BIND_ADDRESS` → `admin.bind-address`; `None` when a level is empty.
fn env_key(rest: &str) -> Option<String> {
    let levels: Vec<String> = rest
        .split("__")
        .map(|level| level.to_ascii_lowercase().replace('_', "-"))
        .collect();
    if levels.iter().any(|level| level.is_empty()) {
        return None;
    }
    Some(levels.join("."))
}

/// Only variables with our prefix must be valid UTF-8; the rest are none of our business. A
/// prefixed variable whose value is not UTF-8 is an error rather than a silently ignored setting.
fn utf8_env(
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in env {
        let Ok(name) = name.into_string() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => out.push((name, value)),
            Err(_) if name.starts_with(ENV_PREFIX) => {
                return Err(ConfigError::single(
                    None,
                    Some(Origin::Env(name)),
                    "the value is not valid UTF-8".to_owned(),
                ));
            }
            Err(_) => {}
        }
    }
    Ok(out)
}

/// The figment under construction, and the origin of each of its providers.
#[derive(Default)]
struct Layers {
    figment: Figment,
    origins: Vec<Origin>,
}

impl Layers {
    fn push(&mut self, origin: Origin, provider: impl Provider) {
        let tagged = Tagged {
            name: self.tag(self.origins.len()),
            inner: provider,
        };
        self.figment = std::mem::take(&mut self.figment).merge(tagged);
        self.origins.push(origin);
    }

    fn tag(&self, index: usize) -> String {
        format!("reprise-layer-{index}")
    }

    fn origin_of(&self, metadata: Option<&Metadata>) -> Option<Origin> {
        let name = metadata?.name.as_ref();
        let index: usize = name.strip_prefix("reprise-layer-")?.parse().ok()?;
        self.origins.get(index).cloned()
    }

    /// Turns a figment extraction error into problems with keys and origins.
    fn explain(&self, err: figment::Error) -> ConfigError {
        let problems = err
            .into_iter()
            .map(|err| {
                // For an unknown key figment's path already ends with the key itself.
                let path = &err.path;
                let key = (!path.is_empty()).then(|| path.join("."));
                let origin = self.origin_of(err.metadata.as_ref()).or_else(|| {
                    key.as_ref()
                        .and_then(|key| self.origin_of(self.figment.find_metadata(key)))
                });
                Problem {
                    key,
                    origin,
                    message: describe(&err.kind),
                }
            })
            .collect();
        ConfigError::new(problems)
    }

    /// Adds the origin of each key to validation problems.
    fn attribute(&self, err: ConfigError) -> ConfigError {
        let problems = err
            .problems()
            .iter()
            .cloned()
            .map(|mut problem| {
                if problem.origin.is_none()
                    && let Some(key) = &problem.key
                {
                    problem.origin = self.origin_of(self.figment.find_metadata(key));
                }
                problem
            })
            .collect();
        ConfigError::new(problems)
    }
}

/// A provider under a name of ours, so errors can be traced back to their [`Origin`].
struct Tagged<P> {
    name: String,
    inner: P,
}

impl<P: Provider> Provider for Tagged<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// Says what was wrong and what is accepted, in words an operator knows.
fn describe(kind: &Kind) -> String {
    match kind {
        Kind::UnknownField(field, expected) => format!(
            "unknown key `{field}`; the keys accepted here are: {}",
            expected.join(", ")
        ),
        Kind::UnknownVariant(value, expected) => format!(
            "unknown value `{value}`; expected one of: {}",
            expected.join(", ")
        ),
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("found {actual}, expected {}", friendly_expected(expected))
        }
        other => other.to_string(),
    }
}

fn friendly_expected(expected: &str) -> String {
    match expected {
        "u16" => "a whole number from 0 to 65535".to_owned(),
        "u32" => "a whole number from 0 to 4294967295".to_owned(),
        "u64" | "usize" => "a whole number".to_owned(),
        "f64" | "f32" => "a number".to_owned(),
        "a boolean" => "`true` or `false`".to_owned(),
        other => other.to_owned(),
    }
}
