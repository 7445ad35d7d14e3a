//! The configuration loader end to end: layering order, environment mapping, and that every
//! rejection names the key, where its value came from and what is accepted.

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use reprise_node_config::{CliOverrides, ConfigError, Configuration, Origin, Role, load_from};

fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    vars.iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    file.write_all(text.as_bytes()).expect("write config");
    file
}

fn with_file(file: &tempfile::NamedTempFile) -> CliOverrides {
    CliOverrides {
        config_file: Some(file.path().to_owned()),
        ..CliOverrides::default()
    }
}

fn load_err(cli: &CliOverrides, vars: &[(&str, &str)]) -> ConfigError {
    load_from(cli, env(vars)).expect_err("configuration must be refused")
}

#[test]
fn defaults_alone_make_a_complete_single_node() {
    let config = load_from(&CliOverrides::default(), env(&[])).expect("defaults are valid");
    assert_eq!(config.cluster_name, "localcluster");
    assert_eq!(config.base_dir, std::path::PathBuf::from("./reprise-data"));
    assert!(Role::ALL.iter().all(|role| config.roles.contains(*role)));
    assert_eq!(config.bind_address.port(), 5122);
    assert_eq!(config.ingress.bind_address.port(), 8080);
    assert_eq!(config.admin.bind_address.port(), 9070);
    assert_eq!(
        config.shutdown_timeout.as_duration(),
        Duration::from_secs(60)
    );
    assert_eq!(config.log_filter, "info,openraft=warn");
    assert!(config.auto_provision);
    assert!(!config.node_name.is_empty());
    assert_eq!(config.node_dir(), config.base_dir.join(&config.node_name));
    assert_eq!(config.advertised_address(), "http://127.0.0.1:5122");
}

#[test]
fn each_layer_overrides_the_one_before() {
    let file = config_file(
        r#"
        cluster-name = "from-file"
        node-name = "from-file"
        log-filter = "debug"
        shutdown-timeout = "30s"
        [admin]
        bind-address = "127.0.0.1:1111"
        "#,
    );
    // File over defaults.
    let config = load_from(&with_file(&file), env(&[])).expect("valid");
    assert_eq!(config.cluster_name, "from-file");
    assert_eq!(config.admin.bind_address.to_string(), "127.0.0.1:1111");
    assert_eq!(
        config.shutdown_timeout.as_duration(),
        Duration::from_secs(30)
    );

    // Environment over file; REPRISE_LOG_FILTER over RUST_LOG.
    let vars = [
        ("REPRISE_CLUSTER_NAME", "from-env"),
        ("REPRISE_NODE_NAME", "from-env"),
        ("REPRISE_ADMIN__BIND_ADDRESS", "127.0.0.1:19070"),
        ("RUST_LOG", "warn"),
        ("REPRISE_LOG_FILTER", "trace"),
    ];
    let config = load_from(&with_file(&file), env(&vars)).expect("valid");
    assert_eq!(config.cluster_name, "from-env");
    assert_eq!(config.admin.bind_address.to_string(), "127.0.0.1:19070");
    assert_eq!(config.log_filter, "trace");
    assert_eq!(
        config.shutdown_timeout.as_duration(),
        Duration::from_secs(30),
        "untouched keys keep the file's value"
    );

    // Flags over environment.
    let cli = CliOverrides {
        cluster_name: Some("from-flag".into()),
        roles: Some("worker,admin".into()),
        ..with_file(&file)
    };
    let config = load_from(&cli, env(&vars)).expect("valid");
    assert_eq!(config.cluster_name, "from-flag");
    assert_eq!(config.node_name, "from-env");
    assert!(config.roles.contains(Role::Worker) && !config.roles.contains(Role::Ingress));
}

#[test]
fn rust_log_sets_the_log_filter() {
    let config = load_from(&CliOverrides::default(), env(&[("RUST_LOG", "warn")])).expect("valid");
    assert_eq!(config.log_filter, "warn");
}

#[test]
fn reprise_config_names_the_file() {
    let file = config_file("cluster-name = \"via-env\"\n");
    let path = file.path().to_string_lossy().into_owned();
    let config =
        load_from(&CliOverrides::default(), env(&[("REPRISE_CONFIG", &path)])).expect("valid");
    assert_eq!(config.cluster_name, "via-env");
}

