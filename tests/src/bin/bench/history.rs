//! Workloads that grow a node's history and then restart it: what a partition costs as its
//! work accumulates, rather than while it works.
//!
//! - `history`: `count` completed echo invocations (kept for the default one-day completion
//!   retention); echo throughput before and after, the data directory's size, and the
//!   restart: time to ready and the server's peak RSS (`VmHWM`) while it starts.
//! - `sleepers`: `count` invocations sleeping for an hour (suspended); the server's RSS with
//!   them, the restart's time to ready and peak RSS, and how long the first call after it takes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reprise_e2e::{NodeSpec, ServerProcess, TestServices};
use serde::Serialize;

/// Callers that build the history.
const FILL_CONCURRENCY: usize = 64;
/// Callers of the throughput measurements.
const MEASURE_CONCURRENCY: usize = 16;

#[derive(Serialize)]
pub struct HistoryReport {
    pub invocations: u64,
    pub fill_seconds: f64,
    pub echo_per_second_before: f64,
    pub echo_per_second_after: f64,
    pub data_dir_bytes: u64,
    pub bytes_per_invocation: f64,
    pub restart_to_ready_ms: f64,
    pub restart_peak_rss_mib: f64,
}

#[derive(Serialize)]
pub struct SleepersReport {
    pub sleepers: u64,
    pub fill_seconds: f64,
    pub rss_with_sleepers_mib: f64,
    pub restart_to_ready_ms: f64,
    pub restart_peak_rss_mib: f64,
    pub first_call_after_restart_ms: f64,
}

/// A node with the test services registered on it.
pub(crate) struct Bench {
    _tmp: tempfile::TempDir,
    spec: NodeSpec,
    pub(crate) node: ServerProcess,
    _services: TestServices,
    pub(crate) client: reqwest::Client,
    pub(crate) ingress: Arc<str>,
}

impl Bench {
    pub(crate) async fn start(services_bin: &str) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let spec = NodeSpec::new(tmp.path(), "history").env("REPRISE_LOG_FILTER", "warn");
        let mut node = spec.spawn()?;
        let addresses = node.wait_ready().await?.clone();
        let services = TestServices::spawn(services_bin, "default").await?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()?;
        register(&client, addresses.admin.context("admin role")?, &services).await?;
        let ingress = format!("http://{}", addresses.ingress.context("ingress role")?).into();
        Ok(Self {
            _tmp: tmp,
            spec,
            node,
            _services: services,
            client,
            ingress,
        })
    }

    /// Stops the node (SIGTERM) and starts it again on its directory: the time to ready, and
    /// the peak RSS of the new process once ready.
    async fn restart(&mut self) -> anyhow::Result<(Duration, f64)> {
        self.node.signal(nix::sys::signal::Signal::SIGTERM)?;
        self.node.wait_exit(Duration::from_secs(60)).await?;
        let started = Instant::now();
        self.node = self.spec.spawn()?;
        let addresses = self.node.wait_ready().await?.clone();
        let ready = started.elapsed();
        let peak = self
            .node
            .pid()
            .and_then(|pid| rss_kib(pid, "VmHWM:"))
            .map_or(0.0, |kib| kib as f64 / 1024.0);
        self.ingress = format!("http://{}", addresses.ingress.context("ingress role")?).into();
        Ok((ready, peak))
    }

    /// Runs `total` requests made by `request(n)` from `concurrency` callers.
    async fn fill<F, Fut>(
        &self,
        total: u64,
        concurrency: usize,
        request: F,
    ) -> anyhow::Result<Duration>
    where
        F: Fn(reqwest::Client, Arc<str>, u64) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
    {
        let started = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let mut callers = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (client, ingress, next, request) = (
                self.client.clone(),
                self.ingress.clone(),
                next.clone(),
                request.clone(),
            );
            callers.spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        return anyhow::Ok(());
                    }
                    request(client.clone(), ingress.clone(), n).await?;
                    if n > 0 && n % 100_000 == 0 {
                        println!("  {n} of {total}");
                    }
                }
            });
        }
        while let Some(joined) = callers.join_next().await {
            joined.context("a caller panicked")??;
        }
        Ok(started.elapsed())
    }

    /// Echo requests per second from `MEASURE_CONCURRENCY` callers over `duration`.
    async fn echo_rate(&self, duration: Duration) -> anyhow::Result<f64> {
        let deadline = Instant::now() + duration;
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut callers = tokio::task::JoinSet::new();
        for caller in 0..MEASURE_CONCURRENCY {
            let (client, ingress, done) = (self.client.clone(), self.ingress.clone(), done.clone());
            callers.spawn(async move {
                let mut n = (caller as u64) << 40;
                while Instant::now() < deadline {
                    crate::echo(&client, &format!("{ingress}/TestUtilsService/echo"), n).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                anyhow::Ok(())
            });
        }
        while let Some(joined) = callers.join_next().await {
            joined.context("a caller panicked")??;
        }
        Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
    }
}

