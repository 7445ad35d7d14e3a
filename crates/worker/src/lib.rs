//! The worker role of a node: it opens the node's partition database, starts one raft group per
//! partition of the [`PartitionTable`], and runs each partition leader's actuators — the
//! invoker for `Invoke`/`Notify`/`AbortAttempt`, the ingress waiters for `Respond`, the timer
//! service for `RegisterTimer`. When this node becomes a partition's leader it rebuilds the
//! work from the partition's rows: every invocation that was running is invoked again and the
//! earliest timers are loaded.
//!
//! [`WorkerHandle`] is how the ingress reaches the partitions: it routes an invocation to the
//! partition owning its key, proposes it, and (for calls) waits for its result.

mod outbox;
mod partition_table;
mod timers;
mod waiters;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reprise_invoker::{Invoker, InvokerCommand, InvokerHandle, Notification};
use reprise_metadata_server::MetadataClient;
use reprise_partition_processor::{
    Action, InvocationResult, InvocationStatus, Partition, PartitionHandle, PartitionOptions,
    ProposeError, Record, ResponseSink, RocksDbStore, ServiceInvocation, Signal, TerminationMode,
};
use reprise_schema::SchemaView;
use reprise_service_client::ServiceClient;
use reprise_types::{InvocationId, MillisSinceEpoch, PartitionId, PartitionKey};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use outbox::Router;
pub use partition_table::{PartitionEntry, PartitionTable, PartitionTableError};
use timers::TimerWindow;
use waiters::Waiters;

/// How long a request waits for its partition to have a leader (after a start).
const LEADER_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    PartitionTable(#[from] PartitionTableError),
    #[error("cannot open the partition store: {0}")]
    Store(String),
    #[error(transparent)]
    Partition(#[from] reprise_partition_processor::PartitionError),
    #[error("no partition owns key {0}: the partition table is incomplete")]
    NoPartition(PartitionKey),
    #[error(
        "partition {partition} runs on node N{node}, and calls are not forwarded between nodes \
         yet: send it to that node's ingress"
    )]
    Elsewhere { partition: PartitionId, node: u32 },
    #[error(transparent)]
    Propose(#[from] ProposeError),
    #[error("the worker stopped before the invocation completed")]
    Stopped,
    #[error("this node runs no partition {0}")]
    UnknownPartition(PartitionId),
}

/// A partition as this node runs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionState {
    pub id: PartitionId,
    pub start: PartitionKey,
    pub end: PartitionKey,
    /// The epoch (raft term) of this node's leadership, while it leads.
    pub leader_epoch: Option<u64>,
}

pub struct WorkerOptions {
    pub node_dir: PathBuf,
    pub member_id: u64,
    pub address: String,
    pub cluster_name: String,
    pub num_partitions: u32,
    /// Timers each partition leader keeps in memory.
    pub timers_in_memory: usize,
    pub invoker: reprise_invoker::Config,
}

/// A running worker. Stop it with [`Worker::shutdown`].
pub struct Worker {
    store: RocksDbStore,
    partitions: Vec<Partition>,
    tasks: JoinSet<()>,
    stop: CancellationToken,
    handle: WorkerHandle,
}

impl Worker {
    pub const STORE_DIR: &'static str = "partition-store";
    /// Under the node directory: one directory of snapshot files per partition.
    pub const SNAPSHOT_DIR: &'static str = "partition-snapshots";