#[test]
fn env_names_map_to_nested_kebab_case_keys() {
    let vars = [
        ("REPRISE_WORKER__INVOKER__INACTIVITY_TIMEOUT", "0s"),
        ("REPRISE_WORKER__INVOKER__CONCURRENT_INVOCATIONS_LIMIT", "8"),
        ("REPRISE_WORKER__INVOKER__RETRY_POLICY__MAX_ATTEMPTS", "3"),
        ("REPRISE_INGRESS__REQUEST_SIZE_LIMIT", "1 MiB"),
        ("REPRISE_DEFAULT_NUM_PARTITIONS", "4"),
        ("REPRISE_AUTO_PROVISION", "false"),
        ("REPRISE_ROLES", "worker,ingress"),
        ("REPRISE_NODE_NAME", "123"),
        ("REPRISE_LOG_FORMAT", "json"),
        ("REPRISE_WORKER__NUM_TIMERS_IN_MEMORY_LIMIT", "16"),
    ];
    let config = load_from(&CliOverrides::default(), env(&vars)).expect("valid");
    let invoker = &config.worker.invoker;
    assert_eq!(invoker.inactivity_timeout.as_duration(), Duration::ZERO);
    assert_eq!(invoker.concurrent_invocations_limit, 8);
    assert_eq!(config.worker.num_timers_in_memory_limit, 16);
    assert_eq!(invoker.retry_policy.max_attempts, Some(3));
    assert_eq!(config.ingress.request_size_limit.as_u64(), 1 << 20);
    assert_eq!(config.default_num_partitions, 4);
    assert!(!config.auto_provision);
    assert!(config.roles.contains(Role::Ingress) && !config.roles.contains(Role::Admin));
    assert_eq!(config.node_name, "123", "numeric-looking text stays text");
}

#[test]
fn dumped_configuration_loads_back_unchanged() {
    let vars = [
        ("REPRISE_NODE_NAME", "dumped"),
        ("REPRISE_WORKER__INVOKER__RETRY_POLICY__MAX_ATTEMPTS", "5"),
        ("REPRISE_ADVERTISED_ADDRESS", "http://10.1.2.3:5122"),
    ];
    let config = load_from(&CliOverrides::default(), env(&vars)).expect("valid");
    let dumped = config.to_toml().expect("serializable");
    let file = config_file(&dumped);
    let reloaded = load_from(&with_file(&file), env(&[])).expect("dump is a valid config");
    assert_eq!(reloaded, config, "dump:\n{dumped}");
}

fn only_problem(err: &ConfigError) -> &reprise_node_config::ConfigError {
    assert_eq!(err.problems().len(), 1, "{err}");
    err
}

#[test]
fn a_misspelt_key_in_a_file_is_named_with_the_file() {
    let file = config_file("[ingress]\nbind-adress = \"0.0.0.0:8080\"\n");
    let err = load_err(&with_file(&file), &[]);
    let problem = &only_problem(&err).problems()[0];
    assert_eq!(problem.key.as_deref(), Some("ingress.bind-adress"));
    assert_eq!(problem.origin, Some(Origin::File(file.path().to_owned())));
    let text = err.to_string();
    assert!(text.contains("unknown key `bind-adress`"), "{text}");
    assert!(text.contains("bind-address"), "lists accepted keys: {text}");
}

#[test]
fn an_unknown_top_level_key_in_a_file_is_refused() {
    let file = config_file("node-nmae = \"x\"\n");
    let err = load_err(&with_file(&file), &[]);
    assert_eq!(err.problems()[0].key.as_deref(), Some("node-nmae"), "{err}");
}

#[test]
fn an_unknown_env_key_names_the_variable() {
    let err = load_err(
        &CliOverrides::default(),
        &[("REPRISE_ADMIN__BIND_ADRESS", "x")],
    );
    let problem = &err.problems()[0];
    assert_eq!(problem.key.as_deref(), Some("admin.bind-adress"), "{err}");
    assert_eq!(
        problem.origin,
        Some(Origin::Env("REPRISE_ADMIN__BIND_ADRESS".into()))
    );
}

