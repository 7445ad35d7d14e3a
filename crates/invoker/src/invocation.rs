//! The life of one invocation on the invoker: attempts, one after another, until one ends with
//! `End` or `Suspension` (the partition decides what comes next), or the retry policy gives up.
//! Before the next attempt starts, everything the previous one proposed is committed: the next
//! attempt replays a journal that holds all of it, so no command is ever journaled twice.

use std::sync::Arc;
use std::time::Duration;

use reprise_partition_processor::{
    EffectKind, Fence, InFlight, InvocationStatus, InvocationTarget, InvokerEffect,
    PartitionHandle, Record, StorageError,
};
use reprise_schema::{Deployment, SchemaView};
use reprise_service_client::ServiceClient;
use reprise_service_protocol::ServiceProtocolVersion;
use reprise_types::{DeploymentId, InvocationId};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::attempt::{Attempt, Failure, Outcome};
use crate::{Config, Notification};

pub(crate) struct Invocation {
    pub(crate) config: Arc<Config>,
    pub(crate) client: ServiceClient,
    pub(crate) schema: SchemaView,
    pub(crate) concurrency: Arc<crate::slots::Slots>,
    pub(crate) partition: PartitionHandle,
    /// The leadership this task works for; it stops when the partition has another.
    pub(crate) epoch: u64,
    pub(crate) invocation_id: InvocationId,
    pub(crate) notifications: mpsc::UnboundedReceiver<Notification>,
    pub(crate) cancel: CancellationToken,
}

/// Waits between retries of a proposal that failed while this node still leads.
const PROPOSAL_RETRY: Duration = Duration::from_millis(50);
const PROPOSAL_RETRY_MAX: Duration = Duration::from_secs(2);

