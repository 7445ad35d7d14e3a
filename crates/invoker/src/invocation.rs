//! The life of one invocation on the invoker: attempts, one after another, until one ends with
//! `End` or `Suspension` (the partition decides what comes next), or the retry policy gives up.
//! Before the next attempt starts, everything the previous one proposed is committed: the next
//! attempt replays a journal that holds all of it, so no command is ever journaled twice.

use std::sync::Arc;
use std::time::Duration;

use reprise_partition_processor::{
    EffectKind, InFlight, InvocationStatus, InvocationTarget, InvokerEffect, PartitionHandle,
    Record, StorageError,
};
use reprise_schema::{Deployment, SchemaView};
use reprise_service_client::ServiceClient;
use reprise_service_protocol::ServiceProtocolVersion;
use reprise_types::{DeploymentId, InvocationId};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::attempt::{Attempt, Failure, Outcome};
use crate::{Config, Notification};

pub(crate) struct Invocation {
    pub(crate) config: Arc<Config>,
    pub(crate) client: ServiceClient,
    pub(crate) schema: SchemaView,
    pub(crate) concurrency: Arc<Semaphore>,
    pub(crate) partition: PartitionHandle,
    pub(crate) invocation_id: InvocationId,
    pub(crate) notifications: mpsc::UnboundedReceiver<Notification>,
    pub(crate) cancel: CancellationToken,
}

impl Invocation {
    pub(crate) async fn run(mut self) {
        let id = self.invocation_id;
        let mut failures: u32 = 0;
        let mut retries_since_progress: u32 = 0;
        let mut last_progress = Instant::now();
        loop {
            // The slot comes first: an invocation waiting for one holds no status, journal or
            // state in memory, so many waiting invocations cost little.
            let Ok(permit) = self.concurrency.clone().acquire_owned().await else {
                return; // the semaphore is closed: the invoker is stopping
            };
            let in_flight = match self.partition.store().read_status(id) {
                Ok(Some(InvocationStatus::Invoked(in_flight))) => in_flight,
                Ok(_) => return, // suspended or completed meanwhile: nothing to run
                Err(err) => {
                    error!(invocation = %id, %err, "cannot read the invocation; leaving it to the next leader");
                    return;
                }
            };
            let report = match self.prepare(&in_flight).await {
                Ok((deployment, version, pin)) => {
                    if pin
                        && self
                            .propose(EffectKind::PinnedDeployment {
                                deployment_id: deployment.id.to_string(),
                                protocol_version: version.as_u32(),
                            })
                            .await
                            .is_err()
                    {
                        return;
                    }
                    let journal = match self
                        .partition
                        .store()
                        .read_journal(id, in_flight.journal_length)
                    {
                        Ok(journal) => journal,
                        Err(err) => {
                            error!(invocation = %id, %err, "cannot read the journal; leaving it to the next leader");
                            return;
                        }
                    };
                    let eager_state = match self.eager_state(&in_flight.target) {
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
                        client: &self.client,
                        partition: &self.partition,
                        invocation_id: id,
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
            // Everything the attempt proposed is committed before anything else happens.
            if let Some(last) = report.last_proposal
                && last.wait().await.is_err()
            {
                return;
            }
            if report.made_progress {
                retries_since_progress = 0;
                last_progress = Instant::now();
            }
            let failure = match report.outcome {
                Outcome::Ended | Outcome::Suspended | Outcome::Stopped => return,
                Outcome::Failed(failure) => failure,
            };
            failures = failures.saturating_add(1);
            retries_since_progress = retries_since_progress.saturating_add(1);
            let policy = &self.config.retry_policy;
            if policy.max_attempts.is_some_and(|max| failures >= max) {
                warn!(invocation = %id, attempts = failures, code = failure.code, message = %failure.message,
                    "attempt failed; retries exhausted, the invocation fails");
                let _ = self
                    .propose(EffectKind::GaveUp {
                        code: failure.code,
                        message: failure.message,
                    })
                    .await;
                return;
            }
            let delay = failure
                .retry_after
                .unwrap_or_else(|| policy.delay(failures));
            info!(invocation = %id, attempt = failures, code = failure.code, message = %failure.message,
                retry_in = ?delay, "attempt failed");
            if self
                .propose(EffectKind::AttemptFailed {
                    code: failure.code,
                    message: failure.message,
                })
                .await
                .is_err()
            {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.cancel.cancelled() => return,
            }
            // Notifications that arrived while no attempt ran are in the journal now.
            while self.notifications.try_recv().is_ok() {}
        }
    }

    /// Proposes one effect and waits for it to commit.
    async fn propose(&self, kind: EffectKind) -> Result<(), ()> {
        let record = Record::Effect(InvokerEffect {
            invocation_id: self.invocation_id,
            kind,
        });
        let committed = self.partition.enqueue(record).await.map_err(|_| ())?;
        committed.wait().await.map_err(|_| ())
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
    fn eager_state(
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
            .store()
            .read_state_within(&object, self.config.eager_state_size_limit)
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