#[test]
fn a_malformed_env_name_is_refused() {
    let err = load_err(&CliOverrides::default(), &[("REPRISE_ADMIN____X", "1")]);
    assert!(err.to_string().contains("REPRISE_ADMIN____X"), "{err}");
}

#[test]
fn wrong_types_name_key_origin_and_what_is_accepted() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "REPRISE_SHUTDOWN_TIMEOUT",
            "soon",
            "shutdown-timeout",
            "a duration",
        ),
        (
            "REPRISE_ADMIN__BIND_ADDRESS",
            "0.0.0.0:70000",
            "admin.bind-address",
            "port 0 to 65535",
        ),
        (
            "REPRISE_INGRESS__BIND_ADDRESS",
            "localhost",
            "ingress.bind-address",
            "ip:port",
        ),
        (
            "REPRISE_AUTO_PROVISION",
            "maybe",
            "auto-provision",
            "`true` or `false`",
        ),
        (
            "REPRISE_DEFAULT_NUM_PARTITIONS",
            "many",
            "default-num-partitions",
            "whole number",
        ),
        ("REPRISE_LOG_FORMAT", "xml", "log-format", "pretty, json"),
        ("REPRISE_ROLES", "worker,cook", "roles", "`cook`"),
        (
            "REPRISE_INGRESS__REQUEST_SIZE_LIMIT",
            "huge",
            "ingress.request-size-limit",
            "a size",
        ),
    ];
    for (var, value, key, accepted) in cases {
        let err = load_err(&CliOverrides::default(), &[(var, value)]);
        let problem = &err.problems()[0];
        assert_eq!(problem.key.as_deref(), Some(*key), "{var}: {err}");
        assert_eq!(
            problem.origin,
            Some(Origin::Env((*var).into())),
            "{var}: {err}"
        );
        assert!(err.to_string().contains(accepted), "{var}: {err}");
    }
}

#[test]
fn a_wrong_type_in_a_file_names_the_file() {
    let file = config_file("default-num-partitions = \"lots\"\n");
    let err = load_err(&with_file(&file), &[]);
    let problem = &err.problems()[0];
    assert_eq!(problem.key.as_deref(), Some("default-num-partitions"));
    assert_eq!(problem.origin, Some(Origin::File(file.path().to_owned())));
}

#[test]
fn a_bad_flag_value_names_the_flag() {
    let cli = CliOverrides {
        shutdown_timeout: Some("whenever".into()),
        ..CliOverrides::default()
    };
    let err = load_err(&cli, &[]);
    assert_eq!(
        err.problems()[0].origin,
        Some(Origin::Flag("--shutdown-timeout".into())),
        "{err}"
    );
}