    pub async fn start(
        options: WorkerOptions,
        metadata: &MetadataClient,
        schema: SchemaView,
        client: ServiceClient,
    ) -> Result<Self, WorkerError> {
        let me = u32::try_from(options.member_id).unwrap_or(0);
        let table = PartitionTable::load_or_create(metadata, options.num_partitions, me).await?;
        if table.partitions.len() != options.num_partitions as usize {
            info!(
                partitions = table.partitions.len(),
                configured = options.num_partitions,
                "the cluster keeps the partition count it was created with"
            );
        }
        let path = options.node_dir.join(Self::STORE_DIR);
        let store = tokio::task::spawn_blocking(move || RocksDbStore::open(&path))
            .await
            .map_err(|err| WorkerError::Store(err.to_string()))?
            .map_err(|err| WorkerError::Store(err.to_string()))?;

        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let invoker = Invoker::new(options.invoker, client, schema);
        let invoker_handle = invoker.handle();
        tasks.spawn(invoker.run(stop.child_token()));
        let waiters = Arc::new(Waiters::default());

        let mut partitions = Vec::with_capacity(table.partitions.len());
        let mut handles = HashMap::new();
        let mut actuators = Vec::new();
        // Each partition has one copy, on the node the table places it on: a node that joins
        // never starts a second one (that would be two leaders of one partition).
        for entry in table.partitions.iter().filter(|entry| entry.runs_on(me)) {
            let started = Partition::start(PartitionOptions {
                id: entry.id,
                range: entry.start..=entry.end,
                member_id: options.member_id,
                address: options.address.clone(),
                cluster_name: options.cluster_name.clone(),
                store: store.clone(),
                snapshot_dir: options
                    .node_dir
                    .join(Self::SNAPSHOT_DIR)
                    .join(entry.id.to_string()),
                snapshot_interval: PartitionOptions::DEFAULT_SNAPSHOT_INTERVAL,
            })
            .await;
            let mut partition = match started {
                Ok(partition) => partition,
                Err(err) => {
                    stop.cancel();
                    for partition in partitions {
                        stop_partition(partition).await;
                    }
                    while tasks.join_next().await.is_some() {}
                    return Err(err.into());
                }
            };
            let handle = partition.handle();
            if let Some(actions) = partition.take_actions() {
                actuators.push((handle.clone(), actions));
            }
            handles.insert(entry.id, handle);
            partitions.push(partition);
        }
        // Actuators start once every partition exists: their outboxes deliver to any of them.
        let router = Router {
            table: Arc::new(table),
            partitions: Arc::new(handles),
        };
        for (handle, actions) in actuators {
            tasks.spawn(actuate(
                handle,
                options.timers_in_memory,
                actions,
                invoker_handle.clone(),
                waiters.clone(),
                router.clone(),
                stop.child_token(),
            ));
        }
        info!(partitions = partitions.len(), "partitions started");
        let read_store = store.clone();
        Ok(Self {
            store,
            partitions,
            tasks,
            stop,
            handle: WorkerHandle {
                router,
                waiters,
                store: read_store,
            },
        })
    }

    pub fn handle(&self) -> WorkerHandle {
        self.handle.clone()
    }

    /// The partitions that run on this node.
    pub fn partition_ids(&self) -> Vec<PartitionId> {
        self.partitions.iter().map(|p| p.handle().id()).collect()
    }

    /// Waits until this node leads every partition (on a single node: after the elections
    /// that follow a start).
    pub async fn wait_until_serving(&self, timeout: Duration) -> Result<(), WorkerError> {
        for partition in self.handle.router.partitions.values() {
            partition.wait_for_leadership(timeout).await?;
        }
        Ok(())
    }

    /// Stops the invoker and the actuators, then the partitions, then closes the database.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let mut tasks = self.tasks;
        while let Some(ended) = tasks.join_next().await {
            if let Err(err) = ended {
                error!(%err, "a worker task failed");
            }
        }
        for partition in self.partitions {
            stop_partition(partition).await;
        }
        drop(self.handle);
        let store = self.store;
        match tokio::task::spawn_blocking(move || store.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => error!(%err, "closing the partition store"),
            Err(err) => error!(%err, "closing the partition store"),
        }
    }
}

async fn stop_partition(partition: Partition) {
    if let Err(err) = partition.shutdown().await {
        warn!(%err, "stopping a partition");
    }
}

