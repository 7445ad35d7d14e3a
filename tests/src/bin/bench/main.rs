//! `reprise-bench`: the load generator behind `cargo xtask bench`. Starts a `reprise-server`
//! (the binary in `E2E_SERVER_BIN`) and the SDK test services, registers them, then runs each
//! workload at each concurrency level for a fixed time, checking every answer:
//!
//! - `echo`: `TestUtilsService/echo`, a stateless handler that returns its input;
//! - `counter-keys`: `Counter/<key>/add` spread over 1 000 keys (state, one lock per key);
//! - `counter-hot`: `Counter/hot/add` on one key, so every call waits its turn in the inbox.
//!
//! Then it builds a history of `--history N` completed invocations (1 000 000) and restarts the
//! node, and restarts a node with `--sleepers N` sleeping invocations (100 000); 0 skips either
//! ([`history`]); and sends echo calls of `--large-mib N` MiB (31), one alone and four at once,
//! reporting the time and the server's peak memory ([`large`]).
//!
//! Prints a table and writes the figures, with the machine they were measured on, as JSON.
//!
//! Usage: `reprise-bench --services <test-services binary> [--out FILE] [--duration SECS]
//! [--warmup SECS] [--concurrency 1,16,128] [--workloads echo,counter-keys,counter-hot]
//! [--history N] [--sleepers N] [--large-mib N]` (`--workloads none` runs only the history
//! and large workloads).

mod history;
mod large;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reprise_e2e::{NodeSpec, TestServices};
use serde::Serialize;

struct Args {
    services: String,
    out: Option<PathBuf>,
    duration: Duration,
    warmup: Duration,
    concurrency: Vec<usize>,
    workloads: Vec<Workload>,
    history: Option<u64>,
    sleepers: Option<u64>,
    large_mib: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum Workload {
    Echo,
    CounterKeys,
    CounterHot,
}

impl Workload {
    const ALL: [Workload; 3] = [Workload::Echo, Workload::CounterKeys, Workload::CounterHot];

    fn name(self) -> &'static str {
        match self {
            Workload::Echo => "echo",
            Workload::CounterKeys => "counter-keys",
            Workload::CounterHot => "counter-hot",
        }
    }

    fn handler(self) -> &'static str {
        match self {
            Workload::Echo => "TestUtilsService/echo (returns its input)",
            Workload::CounterKeys => "Counter/<one of 1000 keys>/add (reads and writes state)",
            Workload::CounterHot => "Counter/hot/add (one key: calls run one at a time)",
        }
    }

    fn parse(name: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|w| w.name() == name)
            .with_context(|| format!("unknown workload {name}: echo, counter-keys, counter-hot"))
    }

    /// One request; an error unless the answer is a 200 with the expected body.
    async fn request(self, client: &reqwest::Client, ingress: &str, n: u64) -> anyhow::Result<()> {
        match self {
            Workload::Echo => echo(client, &format!("{ingress}/TestUtilsService/echo"), n).await,
            Workload::CounterKeys => {
                let key = (n ^ (n >> 32)) % 1000;
                add(client, &format!("{ingress}/Counter/key-{key}/add")).await
            }
            Workload::CounterHot => add(client, &format!("{ingress}/Counter/hot/add")).await,
        }
    }
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        services: String::new(),
        out: None,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        concurrency: vec![1, 16, 128],
        workloads: Workload::ALL.to_vec(),
        // The figures: a million completed invocations, a hundred thousand sleepers.
        history: Some(1_000_000),
        sleepers: Some(100_000),
        // The figure: just under the default 32 MiB request limit.
        large_mib: Some(31),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--services" => args.services = value()?,
            "--out" => args.out = Some(PathBuf::from(value()?)),
            "--duration" => args.duration = Duration::from_secs(value()?.parse()?),
            "--warmup" => args.warmup = Duration::from_secs(value()?.parse()?),
            "--concurrency" => {
                args.concurrency = value()?
                    .split(',')
                    .map(|level| level.trim().parse())
                    .collect::<Result<_, _>>()
                    .context("--concurrency takes a list such as 1,16,128")?;
            }
            "--history" => args.history = Some(value()?.parse::<u64>()?).filter(|n| *n > 0),
            "--sleepers" => args.sleepers = Some(value()?.parse::<u64>()?).filter(|n| *n > 0),
            "--large-mib" => args.large_mib = Some(value()?.parse::<u64>()?).filter(|n| *n > 0),
            "--workloads" => {
                let names = value()?;
                args.workloads = if names == "none" {
                    Vec::new()
                } else {
                    names
                        .split(',')
                        .map(|name| Workload::parse(name.trim()))
                        .collect::<Result<_, _>>()?
                };
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if args.services.is_empty() {
        bail!("--services <path of reprise-test-services> is required");
    }
    if args.concurrency.contains(&0) {
        bail!("a concurrency level must be at least 1");
    }
    Ok(args)
}

#[derive(Serialize)]
struct Level {
    concurrency: usize,
    requests: usize,
    seconds: f64,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    memory_gib: f64,
    os: String,
}

#[derive(Serialize)]
struct WorkloadReport {
    workload: &'static str,
    handler: &'static str,
    levels: Vec<Level>,
}