/// Registers the test services with the node whose admin API is at `admin`.
pub async fn register(
    client: &reqwest::Client,
    admin: std::net::SocketAddr,
    services: &TestServices,
) -> anyhow::Result<()> {
    let registered = client
        .post(format!("http://{admin}/deployments"))
        .json(&serde_json::json!({"uri": services.uri()}))
        .send()
        .await?;
    if registered.status() != 201 {
        bail!(
            "registering the services failed: {}",
            registered.text().await?
        );
    }
    Ok(())
}

/// A line of `/proc/<pid>/status` in KiB (`VmRSS:`, `VmHWM:`).
pub(crate) fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

pub async fn history(
    services_bin: &str,
    count: u64,
    measure: Duration,
) -> anyhow::Result<HistoryReport> {
    let mut bench = Bench::start(services_bin).await?;
    println!("\nhistory: {count} completed invocations, then a restart");
    // Warmed up first, as the other workloads are: the first calls open connections.
    bench.echo_rate(Duration::from_secs(2)).await?;
    let before = bench.echo_rate(measure).await?;
    println!("  echo at no history: {before:.0}/s");
    let filled = bench
        .fill(count, FILL_CONCURRENCY, |client, ingress, n| async move {
            crate::echo(&client, &format!("{ingress}/TestUtilsService/echo"), n).await
        })
        .await?;
    println!("  {count} invocations in {:.0} s", filled.as_secs_f64());
    let after = bench.echo_rate(measure).await?;
    println!("  echo at {count} of history: {after:.0}/s");
    let (ready, peak) = bench.restart().await?;
    // Measured after the restart, so that what the running node had not flushed yet counts.
    let size = dir_size(&bench.spec.node_dir());
    println!(
        "  data directory {:.1} MiB ({:.0} B per invocation); restart: ready in {} ms, peak RSS {peak:.0} MiB",
        size as f64 / (1024.0 * 1024.0),
        size as f64 / count.max(1) as f64,
        ready.as_millis()
    );
    Ok(HistoryReport {
        invocations: count,
        fill_seconds: filled.as_secs_f64(),
        echo_per_second_before: before,
        echo_per_second_after: after,
        data_dir_bytes: size,
        bytes_per_invocation: size as f64 / count.max(1) as f64,
        restart_to_ready_ms: ready.as_secs_f64() * 1000.0,
        restart_peak_rss_mib: peak,
    })
}

pub async fn sleepers(services_bin: &str, count: u64) -> anyhow::Result<SleepersReport> {
    let mut bench = Bench::start(services_bin).await?;
    println!("\nsleepers: {count} invocations sleeping for an hour, then a restart");
    let filled = bench
        .fill(count, FILL_CONCURRENCY, |client, ingress, n| async move {
            let response = client
                .post(format!("{ingress}/Sleeper/sleeper-{n}/sleep/send"))
                .header("content-type", "application/json")
                .body("3600000")
                .send()
                .await?;
            if response.status() != 202 {
                bail!("a sleep was answered {}", response.status());
            }
            Ok(())
        })
        .await?;
    println!("  {count} sleepers sent in {:.0} s", filled.as_secs_f64());
    // The sleepers suspend as their attempts go idle: wait until the echo of a call shows the
    // node has a free slot again, then read its memory.
    let probe = Instant::now();
    crate::echo(
        &bench.client,
        &format!("{}/TestUtilsService/echo", bench.ingress),
        0,
    )
    .await?;
    let rss = bench
        .node
        .pid()
        .and_then(|pid| rss_kib(pid, "VmRSS:"))
        .map_or(0.0, |kib| kib as f64 / 1024.0);
    println!(
        "  a call among them took {} ms; RSS {rss:.0} MiB",
        probe.elapsed().as_millis()
    );
    let (ready, peak) = bench.restart().await?;
    let first = Instant::now();
    crate::echo(
        &bench.client,
        &format!("{}/TestUtilsService/echo", bench.ingress),
        1,
    )
    .await?;
    let first = first.elapsed();
    println!(
        "  restart: ready in {} ms, peak RSS {peak:.0} MiB; first call {} ms",
        ready.as_millis(),
        first.as_millis()
    );
    Ok(SleepersReport {
        sleepers: count,
        fill_seconds: filled.as_secs_f64(),
        rss_with_sleepers_mib: rss,
        restart_to_ready_ms: ready.as_secs_f64() * 1000.0,
        restart_peak_rss_mib: peak,
        first_call_after_restart_ms: first.as_secs_f64() * 1000.0,
    })
}