/// Carries out the actions of one partition while this node leads it, and fires its timers.
async fn actuate(
    partition: PartitionHandle,
    timers_in_memory: usize,
    mut actions: mpsc::UnboundedReceiver<Vec<Action>>,
    invoker: InvokerHandle,
    waiters: Arc<Waiters>,
    router: Router,
    stop: CancellationToken,
) {
    let outbox_added = Arc::new(Notify::new());
    let mut timers = TimerWindow::new(
        partition.store().clone(),
        *partition.range().start(),
        timers_in_memory,
    );
    let mut leadership = partition.leadership();
    let mut epochs = partition.epochs();
    // The epoch this actuator acts for: announced by it, while the raft group leads.
    let mut leads: Option<u64> = None;
    // Leadership may have been won before this task subscribed: act on the current value too.
    let mut changed = true;
    let mut announce_retry: Option<tokio::time::Instant> = None;
    // The task resuming the current epoch's invocations; dropping it (the epoch ended, or the
    // actuator stops) aborts it.
    let mut _resuming: Option<AbortOnDrop> = None;
    // The task delivering the outbox in the current epoch; dropped with the epoch.
    let mut _delivering: Option<AbortOnDrop> = None;
    loop {
        if changed {
            changed = false;
            let raft_leads = leadership.borrow_and_update().is_some();
            let announced = *epochs.borrow_and_update();
            if let Some(old) = leads
                && (announced != Some(old) || !raft_leads)
            {
                // The epoch ended (the group lost its leadership, or a step-down): whatever
                // ran for it stops; it is all durable, and the next epoch resumes it.
                invoker.send(InvokerCommand::StepDown {
                    partition: partition.id(),
                    epoch: old,
                });
                timers.clear();
                _resuming = None;
                _delivering = None;
                leads = None;
                partition.relinquish();
                info!(partition = %partition.id(), epoch = old, "leadership epoch ended");
            }
            if raft_leads && leads.is_none() {
                match partition.announce().await {
                    Ok(epoch) => {
                        announce_retry = None;
                        leads = Some(epoch);
                        let (resumed, resumer) = (partition.clone(), invoker.clone());
                        _resuming = Some(AbortOnDrop(tokio::spawn(async move {
                            resume_all(&resumed, epoch, &resumer).await;
                        })));
                        _delivering = Some(AbortOnDrop(tokio::spawn(outbox::deliver(
                            partition.clone(),
                            router.clone(),
                            outbox_added.clone(),
                        ))));
                        if let Err(err) = timers.load().await {
                            error!(partition = %partition.id(), %err, "cannot load the partition's timers");
                        }
                    }
                    Err(err) => {
                        warn!(partition = %partition.id(), %err, "cannot announce the leadership; trying again");
                        announce_retry =
                            Some(tokio::time::Instant::now() + Duration::from_millis(100));
                    }
                }
            }
        }
        let next_timer = timers.next_due_in(MillisSinceEpoch::now());
        tokio::select! {
            _ = stop.cancelled() => return,
            result = leadership.changed() => {
                if result.is_err() {
                    return;
                }
                changed = true;
            }
            _ = epochs.changed() => changed = true,
            _ = tokio::time::sleep_until(announce_retry.unwrap_or_else(tokio::time::Instant::now)), if announce_retry.is_some() => {
                announce_retry = None;
                changed = true;
            }
            batch = actions.recv() => {
                let Some(batch) = batch else { return };
                for action in batch {
                    carry_out(action, leads, &partition, &invoker, &waiters, &mut timers, &outbox_added);
                }
            }
            _ = tokio::time::sleep(next_timer.unwrap_or_default()), if next_timer.is_some() => {
                fire_due(&partition, &mut timers).await;
            }
        }
    }
}

