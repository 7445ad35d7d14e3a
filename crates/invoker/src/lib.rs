//! The invoker: runs invocation attempts against SDK deployments for the partitions this node
//! leads. A partition's leader hands it [`InvokerCommand`]s (start or resume an invocation,
//! deliver a committed notification, abort); it speaks the service protocol over HTTP/2 with
//! the deployment the invocation is pinned to, proposes every command and run result to the
//! partition in order, and sends a notification to the deployment only after the partition
//! committed it — so a completed `ctx.run` is never executed again.
//!
//! Failed attempts are retried with the configured exponential backoff; the number of
//! attempts running at once is bounded by `concurrent-invocations-limit` (an invocation waiting
//! for its backoff holds no slot). While invocations wait for a slot, a running attempt that has
//! been idle for a moment (it waits for a timer or a completion) is asked to suspend, so waiting
//! invocations cannot keep the slots from those with work to do.

mod attempt;
mod body;
mod invocation;
mod slots;
mod target;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reprise_partition_processor::{PartitionHandle, Retention, StoredFrame};
use reprise_schema::SchemaView;
use reprise_service_client::ServiceClient;
use reprise_types::{InvocationId, PartitionId};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use invocation::Invocation;
pub use target::{Resolved, TargetError, resolve};

/// What a partition leader asks of the invoker.
pub enum InvokerCommand {
    /// Start (or resume) the invocation, unless an attempt for it already runs, for the
    /// partition's leadership `epoch`.
    Invoke {
        partition: PartitionHandle,
        epoch: u64,
        invocation_id: InvocationId,
    },
    /// A notification was committed to the invocation's journal at `entry_index`.
    Notify {
        invocation_id: InvocationId,
        notification: Notification,
    },
    /// The invocation is over: stop its attempt.
    Abort { invocation_id: InvocationId },
    /// This node no longer leads the partition in `epoch` (or any earlier one): stop every
    /// attempt of it and drop what waits for a slot. All of it is durable; the next leader
    /// resumes it.
    StepDown { partition: PartitionId, epoch: u64 },
}

#[derive(Debug, Clone)]
pub struct Notification {
    pub entry_index: u32,
    pub entry: StoredFrame,
}

/// The retry policy of failed attempts.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub initial_interval: Duration,
    pub factor: f64,
    pub max_interval: Duration,
    /// Attempts in all, the first included; `None` retries forever.
    pub max_attempts: Option<u32>,
    /// Whether an invocation whose attempts are exhausted is paused (else it fails).
    pub pause_when_exhausted: bool,
}

impl RetryPolicy {
    /// The wait after the `failures`-th failed attempt.
    pub fn delay(&self, failures: u32) -> Duration {
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial_interval.as_secs_f64() * self.factor.powi(exponent);
        let max = self.max_interval.as_secs_f64();
        Duration::from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
    }
}

/// How the invoker runs attempts.
#[derive(Debug, Clone)]
pub struct Config {
    pub cluster_name: String,
    pub concurrent_invocations_limit: usize,
    pub inactivity_timeout: Duration,
    pub abort_timeout: Duration,
    pub message_size_limit: usize,
    /// Whether start messages carry the object's state (see `eager_state_size_limit`).
    pub eager_state: bool,
    pub eager_state_size_limit: usize,
    pub retry_policy: RetryPolicy,
    /// What an invocation created by a call or send from a handler keeps once completed, when
    /// its manifest declares nothing (`worker.completion-retention`, `worker.journal-retention`).
    pub default_retention: Retention,
}

impl Config {
    pub fn from_options(
        cluster_name: &str,
        options: &reprise_node_config::InvokerOptions,
        default_retention: Retention,
    ) -> Self {
        let policy = &options.retry_policy;
        Self {
            cluster_name: cluster_name.to_owned(),
            concurrent_invocations_limit: options.concurrent_invocations_limit.max(1) as usize,
            inactivity_timeout: options.inactivity_timeout.as_duration(),
            abort_timeout: options.abort_timeout.as_duration(),
            message_size_limit: usize::try_from(options.message_size_limit.as_u64())
                .unwrap_or(usize::MAX),
            eager_state: !options.disable_eager_state,
            eager_state_size_limit: usize::try_from(options.eager_state_size_limit.as_u64())
                .unwrap_or(usize::MAX),
            retry_policy: RetryPolicy {
                initial_interval: policy.initial_interval.as_duration(),
                factor: policy.factor,
                max_interval: policy.max_interval.as_duration(),
                max_attempts: policy.max_attempts,
                pause_when_exhausted: policy.on_max_attempts
                    == reprise_node_config::OnMaxAttempts::Pause,
            },
            default_retention,
        }
    }
}

/// Sends commands to the invoker. Cheap to clone.
#[derive(Clone)]
pub struct InvokerHandle {
    commands: mpsc::UnboundedSender<InvokerCommand>,
    slots: Arc<slots::Slots>,
    limit: usize,
}

impl InvokerHandle {
    /// Waits until fewer invocations wait for a slot than there are slots: a partition that
    /// resumes many invocations hands them over at the pace they can run, so what waits in the
    /// invoker stays bounded by its concurrency limit.
    pub async fn has_room(&self) {
        while self.slots.waiting() >= self.limit {
            tokio::time::sleep(ROOM_POLL).await;
        }
    }

