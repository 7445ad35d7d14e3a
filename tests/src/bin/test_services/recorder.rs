//! `Recorder`: a test-only service whose side effects leave a trace outside the process, so a
//! test that kills the service or the server can count how often each step really ran.
//!
//! Every line of `<dir>/events.log` is `<invocation id> <event>`. The handlers wait for the file
//! `<dir>/gate` where a test needs to act (kill a process) while an invocation is in flight.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use restate_sdk::prelude::*;
use serde::Deserialize;

pub struct Recorder {
    dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepsRequest {
    /// How many side effects to run.
    steps: u32,
    /// After the side effect with this index is stored, wait for the gate.
    wait_after: u32,
    /// How long each side effect takes before it records itself.
    #[serde(default)]
    step_millis: u64,
}

/// Appends one event line; a failure is retryable (the runtime tries again).
fn record(dir: &Path, invocation: &str, event: &str) -> Result<(), HandlerError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("events.log"))?;
    // One write of the whole line: concurrent invocations append to the same file, and an
    // appending write is not interleaved with another.
    file.write_all(format!("{invocation} {event}\n").as_bytes())?;
    file.sync_data()?;
    Ok(())
}

async fn wait_for_gate(dir: &Path) {
    while !dir.join("gate").exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Recorder {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    fn dir(&self) -> Result<&Path, TerminalError> {
        self.dir
            .as_deref()
            .ok_or_else(|| TerminalError::new("the test services were started without --dir"))
    }
}

#[restate_sdk::service(name = "Recorder")]
impl Recorder {
    /// Runs `steps` side effects, each taking `stepMillis` and then recording `step <i>`; once
    /// its result is stored (its `ctx.run` returned) the handler records `stored <i>` (again on
    /// every replay). Once side effect `wait_after` is stored, records `waiting` and waits for
    /// the gate.
    #[handler(name = "runSteps")]
    async fn run_steps(&self, ctx: Context<'_>, request: Json<StepsRequest>) -> HandlerResult<u32> {
        let request = request.into_inner();
        let dir = self.dir()?.to_owned();
        let invocation = ctx.invocation_id().to_owned();
        for step in 0..request.steps {
            let (run_dir, run_invocation) = (dir.clone(), invocation.clone());
            let millis = request.step_millis;
            ctx.run(|| async move {
                tokio::time::sleep(Duration::from_millis(millis)).await;
                record(&run_dir, &run_invocation, &format!("step {step}"))
            })
            .name(format!("step-{step}"))
            .await?;
            record(&dir, &invocation, &format!("stored {step}"))?;
            if step == request.wait_after {
                record(&dir, &invocation, "waiting")?;
                wait_for_gate(&dir).await;
            }
        }
        record(&dir, &invocation, "done")?;
        Ok(request.steps)
    }

    /// Records `attempt` and fails with a retryable error until the gate exists; then records
    /// `succeeded` and returns how the call ended.
    #[handler(name = "failUntilGate")]
    async fn fail_until_gate(&self, ctx: Context<'_>) -> HandlerResult<String> {
        let dir = self.dir()?;
        let invocation = ctx.invocation_id();
        record(dir, invocation, "attempt")?;
        if dir.join("gate").exists() {
            record(dir, invocation, "succeeded")?;
            Ok("succeeded".to_owned())
        } else {
            Err(std::io::Error::other("the gate is closed").into())
        }
    }
}
