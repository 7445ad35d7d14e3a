//! The `large` workload: what one big request costs. Echo calls whose body is `--large-mib`
//! MiB (31: just under the default 32 MiB request limit), first one alone and then four at
//! once, on a node of their own; for each, the time to the answer and how much the server's
//! peak RSS (`VmHWM`) rose above its RSS before the call. A body should be held about once
//! on its way through the ingress, the log, the journal and the invoker, not copied at every
//! step.

use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::history::{Bench, rss_kib};

#[derive(Serialize)]
pub struct LargeReport {
    pub body_mib: u64,
    pub rounds: Vec<LargeRound>,
}

#[derive(Serialize)]
pub struct LargeRound {
    pub concurrent_calls: usize,
    pub seconds: f64,
    pub rss_before_mib: f64,
    pub peak_rss_rise_mib: f64,
}

pub async fn large(services_bin: &str, body_mib: u64) -> anyhow::Result<LargeReport> {
    let bench = Bench::start(services_bin).await?;
    println!("\nlarge: echo calls of {body_mib} MiB, one alone and four at once");
    let pid = bench.node.pid().context("the server has a pid")?;
    // A JSON string of `body_mib` MiB, quotes included.
    let len = usize::try_from(body_mib * 1024 * 1024)?;
    let mut body = vec![b'x'; len.max(2)];
    body[0] = b'"';
    body[len.max(2) - 1] = b'"';
    let body: std::sync::Arc<[u8]> = body.into();
    let mut rounds = Vec::new();
    for concurrent_calls in [1, 4] {
        let rss_before = rss_kib(pid, "VmRSS:").unwrap_or(0);
        reset_peak(pid);
        let started = Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..concurrent_calls {
            let (client, ingress, body) =
                (bench.client.clone(), bench.ingress.clone(), body.clone());
            calls.spawn(async move {
                let response = client
                    .post(format!("{ingress}/TestUtilsService/echo"))
                    .header("content-type", "application/json")
                    .body(body.to_vec())
                    .send()
                    .await?;
                let status = response.status();
                let answer = response.bytes().await?;
                if status != 200 || answer.as_ref() != body.as_ref() {
                    bail!(
                        "a large echo was answered {status} with {} bytes: {:?}",
                        answer.len(),
                        String::from_utf8_lossy(&answer[..answer.len().min(300)])
                    );
                }
                anyhow::Ok(())
            });
        }
        while let Some(joined) = calls.join_next().await {
            joined.context("a caller panicked")??;
        }
        let seconds = started.elapsed().as_secs_f64();
        let peak = rss_kib(pid, "VmHWM:").unwrap_or(0);
        let round = LargeRound {
            concurrent_calls,
            seconds,
            rss_before_mib: rss_before as f64 / 1024.0,
            peak_rss_rise_mib: peak.saturating_sub(rss_before) as f64 / 1024.0,
        };
        println!(
            "  {concurrent_calls} at once: {:.2} s, peak RSS {:.0} MiB above the {:.0} MiB before",
            round.seconds, round.peak_rss_rise_mib, round.rss_before_mib
        );
        rounds.push(round);
    }
    Ok(LargeReport { body_mib, rounds })
}

/// Resets the process's `VmHWM` to its current RSS (Linux: writing 5 to `clear_refs`), so a
/// round's peak is its own. Without permission the peak is the process's so far.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}
