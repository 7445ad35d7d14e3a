//! `docs/configuration.md` must document every key the configuration has, with its environment
//! variable, so the reference cannot silently fall behind the code.

use reprise_node_config::{Configuration, RetryPolicy};

/// Every dotted key of a TOML table, leaves only.
fn keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => keys(inner, &full, out),
            _ => out.push(full),
        }
    }
}

fn env_name(key: &str) -> String {
    let levels: Vec<String> = key
        .split('.')
        .map(|level| level.to_ascii_uppercase().replace('-', "_"))
        .collect();
    format!("REPRISE_{}", levels.join("__"))
}

#[test]
fn every_key_is_documented_with_its_environment_variable() {
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let doc = std::fs::read_to_string(doc_path).expect("docs/configuration.md exists");
    // Set the optional keys so they appear in the dump too.
    let mut config = Configuration {
        advertised_address: Some("http://127.0.0.1:5122".into()),
        force_node_id: Some(4),
        ..Configuration::default()
    };
    config.worker.invoker.retry_policy = RetryPolicy {
        max_attempts: Some(3),
        ..RetryPolicy::default()
    };
    let dumped: toml::Table =
        toml::from_str(&config.to_toml().expect("serializable")).expect("valid toml");
    let mut all = Vec::new();
    keys(&dumped, "", &mut all);
    assert!(all.len() > 15, "found only {all:?}");
    for key in all {
        let row = doc
            .lines()
            .find(|line| line.starts_with(&format!("| `{key}` |")))
            .unwrap_or_else(|| panic!("docs/configuration.md has no row for `{key}`"));
        assert!(
            row.contains(&format!("`{}`", env_name(&key))),
            "the row for `{key}` must name `{}`",
            env_name(&key)
        );
    }
}