#[derive(Serialize)]
struct Report {
    benchmark: &'static str,
    measured_at_unix: u64,
    duration_seconds: u64,
    machine: Machine,
    workloads: Vec<WorkloadReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<history::HistoryReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sleepers: Option<history::SleepersReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    large: Option<large::LargeReport>,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or_else(|| "unknown".to_owned(), |(_, name)| name.trim().to_owned());
    let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let os = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| format!("Linux {}", release.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_owned());
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        memory_gib: (memory_kib / (1024.0 * 1024.0) * 10.0).round() / 10.0,
        os,
    }
}

/// One request; an error unless the answer is a 200 with the input echoed back.
async fn echo(client: &reqwest::Client, url: &str, n: u64) -> anyhow::Result<()> {
    let input = format!("\"request {n}\"");
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(input.clone())
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    if status != 200 || body != input.as_bytes() {
        bail!(
            "answer {status} {:?} to {input}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

/// One `Counter.add(1)`; an error unless the answer is a 200 with `newValue = oldValue + 1`.
async fn add(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body("1")
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let (old, new) = (answer["oldValue"].as_i64(), answer["newValue"].as_i64());
    if status != 200 || old.zip(new).is_none_or(|(old, new)| new != old + 1) {
        bail!(
            "answer {status} {:?} to add(1)",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

/// Runs `concurrency` callers for `duration`; returns every request's latency.
async fn run_level(
    client: &reqwest::Client,
    ingress: &Arc<str>,
    workload: Workload,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..concurrency {
        let (client, ingress) = (client.clone(), ingress.clone());
        callers.spawn(async move {
            let mut latencies = Vec::new();
            let mut n = (caller as u64) << 32;
            while Instant::now() < deadline {
                let sent = Instant::now();
                workload.request(&client, &ingress, n).await?;
                latencies.push(sent.elapsed());
                n += 1;
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = callers.join_next().await {
        all.extend(joined.context("a caller panicked")??);
    }
    Ok((all, started.elapsed()))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let tmp = tempfile::tempdir()?;
    let mut node = NodeSpec::new(tmp.path(), "bench")
        .env("REPRISE_LOG_FILTER", "warn")
        .spawn()?;
    let addresses = node.wait_ready().await?.clone();
    let services = TestServices::spawn(&args.services, "default").await?;
    let admin = addresses.admin.context("the admin role runs by default")?;
    let ingress = addresses
        .ingress
        .context("the ingress role runs by default")?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    history::register(&client, admin, &services).await?;
    let ingress: Arc<str> = format!("http://{ingress}").into();

    let machine = machine();
    println!(
        "machine: {} ({} cores, {} GiB), {}",
        machine.cpu, machine.cores, machine.memory_gib, machine.os
    );
    let mut workloads = Vec::new();
    for &workload in &args.workloads {
        println!("\n{}: {}", workload.name(), workload.handler());
        let levels = run_workload(&client, &ingress, workload, &args).await?;
        workloads.push(WorkloadReport {
            workload: workload.name(),
            handler: workload.handler(),
            levels,
        });
    }

    node.signal(nix::sys::signal::Signal::SIGTERM)?;
    node.wait_exit(Duration::from_secs(30)).await?;
    drop(services);
    let history = match args.history {
        Some(count) => Some(history::history(&args.services, count, args.duration).await?),
        None => None,
    };
    let sleepers = match args.sleepers {
        Some(count) => Some(history::sleepers(&args.services, count).await?),
        None => None,
    };
    let large = match args.large_mib {
        Some(mib) => Some(large::large(&args.services, mib).await?),
        None => None,
    };

    let report = Report {
        benchmark: "request-response calls through the ingress",
        measured_at_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        duration_seconds: args.duration.as_secs(),
        machine,
        workloads,
        history,
        sleepers,
        large,
    };
    if let Some(out) = &args.out {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

async fn run_workload(
    client: &reqwest::Client,
    ingress: &Arc<str>,
    workload: Workload,
    args: &Args,
) -> anyhow::Result<Vec<Level>> {
    println!(
        "{:>11} {:>10} {:>12} {:>9} {:>9} {:>9}",
        "concurrency", "requests", "requests/s", "p50 ms", "p99 ms", "max ms"
    );
    let mut levels = Vec::new();
    for &concurrency in &args.concurrency {
        let what =
            |phase: &str| format!("{phase} {} at concurrency {concurrency}", workload.name());
        run_level(client, ingress, workload, concurrency, args.warmup)
            .await
            .with_context(|| what("warming up"))?;
        let (mut latencies, elapsed) =
            run_level(client, ingress, workload, concurrency, args.duration)
                .await
                .with_context(|| what("measuring"))?;
        latencies.sort();
        let seconds = elapsed.as_secs_f64();
        let level = Level {
            concurrency,
            requests: latencies.len(),
            seconds,
            requests_per_second: latencies.len() as f64 / seconds,
            p50_ms: percentile(&latencies, 50.0),
            p99_ms: percentile(&latencies, 99.0),
            max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        };
        println!(
            "{:>11} {:>10} {:>12.0} {:>9.2} {:>9.2} {:>9.2}",
            level.concurrency,
            level.requests,
            level.requests_per_second,
            level.p50_ms,
            level.p99_ms,
            level.max_ms
        );
        levels.push(level);
    }
    Ok(levels)
}