impl Invocation {
    pub(crate) async fn run(mut self) {
        let id = self.invocation_id;
        let mut failures: u32 = 0;
        let mut retries_since_progress: u32 = 0;
        let mut last_progress = Instant::now();
        let mut interrupted: u32 = 0;
        loop {
            // The slot comes first: an invocation waiting for one holds no status, journal or
            // state in memory, so many waiting invocations cost little.
            let permit = tokio::select! {
                permit = self.concurrency.acquire() => permit,
                _ = self.cancel.cancelled() => return,
            };
            let Some(permit) = permit else {
                return; // the slots are closed: the invoker is stopping
            };
            if !self.leads() {
                return; // another leadership resumes it
            }
            let in_flight = match self.partition.read_status(id).await {
                Ok(Some(InvocationStatus::Invoked(in_flight))) => in_flight,
                Ok(_) => return, // suspended or completed meanwhile: nothing to run
                Err(err) => {
                    error!(invocation = %id, %err, "cannot read the invocation; leaving it to the next leader");
                    return;
                }
            };
            let fence = Fence {
                leader_epoch: self.epoch,
                attempt: in_flight.attempt,
                command_index: in_flight.commands,
            };
            let report = match self.prepare(&in_flight).await {
                Ok((deployment, version, pin)) => {
                    if pin
                        && self
                            .propose(
                                fence,
                                EffectKind::PinnedDeployment {
                                    deployment_id: deployment.id.to_string(),
                                    protocol_version: version.as_u32(),
                                },
                            )
                            .await
                            .is_err()
                    {
                        return;
                    }
                    let journal = match self
                        .partition
                        .read_journal(id, in_flight.journal_length)
                        .await
                    {
                        Ok(journal) => journal,
                        Err(err) => {
                            error!(invocation = %id, %err, "cannot read the journal; leaving it to the next leader");
                            return;
                        }
                    };
                    let eager_state = match self.eager_state(&in_flight.target).await {
                        Ok(state) => state,
                        Err(err) => {
                            error!(invocation = %id, %err, "cannot read the object's state; leaving it to the next leader");
                            return;
                        }
                    };
                    let (inactivity_timeout, abort_timeout) =
                        self.timeouts(&deployment, &in_flight.target);
                    let attempt = Attempt {
                        config: &self.config,
                        schema: &self.schema,
                        slots: &self.concurrency,
                        client: &self.client,
                        partition: &self.partition,
                        invocation_id: id,
                        fence,
                        target: &in_flight.target,
                        deployment: &deployment,
                        version,
                        journal,
                        eager_state,
                        retry_count: retries_since_progress,
                        since_last_stored: last_progress.elapsed(),
                        inactivity_timeout,
                        abort_timeout,
                    };
                    debug!(invocation = %id, deployment = %deployment.id, "attempt starts");
                    attempt.run(&mut self.notifications, &self.cancel).await
                }
                Err(failure) => crate::attempt::Report {
                    outcome: Outcome::Failed(failure),
                    last_proposal: None,
                    made_progress: false,
                },
            };
            drop(permit);
            // Everything the attempt proposed is committed before anything else happens. A
            // proposal that did not commit, while this node still leads, is no failure of the
            // deployment: the attempt runs again (its committed effects are in the journal,
            // and the fence drops a command that is there twice).
            let committed = match report.last_proposal {
                Some(last) => last.wait().await.is_ok(),
                None => true,
            };
            if report.made_progress {
                retries_since_progress = 0;
                last_progress = Instant::now();
            }
            let failure = match report.outcome {
                Outcome::Ended | Outcome::Suspended if committed => return,
                Outcome::Failed(failure) if committed => failure,
                _ if self.cancel.is_cancelled() || !self.leads() => return,
                _ => {
                    interrupted = interrupted.saturating_add(1);
                    let delay = proposal_backoff(interrupted);
                    warn!(invocation = %id, retry_in = ?delay, "a proposal of the attempt did not commit; running it again");
                    if !self.pause(delay).await {
                        return;
                    }
                    continue;
                }
            };
            interrupted = 0;
            failures = failures.saturating_add(1);
            retries_since_progress = retries_since_progress.saturating_add(1);
            let policy = &self.config.retry_policy;
            if policy.max_attempts.is_some_and(|max| failures >= max) {
                let kind = if policy.pause_when_exhausted {
                    warn!(invocation = %id, attempts = failures, code = failure.code, message = %failure.message,
                        "attempt failed; retries exhausted, the invocation is paused until it is resumed");
                    EffectKind::Paused {
                        code: failure.code,
                        message: failure.message,
                    }
                } else {
                    warn!(invocation = %id, attempts = failures, code = failure.code, message = %failure.message,
                        "attempt failed; retries exhausted, the invocation fails");
                    EffectKind::GaveUp {
                        code: failure.code,
                        message: failure.message,
                    }
                };
                let _ = self.propose(fence, kind).await;
                return;
            }
            let delay = failure
                .retry_after
                .unwrap_or_else(|| policy.delay(failures));
            info!(invocation = %id, attempt = failures, code = failure.code, message = %failure.message,
                retry_in = ?delay, "attempt failed");
            if self
                .propose(
                    fence,
                    EffectKind::AttemptFailed {
                        code: failure.code,
                        message: failure.message,
                    },
                )
                .await
                .is_err()
            {
                return;
            }
            if !self.pause(delay).await {
                return;
            }
            // Notifications that arrived while no attempt ran are in the journal now.
            while self.notifications.try_recv().is_ok() {}
        }
    }

    /// Whether this node still leads the partition in the epoch this task works for.
    fn leads(&self) -> bool {
        self.partition.epoch() == Some(self.epoch)
    }

