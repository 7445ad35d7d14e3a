//! Logging: a tracing subscriber that writes to stderr (stdout stays free for command output
//! such as `--dump-config`), in the configured format and filter.

use std::io::IsTerminal;

use reprise_node_config::{Configuration, LogFormat};
use tracing_subscriber::EnvFilter;

pub fn init(config: &Configuration) -> anyhow::Result<()> {
    // The filter was validated with the configuration; parse it the same way here.
    let filter = EnvFilter::builder()
        .parse(&config.log_filter)
        .map_err(|err| anyhow::anyhow!("invalid `log-filter`: {err}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match config.log_format {
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    installed.map_err(|err| anyhow::anyhow!("cannot install the logger: {err}"))
}
