//! Leadership taken away and given back while invocations run and while others wait behind the
//! concurrency limit: every invocation completes, no `ctx.run` runs again once its result was
//! stored, and the node never fails. The step-downs go through the admin API (`POST /partitions/{id}/step-down`),
//! at random moments from a seed the test prints, so a failure can be replayed.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use reprise_e2e::{QUICK_RETRIES, Setup};
use serde_json::{Value, json};

const SERVICES_BIN: &str = env!("CARGO_BIN_EXE_reprise-test-services");
const INVOCATIONS: usize = 24;
const STEPS: u32 = 6;
/// How long all invocations may take, step-downs included.
const DEADLINE: Duration = Duration::from_secs(120);

/// A small deterministic generator (xorshift), so a seed replays the same step-downs.
struct Chaos(u64);

impl Chaos {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[tokio::test]
async fn leadership_changes_lose_nothing_and_run_no_side_effect_twice() -> anyhow::Result<()> {
    let env: Vec<(&str, &str)> = QUICK_RETRIES
        .iter()
        .copied()
        .chain([
            // Few slots: most invocations wait for one while leaderships change.
            ("REPRISE_WORKER__INVOKER__CONCURRENT_INVOCATIONS_LIMIT", "3"),
            ("REPRISE_DEFAULT_NUM_PARTITIONS", "4"),
        ])
        .collect();
    let setup = Setup::start(SERVICES_BIN, &env).await?;
    let admin = format!(
        "http://{}",
        setup.node.addresses()?.admin.context("admin role")?
    );
    let epochs_before = epochs(&setup, &admin).await?;
    let ids: Vec<u64> = epochs_before.keys().copied().collect();
    anyhow::ensure!(ids.len() == 4, "four partitions: {epochs_before:?}");

    let seed = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64 | 1;
    println!("step-down seed: {seed}");
    let mut chaos = Chaos(seed);

    let calls: Vec<_> = (0..INVOCATIONS)
        .map(|_| {
            let client = setup.client.clone();
            let url = format!("{}/Recorder/runSteps", setup.ingress);
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .json(&json!({"steps": STEPS, "waitAfter": STEPS + 1, "stepMillis": 25}))
                    .send()
                    .await?;
                let status = response.status().as_u16();
                let id = response
                    .headers()
                    .get("x-restate-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                anyhow::Ok((status, id, body))
            })
        })
        .collect();

    // Step down at random moments until every call has answered.
    let started = std::time::Instant::now();
    let mut step_downs = 0u32;
    let mut stepped: BTreeMap<u64, u32> = BTreeMap::new();
    while calls.iter().any(|call| !call.is_finished()) {
        anyhow::ensure!(
            started.elapsed() < DEADLINE,
            "invocations still running after {DEADLINE:?} ({step_downs} step-downs, seed {seed})"
        );
        let id = ids[chaos.below(ids.len() as u64) as usize];
        let response = setup
            .client
            .post(format!("{admin}/partitions/{id}/step-down"))
            .send()
            .await?;
        // 503 while the partition is between leaderships is fine; anything else is not.
        let status = response.status().as_u16();
        anyhow::ensure!(
            status == 202 || status == 503,
            "step-down of {id} answered {status}: {}",
            response.text().await?
        );
        if status == 202 {
            *stepped.entry(id).or_default() += 1;
        }
        step_downs += 1;
        tokio::time::sleep(Duration::from_millis(5 + chaos.below(120))).await;
    }
    println!("{step_downs} step-downs");
    anyhow::ensure!(step_downs >= 3, "the invocations outran the step-downs");

    let mut ids = Vec::new();
    for call in calls {
        let (status, id, body) = call.await??;
        anyhow::ensure!(
            status == 200 && body == json!(STEPS),
            "a call answered {status}: {body} (seed {seed})"
        );
        ids.push(id);
    }

    // Every side effect ran, and none ran again once its result was stored. (One cut short
    // between running and storing its result runs again: that is what `ctx.run` promises, and
    // the log shows it as a second `step` before any `stored`.)
    let log = std::fs::read_to_string(setup.records().join("events.log"))?;
    let mut runs: BTreeMap<(String, u32), usize> = BTreeMap::new();
    let mut stored: BTreeMap<(String, u32), bool> = BTreeMap::new();
    let mut reruns = 0usize;
    for line in log.lines() {
        let Some((id, event)) = line.split_once(' ') else {
            continue;
        };
        if let Some(step) = event.strip_prefix("step ").and_then(|s| s.parse().ok()) {
            let key = (id.to_owned(), step);
            anyhow::ensure!(
                !stored.get(&key).copied().unwrap_or(false),
                "{id} ran step {step} again after its result was stored (seed {seed})"
            );
            let count = runs.entry(key).or_default();
            *count += 1;
            if *count > 1 {
                reruns += 1;
            }
        } else if let Some(step) = event.strip_prefix("stored ").and_then(|s| s.parse().ok()) {
            stored.insert((id.to_owned(), step), true);
        }
    }
    for id in &ids {
        for step in 0..STEPS {
            anyhow::ensure!(
                runs.contains_key(&(id.clone(), step)),
                "{id} never ran step {step} (seed {seed})"
            );
        }
    }
    println!("{reruns} side effects ran again after an attempt was cut before storing them");
    // Every partition that was stepped down leads again, in a later epoch.
    let epochs_after = epochs(&setup, &admin).await?;
    for (id, times) in &stepped {
        let (before, after) = (
            epochs_before[id],
            epochs_after.get(id).copied().unwrap_or(0),
        );
        anyhow::ensure!(
            after > before,
            "partition {id} was stepped down {times} times but is still in epoch {before}"
        );
    }
    let changes = setup
        .node
        .logs()
        .matches("partition leadership changed")
        .count();
    println!("leadership changes: {changes}; epochs {epochs_before:?} -> {epochs_after:?}");
    // Still a healthy node.
    let (status, _) = setup.node.node_health().await?;
    anyhow::ensure!(status == 200, "the node is no longer healthy");
    Ok(())
}

/// Each partition's leader epoch, once every partition has a leader again.
async fn epochs(setup: &Setup, admin: &str) -> anyhow::Result<BTreeMap<u64, u64>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let partitions: Value = setup
            .client
            .get(format!("{admin}/partitions"))
            .send()
            .await?
            .json()
            .await?;
        let list = partitions["partitions"]
            .as_array()
            .context("a partition list")?;
        let epochs: BTreeMap<u64, u64> = list
            .iter()
            .filter_map(|p| Some((p["id"].as_u64()?, p["leader_epoch"].as_u64()?)))
            .collect();
        if epochs.len() == list.len() {
            return Ok(epochs);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "partitions without a leader: {partitions}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