#[test]
fn invalid_toml_and_missing_files_are_refused() {
    let file = config_file("cluster-name = \n");
    let err = load_err(&with_file(&file), &[]);
    assert!(
        err.to_string().contains(&file.path().display().to_string()),
        "{err}"
    );
    let cli = CliOverrides {
        config_file: Some("/definitely/not/here.toml".into()),
        ..CliOverrides::default()
    };
    let err = load_err(&cli, &[]);
    assert!(
        err.to_string().contains("/definitely/not/here.toml"),
        "{err}"
    );
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn impossible_values_are_refused_with_their_origin() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("REPRISE_DEFAULT_NUM_PARTITIONS", "0")],
            "default-num-partitions",
        ),
        (
            &[("REPRISE_DEFAULT_NUM_PARTITIONS", "70000")],
            "default-num-partitions",
        ),
        (&[("REPRISE_SHUTDOWN_TIMEOUT", "0s")], "shutdown-timeout"),
        (
            &[("REPRISE_ROCKSDB_TOTAL_MEMORY_SIZE", "1 MiB")],
            "rocksdb-total-memory-size",
        ),
        (
            &[("REPRISE_ROCKSDB_TOTAL_MEMTABLES_RATIO", "0")],
            "rocksdb-total-memtables-ratio",
        ),
        (
            &[("REPRISE_ROCKSDB_TOTAL_MEMTABLES_RATIO", "1.5")],
            "rocksdb-total-memtables-ratio",
        ),
        (&[("REPRISE_NODE_NAME", "../escape")], "node-name"),
        (&[("REPRISE_NODE_NAME", "")], "node-name"),
        (&[("REPRISE_CLUSTER_NAME", " ")], "cluster-name"),
        (&[("REPRISE_ROLES", "")], "roles"),
        (&[("REPRISE_LOG_FILTER", "info,[[[")], "log-filter"),
        (
            &[("REPRISE_ADVERTISED_ADDRESS", "ftp://x:1")],
            "advertised-address",
        ),
        (
            &[("REPRISE_WORKER__INVOKER__CONCURRENT_INVOCATIONS_LIMIT", "0")],
            "worker.invoker.concurrent-invocations-limit",
        ),
        (
            &[("REPRISE_WORKER__INVOKER__RETRY_POLICY__FACTOR", "0.5")],
            "worker.invoker.retry-policy.factor",
        ),
        (
            &[("REPRISE_WORKER__INVOKER__RETRY_POLICY__MAX_INTERVAL", "1ms")],
            "worker.invoker.retry-policy.max-interval",
        ),
        (
            &[("REPRISE_WORKER__INVOKER__RETRY_POLICY__MAX_ATTEMPTS", "0")],
            "worker.invoker.retry-policy.max-attempts",
        ),
        (
            &[("REPRISE_WORKER__NUM_TIMERS_IN_MEMORY_LIMIT", "0")],
            "worker.num-timers-in-memory-limit",
        ),
        (
            &[("REPRISE_INGRESS__REQUEST_SIZE_LIMIT", "0")],
            "ingress.request-size-limit",
        ),
    ];
    for (vars, key) in cases {
        let err = load_err(&CliOverrides::default(), vars);
        let problem = err
            .problems()
            .iter()
            .find(|p| p.key.as_deref() == Some(*key))
            .unwrap_or_else(|| panic!("{vars:?} must be refused for {key}: {err}"));
        assert_eq!(problem.origin, Some(Origin::Env(vars[0].0.into())), "{err}");
    }
}

#[test]
fn two_listeners_on_one_address_are_refused() {
    let file = config_file("[ingress]\nbind-address = \"127.0.0.1:7000\"\n");
    let vars = [("REPRISE_ADMIN__BIND_ADDRESS", "0.0.0.0:7000")];
    let err = load_err(&with_file(&file), &vars);
    let text = err.to_string();
    assert!(text.contains("admin.bind-address"), "{text}");
    assert!(text.contains("ingress.bind-address"), "{text}");
    assert!(text.contains("REPRISE_ADMIN__BIND_ADDRESS"), "{text}");

    // Port 0 asks the OS for a free port, so it never collides.
    let vars = [
        ("REPRISE_BIND_ADDRESS", "127.0.0.1:0"),
        ("REPRISE_ADMIN__BIND_ADDRESS", "127.0.0.1:0"),
        ("REPRISE_INGRESS__BIND_ADDRESS", "127.0.0.1:0"),
    ];
    load_from(&CliOverrides::default(), env(&vars)).expect("port 0 never collides");

    // A listener of a role the node does not run cannot collide.
    let vars = [
        ("REPRISE_ROLES", "worker,admin"),
        ("REPRISE_INGRESS__BIND_ADDRESS", "0.0.0.0:9070"),
    ];
    load_from(&CliOverrides::default(), env(&vars)).expect("ingress is not running");
}

#[test]
fn every_problem_is_reported_at_once() {
    let vars = [
        ("REPRISE_DEFAULT_NUM_PARTITIONS", "0"),
        ("REPRISE_SHUTDOWN_TIMEOUT", "0s"),
    ];
    let err = load_err(&CliOverrides::default(), &vars);
    assert_eq!(err.problems().len(), 2, "{err}");
}

#[test]
fn validate_accepts_defaults() {
    let config = Configuration {
        node_name: "n1".into(),
        ..Configuration::default()
    };
    config.validate().expect("defaults are valid");
}
