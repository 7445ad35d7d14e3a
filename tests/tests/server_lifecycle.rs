//! The daemon as an operator sees it: start → ready → SIGTERM → exit 0; a restart keeps the
//! node's identity; a second process on the same directory is refused; bad configuration and
//! busy ports are refused with the key to change, before any data is touched.

use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;
use reprise_e2e::{NodeSpec, TestServices, eventually, run_to_exit};

const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");

#[tokio::test]
async fn starts_ready_and_exits_zero_on_sigterm_and_sigint() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut node = NodeSpec::new(tmp.path(), "n1").spawn()?;
        node.wait_ready().await?;
        let (status, body) = node.node_health().await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "ready");

        node.signal(signal)?;
        let exit = node.wait_exit(STOP_TIMEOUT).await?;
        assert_eq!(exit.code(), Some(0), "{signal}: log:\n{}", node.logs());
        assert!(node.logs().contains("shutdown complete"), "{}", node.logs());
    }
    Ok(())
}

#[tokio::test]
async fn a_restart_on_the_same_directory_keeps_the_identity() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let spec = NodeSpec::new(tmp.path(), "keeper").env("REPRISE_CLUSTER_NAME", "kept-cluster");
    let mut seen = Vec::new();
    for stop in [Signal::SIGTERM, Signal::SIGKILL, Signal::SIGTERM] {
        let mut node = spec.spawn()?;
        node.wait_ready().await?;
        let (_, body) = node.node_health().await?;
        assert_eq!(body["node_name"], "keeper");
        assert_eq!(body["cluster_name"], "kept-cluster");
        seen.push(body["node_id"].as_str().unwrap_or_default().to_owned());
        node.signal(stop)?;
        node.wait_exit(STOP_TIMEOUT).await?;
    }
    // Same plain id every time; a new generation on every start, crash or not.
    assert_eq!(seen, ["N1:1", "N1:2", "N1:3"]);

    // The data now belongs to `kept-cluster`: starting it under another name is refused.
    let mut wrong = spec.clone().env("REPRISE_CLUSTER_NAME", "other").spawn()?;
    let exit = wrong.wait_exit(STOP_TIMEOUT).await?;
    assert_eq!(exit.code(), Some(1));
    assert!(wrong.logs().contains("`kept-cluster`"), "{}", wrong.logs());
    Ok(())
}

#[tokio::test]
async fn a_second_process_on_the_same_directory_is_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let spec = NodeSpec::new(tmp.path(), "n1");
    let mut first = spec.spawn()?;
    first.wait_ready().await?;
    let first_pid = first.pid().unwrap_or_default();

    let mut second = spec.spawn()?;
    let exit = second.wait_exit(STOP_TIMEOUT).await?;
    assert_ne!(exit.code(), Some(0));
    let logs = second.logs();
    assert!(logs.contains("in use"), "{logs}");
    assert!(logs.contains(&format!("pid {first_pid}")), "{logs}");

    // The first one is unaffected.
    let (status, _) = first.node_health().await?;
    assert_eq!(status, 200);
    first.signal(Signal::SIGTERM)?;
    assert_eq!(first.wait_exit(STOP_TIMEOUT).await?.code(), Some(0));
    Ok(())
}

#[tokio::test]
async fn a_misspelt_key_is_refused_before_any_data_is_touched() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("reprise.toml");
    std::fs::write(&config, "[admin]\nbind-adress = \"127.0.0.1:0\"\n")?;
    let base = tmp.path().join("data");
    let base_text = base.to_string_lossy().into_owned();
    let config_text = config.to_string_lossy().into_owned();

    let (exit, _, stderr) = run_to_exit(
        &["--config-file", &config_text, "--base-dir", &base_text],
        &[],
        tmp.path(),
    )
    .await?;
    assert_eq!(exit.code(), Some(2), "{stderr}");
    assert!(stderr.contains("admin.bind-adress"), "{stderr}");
    assert!(stderr.contains(&config_text), "names the file: {stderr}");
    assert!(!base.exists(), "no data directory was created");

    // The same through the environment names the variable.
    let (exit, _, stderr) = run_to_exit(
        &["--base-dir", &base_text],
        &[("REPRISE_SHUTDOWN_TIMEOUT", "soon")],
        tmp.path(),
    )
    .await?;
    assert_eq!(exit.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`shutdown-timeout`"), "{stderr}");
    assert!(stderr.contains("REPRISE_SHUTDOWN_TIMEOUT"), "{stderr}");
    assert!(
        stderr.contains("a duration"),
        "says what is accepted: {stderr}"
    );

    // Two listeners on one port.
    let (exit, _, stderr) = run_to_exit(
        &["--base-dir", &base_text, "--bind-address", "127.0.0.1:7001"],
        &[("REPRISE_ADMIN__BIND_ADDRESS", "127.0.0.1:7001")],
        tmp.path(),
    )
    .await?;
    assert_eq!(exit.code(), Some(2), "{stderr}");
    assert!(stderr.contains("admin.bind-address"), "{stderr}");
    assert!(!base.exists(), "no data directory was created");
    Ok(())
}