/// Proposes every timer whose time has come (by the wall clock: a tokio timer may wake a
/// little early, and a timer never fires before its time).
async fn fire_due(partition: &PartitionHandle, timers: &mut TimerWindow) {
    let due = match timers.take_due(MillisSinceEpoch::now()).await {
        Ok(due) => due,
        Err(err) => {
            error!(partition = %partition.id(), %err, "cannot read the partition's timers");
            return;
        }
    };
    for timer in due {
        // Not waiting for the commit: the next timers need not wait for this one.
        if let Err(err) = partition.enqueue(Record::TimerFired(timer)).await {
            // No longer leader or stopping: the next leader loads the timer from the table.
            warn!(partition = %partition.id(), %err, "cannot fire a timer");
            timers.clear();
            return;
        }
    }
}

/// Ids read from the resume index at a time.
const RESUME_PAGE: usize = 256;

/// A task that is aborted when its owner drops this.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// On becoming leader: every invocation that was running runs again. The ids come from the
/// partition's index of invoked invocations, a page at a time, so completed and suspended
/// invocations are never read, and a page is handed over only when the invoker has room: what
/// waits there stays bounded by its concurrency limit, however many invocations resume. The
/// invoker reads each one's journal only once it has a slot. Runs as a task of its own, so the
/// actuator carries out actions meanwhile.
async fn resume_all(partition: &PartitionHandle, epoch: u64, invoker: &InvokerHandle) {
    let mut after = None;
    let mut resumed = 0usize;
    loop {
        invoker.has_room().await;
        let page = match partition.invoked_after(after, RESUME_PAGE).await {
            Ok(page) => page,
            Err(err) => {
                error!(partition = %partition.id(), %err, resumed, "cannot read the partition's invoked invocations to resume them");
                return;
            }
        };
        for &invocation_id in &page {
            invoker.send(InvokerCommand::Invoke {
                partition: partition.clone(),
                epoch,
                invocation_id,
            });
        }
        resumed += page.len();
        match page.last() {
            Some(&last) if page.len() == RESUME_PAGE => after = Some(last),
            _ => break,
        }
    }
    info!(partition = %partition.id(), epoch, resumed, "leading the partition");
}

fn carry_out(
    action: Action,
    leads: Option<u64>,
    partition: &PartitionHandle,
    invoker: &InvokerHandle,
    waiters: &Waiters,
    timers: &mut TimerWindow,
    outbox_added: &Notify,
) {
    match (action, leads) {
        // Responses go to whoever waits on this node, leader or not.
        (
            Action::Respond {
                sink: ResponseSink::Ingress { request_id },
                result,
                ..
            },
            _,
        ) => waiters.complete(request_id, result),
        (
            Action::Respond {
                sink: ResponseSink::Invocation { caller, .. },
                invocation_id,
                ..
            },
            _,
        ) => {
            // The state machine sends a caller's result through the outbox; this is a bug.
            error!(invocation = %invocation_id, %caller, "a call's result was to be answered in place; dropped (a bug)");
        }
        // The rest is the leader's; a new leader rebuilds it from the rows.
        (_, None) => {}
        (Action::Invoke { invocation_id, .. }, Some(epoch)) => {
            invoker.send(InvokerCommand::Invoke {
                partition: partition.clone(),
                epoch,
                invocation_id,
            })
        }
        (
            Action::Notify {
                invocation_id,
                entry_index,
                entry,
            },
            Some(_),
        ) => invoker.send(InvokerCommand::Notify {
            invocation_id,
            notification: Notification { entry_index, entry },
        }),
        (Action::AbortAttempt { invocation_id }, Some(_)) => {
            invoker.send(InvokerCommand::Abort { invocation_id })
        }
        (Action::RegisterTimer(timer), Some(_)) => timers.add(timer),
        (Action::DeliverOutbox { .. }, Some(_)) => outbox_added.notify_one(),
    }
}

/// Routes invocations to partitions. Cheap to clone.
#[derive(Clone)]
pub struct WorkerHandle {
    router: Router,
    waiters: Arc<Waiters>,
    store: RocksDbStore,
}