    /// Sleeps for `delay` unless the task is cancelled; `false` when it was.
    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = self.cancel.cancelled() => false,
        }
    }

    /// Proposes one effect and waits for it to commit, retrying with backoff while this node
    /// leads in the task's epoch (a retry of an effect that did commit is dropped by its
    /// fence). `Err` once it no longer leads or the task is cancelled: the next leader resumes
    /// the invocation from what is committed.
    async fn propose(&self, fence: Fence, kind: EffectKind) -> Result<(), ()> {
        let mut failures = 0u32;
        loop {
            let record = Record::Effect(InvokerEffect {
                invocation_id: self.invocation_id,
                kind: kind.clone(),
                fence,
            });
            let result = match self.partition.enqueue(record).await {
                Ok(committed) => committed.wait().await,
                Err(err) => Err(err),
            };
            let Err(err) = result else { return Ok(()) };
            if self.cancel.is_cancelled() || !self.leads() {
                return Err(());
            }
            failures = failures.saturating_add(1);
            let delay = proposal_backoff(failures);
            warn!(invocation = %self.invocation_id, %err, retry_in = ?delay, "cannot propose {}; retrying", kind.name());
            if !self.pause(delay).await {
                return Err(());
            }
        }
    }

    /// The deployment and protocol version of the next attempt, and whether they still need
    /// pinning.
    async fn prepare(
        &self,
        in_flight: &InFlight,
    ) -> Result<(Deployment, ServiceProtocolVersion, bool), Failure> {
        let unavailable = |message: String| Failure {
            code: 503,
            message,
            retry_after: None,
        };
        let schema = self
            .schema
            .current()
            .await
            .map_err(|err| unavailable(format!("cannot read the schema: {err}")))?;
        match &in_flight.deployment {
            Some(pinned) => {
                let id: DeploymentId = pinned.deployment_id.parse().map_err(|_| {
                    unavailable(format!(
                        "pinned deployment `{}` is not an id",
                        pinned.deployment_id
                    ))
                })?;
                let deployment = schema.deployment(id).ok_or_else(|| {
                    unavailable(format!(
                        "deployment {id}, which this invocation is pinned to, is no longer registered"
                    ))
                })?;
                let version = ServiceProtocolVersion::from_u32(pinned.protocol_version)
                    .ok_or_else(|| {
                        unavailable(format!(
                            "pinned protocol version {} is not supported",
                            pinned.protocol_version
                        ))
                    })?;
                Ok((deployment.clone(), version, false))
            }
            None => {
                let service = schema.service(&in_flight.target.service).ok_or_else(|| {
                    unavailable(format!(
                        "no deployment serves service `{}`",
                        in_flight.target.service
                    ))
                })?;
                let deployment = schema.deployment(service.deployment_id).ok_or_else(|| {
                    unavailable(format!(
                        "deployment {} of service `{}` is not registered",
                        service.deployment_id, in_flight.target.service
                    ))
                })?;
                Ok((deployment.clone(), deployment.protocol_version, true))
            }
        }
    }

    /// What the start message carries of the object's state: all of it, unless eager state is
    /// off, the target has no key, or the state is over the size limit (then the SDK reads
    /// entries lazily).
    async fn eager_state(
        &self,
        target: &InvocationTarget,
    ) -> Result<Option<Vec<(bytes::Bytes, bytes::Bytes)>>, StorageError> {
        let Some(object) = target.object() else {
            return Ok(None);
        };
        if !self.config.eager_state {
            return Ok(None);
        }
        self.partition
            .read_state_within(object, self.config.eager_state_size_limit)
            .await
    }

    /// Per-handler, then per-service overrides from the manifest, then the configuration.
    fn timeouts(&self, deployment: &Deployment, target: &InvocationTarget) -> (Duration, Duration) {
        let service = deployment
            .services
            .iter()
            .find(|s| s.name == target.service);
        let handler = service.and_then(|s| s.handler(&target.handler));
        let inactivity = handler
            .and_then(|h| h.inactivity_timeout_ms)
            .or_else(|| service.and_then(|s| s.inactivity_timeout_ms))
            .map(Duration::from_millis)
            .unwrap_or(self.config.inactivity_timeout);
        let abort = handler
            .and_then(|h| h.abort_timeout_ms)
            .or_else(|| service.and_then(|s| s.abort_timeout_ms))
            .map(Duration::from_millis)
            .unwrap_or(self.config.abort_timeout);
        (inactivity, abort)
    }
}

/// The wait before the `n`-th retry of a proposal: doubling from 50 ms, at most 2 s.
fn proposal_backoff(n: u32) -> Duration {
    let doublings = n.saturating_sub(1).min(6);
    (PROPOSAL_RETRY * 2u32.pow(doublings)).min(PROPOSAL_RETRY_MAX)
}