#[tokio::test]
async fn dump_config_prints_the_effective_configuration() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (exit, stdout, stderr) = run_to_exit(
        &["--dump-config", "--cluster-name", "from-flag"],
        &[("REPRISE_ADMIN__BIND_ADDRESS", "127.0.0.1:19070")],
        tmp.path(),
    )
    .await?;
    assert_eq!(exit.code(), Some(0), "{stderr}");
    let dumped: toml::Table = toml::from_str(&stdout)?;
    assert_eq!(
        dumped["admin"]["bind-address"].as_str(),
        Some("127.0.0.1:19070")
    );
    assert_eq!(dumped["cluster-name"].as_str(), Some("from-flag"));
    assert_eq!(
        dumped["ingress"]["bind-address"].as_str(),
        Some("0.0.0.0:8080")
    );
    assert!(
        !tmp.path().join("reprise-data").exists(),
        "dumping touches no data"
    );
    Ok(())
}

#[tokio::test]
async fn a_port_in_use_exits_naming_the_address_and_the_key() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = taken.local_addr()?.to_string();
    let mut node = NodeSpec::new(tmp.path(), "n1")
        .env("REPRISE_INGRESS__BIND_ADDRESS", &address)
        .spawn()?;
    let exit = node.wait_exit(STOP_TIMEOUT).await?;
    assert_eq!(exit.code(), Some(1));
    let logs = node.logs();
    assert!(logs.contains(&address), "{logs}");
    assert!(logs.contains("`ingress.bind-address`"), "{logs}");
    Ok(())
}

#[tokio::test]
async fn roles_decide_which_ports_are_served() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut node = NodeSpec::new(tmp.path(), "n1")
        .arg("--roles")
        .arg("metadata-server,admin")
        .spawn()?;
    let addresses = node.wait_ready().await?.clone();
    assert!(addresses.admin.is_some());
    assert!(
        addresses.ingress.is_none(),
        "no ingress role, no ingress port"
    );
    node.signal(Signal::SIGTERM)?;
    assert_eq!(node.wait_exit(STOP_TIMEOUT).await?.code(), Some(0));
    Ok(())
}

/// A request held in flight on the ingress: its handler is reading a body the test never
/// finishes. The server has provably started it — hyper answers `100 Continue` only once the
/// handler polls the body — so a shutdown that follows must wait for it or abandon it.
async fn in_flight_request(
    addresses: &reprise_e2e::Addresses,
) -> anyhow::Result<(tokio::net::TcpStream, TestServices)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let services = TestServices::spawn(SERVICES_BIN, "default").await?;
    let admin = addresses.admin.context("admin runs")?;
    let registered = reqwest::Client::new()
        .post(format!("http://{admin}/deployments"))
        .json(&serde_json::json!({"uri": services.uri()}))
        .send()
        .await?;
    anyhow::ensure!(registered.status() == 201, "{}", registered.text().await?);
    let ingress = addresses.ingress.context("ingress runs")?;
    let mut stream = tokio::net::TcpStream::connect(ingress).await?;
    stream
        .write_all(
            b"POST /TestUtilsService/echo HTTP/1.1\r\nHost: test\r\n\
              Content-Type: application/json\r\nContent-Length: 16\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await?;
    let mut answer = Vec::new();
    while !String::from_utf8_lossy(&answer).contains("100 Continue") {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(STOP_TIMEOUT, stream.read(&mut buf)).await??;
        anyhow::ensure!(
            read > 0,
            "the connection closed: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..read]);
    }
    stream.write_all(b"\"abc").await?;
    Ok((stream, services))
}

#[tokio::test]
async fn stopping_refuses_new_work_and_abandons_in_flight_requests_in_time() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut node = NodeSpec::new(tmp.path(), "n1")
        .env("REPRISE_SHUTDOWN_TIMEOUT", "4s")
        .spawn()?;
    let addresses = node.wait_ready().await?.clone();
    let ingress = addresses.ingress.expect("ingress runs");
    let admin = addresses.admin.expect("admin runs");
    let _in_flight = in_flight_request(&addresses).await?;

    node.signal(Signal::SIGTERM)?;
    node.wait_for_log("stopping", STOP_TIMEOUT).await?;
    // While the in-flight request holds the shutdown (the test never finishes it): health says
    // the node is stopping (set before the log line), and ingress stops accepting (its
    // listener closes asynchronously, so wait for it with a deadline).
    let response = reqwest::get(format!("http://{admin}/health")).await?;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response.json::<serde_json::Value>().await?["status"],
        "stopping"
    );
    eventually("ingress refusing new connections", STOP_TIMEOUT, || async {
        tokio::net::TcpStream::connect(ingress).await.is_err()
    })
    .await?;

    // The in-flight request is abandoned within the timeout and the exit is still orderly. If
    // the node waited for it, this would time out: the test never finishes the request.
    let exit = node.wait_exit(Duration::from_secs(20)).await?;
    assert_eq!(exit.code(), Some(0), "{}", node.logs());
    assert!(
        node.logs().contains("abandoning in-flight requests"),
        "{}",
        node.logs()
    );
    Ok(())
}