    /// Hands over a command; after the invoker stopped, commands are dropped (the partition
    /// leaders stop with it).
    pub fn send(&self, command: InvokerCommand) {
        let _ = self.commands.send(command);
    }
}

/// How often [`InvokerHandle::has_room`] looks again.
const ROOM_POLL: Duration = Duration::from_millis(10);

pub struct Invoker {
    slots: Arc<slots::Slots>,
    config: Arc<Config>,
    client: ServiceClient,
    schema: SchemaView,
    commands: mpsc::UnboundedReceiver<InvokerCommand>,
    handle: InvokerHandle,
}

struct Running {
    partition: PartitionId,
    epoch: u64,
    notifications: mpsc::UnboundedSender<Notification>,
    cancel: CancellationToken,
    /// An `Invoke` arrived while this task was finishing: start again when it ends.
    again: Option<(PartitionHandle, u64)>,
}

impl Invoker {
    pub fn new(config: Config, client: ServiceClient, schema: SchemaView) -> Self {
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let limit = config.concurrent_invocations_limit;
        let slots = Arc::new(slots::Slots::new(limit));
        Self {
            slots: slots.clone(),
            config: Arc::new(config),
            client,
            schema,
            commands,
            handle: InvokerHandle {
                commands: commands_tx,
                slots,
                limit,
            },
        }
    }

    pub fn handle(&self) -> InvokerHandle {
        self.handle.clone()
    }

    /// Runs until `shutdown`; then stops every attempt (they are resumed by the next leader:
    /// nothing they proposed is lost) and returns once all have ended.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let concurrency = self.slots.clone();
        let mut running: HashMap<InvocationId, Running> = HashMap::new();
        let mut tasks: JoinSet<InvocationId> = JoinSet::new();
        let mut task_ids = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                command = self.commands.recv() => {
                    let Some(command) = command else { break };
                    match command {
                        InvokerCommand::Invoke { partition, epoch, invocation_id } => {
                            if let Some(entry) = running.get_mut(&invocation_id) {
                                if entry.epoch != epoch {
                                    // A task of an older leadership: it stops, this one runs.
                                    entry.cancel.cancel();
                                }
                                entry.again = Some((partition, epoch));
                                continue;
                            }
                            let (entry, task) = self.spawn_task(&concurrency, &shutdown, partition, epoch, invocation_id);
                            let abort = tasks.spawn(task);
                            task_ids.insert(abort.id(), invocation_id);
                            running.insert(invocation_id, entry);
                        }
                        InvokerCommand::Notify { invocation_id, notification } => {
                            if let Some(entry) = running.get(&invocation_id) {
                                let _ = entry.notifications.send(notification);
                            }
                        }
                        InvokerCommand::Abort { invocation_id } => {
                            if let Some(entry) = running.get_mut(&invocation_id) {
                                entry.again = None;
                                entry.cancel.cancel();
                            }
                        }
                        InvokerCommand::StepDown { partition, epoch } => {
                            let mut stopped = 0usize;
                            for entry in running.values_mut() {
                                if entry.partition == partition && entry.epoch <= epoch {
                                    entry.cancel.cancel();
                                    stopped += 1;
                                }
                                if entry.again.as_ref().is_some_and(|(p, e)| p.id() == partition && *e <= epoch) {
                                    entry.again = None;
                                }
                            }
                            debug!(%partition, epoch, stopped, "stepped down: attempts stopped");
                        }
                    }
                }
                Some(ended) = tasks.join_next_with_id() => {
                    let invocation_id = match ended {
                        Ok((task, id)) => { task_ids.remove(&task); id }
                        Err(err) => {
                            error!(%err, "an invocation task failed");
                            match task_ids.remove(&err.id()) { Some(id) => id, None => continue }
                        }
                    };
                    if let Some(Running { again: Some((partition, epoch)), .. }) = running.remove(&invocation_id) {
                        debug!(invocation = %invocation_id, "invoked again while finishing; restarting");
                        let (entry, task) = self.spawn_task(&concurrency, &shutdown, partition, epoch, invocation_id);
                        let abort = tasks.spawn(task);
                        task_ids.insert(abort.id(), invocation_id);
                        running.insert(invocation_id, entry);
                    }
                }
            }
        }
        concurrency.close();
        for entry in running.values() {
            entry.cancel.cancel();
        }
        while tasks.join_next().await.is_some() {}
    }

    fn spawn_task(
        &self,
        concurrency: &Arc<slots::Slots>,
        shutdown: &CancellationToken,
        partition: PartitionHandle,
        epoch: u64,
        invocation_id: InvocationId,
    ) -> (Running, impl Future<Output = InvocationId> + Send + 'static) {
        let (notifications_tx, notifications) = mpsc::unbounded_channel();
        let cancel = shutdown.child_token();
        let partition_id = partition.id();
        let invocation = Invocation {
            config: self.config.clone(),
            client: self.client.clone(),
            schema: self.schema.clone(),
            concurrency: concurrency.clone(),
            partition,
            epoch,
            invocation_id,
            notifications,
            cancel: cancel.clone(),
        };
        let entry = Running {
            partition: partition_id,
            epoch,
            notifications: notifications_tx,
            cancel,
            again: None,
        };
        (entry, async move {
            invocation.run().await;
            invocation_id
        })
    }
}