impl WorkerHandle {
    /// The database of this node's partitions, for reading (SQL over the invocations).
    pub fn store(&self) -> RocksDbStore {
        self.store.clone()
    }

    /// The partitions this node runs, in id order.
    pub fn partitions(&self) -> Vec<PartitionState> {
        let mut states: Vec<PartitionState> = self
            .router
            .partitions
            .values()
            .map(|partition| PartitionState {
                id: partition.id(),
                start: *partition.range().start(),
                end: *partition.range().end(),
                leader_epoch: partition.epoch(),
            })
            .collect();
        states.sort_by_key(|state| state.id);
        states
    }

    /// Makes this node give up its leadership epoch of `id`: what ran for it stops, and the
    /// partition's actuator announces a new epoch (a group of one leads again) and resumes it.
    pub fn step_down(&self, id: PartitionId) -> Result<(), WorkerError> {
        let partition = self
            .router
            .partitions
            .get(&id)
            .ok_or(WorkerError::UnknownPartition(id))?;
        partition.step_down()?;
        Ok(())
    }

    async fn propose(&self, invocation: ServiceInvocation) -> Result<(), WorkerError> {
        self.router
            .propose(
                invocation.invocation_id.partition_key(),
                Record::Invoke(invocation),
            )
            .await
    }

    /// The committed status of an invocation, from its partition's rows on this node.
    pub async fn invocation_status(
        &self,
        id: InvocationId,
    ) -> Result<Option<InvocationStatus>, WorkerError> {
        let partition = self.router.partition(id.partition_key())?;
        partition
            .read_status(id)
            .await
            .map_err(|err| WorkerError::Store(err.to_string()))
    }

    /// Proposes to cancel or kill an invocation; returns once the request is durable (what it
    /// does to the invocation follows as it is applied).
    pub async fn terminate(
        &self,
        target: InvocationId,
        mode: TerminationMode,
    ) -> Result<(), WorkerError> {
        self.router
            .propose(target.partition_key(), Record::Terminate { target, mode })
            .await
    }

    /// Proposes to run a paused invocation again.
    pub async fn resume(&self, target: InvocationId) -> Result<(), WorkerError> {
        self.router
            .propose(target.partition_key(), Record::Resume { target })
            .await
    }

    /// Proposes to purge a completed invocation now.
    pub async fn purge(&self, target: InvocationId) -> Result<(), WorkerError> {
        self.router
            .propose(target.partition_key(), Record::Purge { target })
            .await
    }

    /// Proposes a signal (an awakeable's completion) to the partition of its invocation;
    /// returns once it is durable.
    pub async fn signal(&self, signal: Signal) -> Result<(), WorkerError> {
        self.router
            .propose(signal.target.partition_key(), Record::Signal(signal))
            .await
    }

    /// Proposes the invocation; returns once it is durable.
    pub async fn send(&self, mut invocation: ServiceInvocation) -> Result<(), WorkerError> {
        invocation.response_sink = None;
        self.propose(invocation).await
    }

    /// Waits for the result of an existing invocation (at once if it has one).
    pub async fn attach(&self, target: InvocationId) -> Result<InvocationResult, WorkerError> {
        let waiter = self.waiters.register();
        let sink = ResponseSink::Ingress {
            request_id: waiter.request_id(),
        };
        self.router
            .propose(target.partition_key(), Record::Attach { target, sink })
            .await?;
        waiter.wait().await.ok_or(WorkerError::Stopped)
    }

    /// Proposes the invocation and waits for its result.
    pub async fn call(
        &self,
        mut invocation: ServiceInvocation,
    ) -> Result<InvocationResult, WorkerError> {
        let waiter = self.waiters.register();
        invocation.response_sink = Some(ResponseSink::Ingress {
            request_id: waiter.request_id(),
        });
        self.propose(invocation).await?;
        waiter.wait().await.ok_or(WorkerError::Stopped)
    }
}