#[tokio::test]
async fn a_second_signal_exits_at_once() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut node = NodeSpec::new(tmp.path(), "n1")
        .env("REPRISE_SHUTDOWN_TIMEOUT", "10m")
        .spawn()?;
    let addresses = node.wait_ready().await?.clone();
    let _in_flight = in_flight_request(&addresses).await?;

    node.signal(Signal::SIGTERM)?;
    node.wait_for_log("stopping", STOP_TIMEOUT).await?;
    node.signal(Signal::SIGINT)?;
    // Far less than the 10 minutes the orderly shutdown would be allowed.
    let exit = node.wait_exit(Duration::from_secs(20)).await?;
    assert_eq!(exit.code(), Some(1), "{}", node.logs());
    assert!(node.logs().contains("second signal"), "{}", node.logs());

    // Exiting at once loses nothing: the node starts again on the same directory.
    let mut again = NodeSpec::new(tmp.path(), "n1").spawn()?;
    again.wait_ready().await?;
    let (_, body) = again.node_health().await?;
    assert_eq!(body["node_id"], "N1:2");
    Ok(())
}

/// Reads until the server closes the connection (EOF or a reset); `Err` if it stays open.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .context("the server kept the connection open")
}

#[tokio::test]
async fn connections_that_start_no_request_are_closed_and_their_number_is_bounded()
-> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let tmp = tempfile::tempdir()?;
    let mut node = NodeSpec::new(tmp.path(), "n1")
        .env("REPRISE_HTTP__HEADER_READ_TIMEOUT", "1s")
        .env("REPRISE_HTTP__MAX_CONNECTIONS", "60")
        .spawn()?;
    let admin = node.wait_ready().await?.admin.context("admin role")?;

    // Silent connections, half a request head, and half the HTTP/2 preface.
    let mut idle = Vec::new();
    for n in 0..45 {
        let mut stream = tokio::net::TcpStream::connect(admin).await?;
        match n % 3 {
            0 => {}
            1 => {
                stream
                    .write_all(b"GET /health HTTP/1.1\r\nHost: lo")
                    .await?
            }
            _ => stream.write_all(b"PRI * HTTP/2.0\r\n").await?,
        }
        idle.push(stream);
    }
    // Past the limit, a new connection is closed at once, while the others still hold theirs.
    let mut extra = Vec::new();
    for _ in 0..30 {
        extra.push(tokio::net::TcpStream::connect(admin).await?);
    }
    let mut closed_at_once = 0;
    for stream in &mut extra {
        if closed_within(stream, Duration::from_millis(500))
            .await
            .is_ok()
        {
            closed_at_once += 1;
        }
    }
    assert!(
        closed_at_once >= 15,
        "only {closed_at_once} of 30 connections over the limit of 60 were refused"
    );
    // Every connection that started no request is closed after the header read timeout.
    for stream in &mut idle {
        closed_within(stream, Duration::from_secs(10)).await?;
    }
    // An idle HTTP/1.1 keep-alive connection goes the same way, after a request it completed.
    let mut kept = tokio::net::TcpStream::connect(admin).await?;
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    closed_within(&mut kept, Duration::from_secs(10)).await?;
    // And the node serves as before.
    let (status, _) = node.node_health().await?;
    assert_eq!(status, 200);
    node.signal(Signal::SIGTERM)?;
    let exit = node.wait_exit(STOP_TIMEOUT).await?;
    assert_eq!(exit.code(), Some(0), "{}", node.logs());
    Ok(())
}
