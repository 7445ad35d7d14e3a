//! The deterministic core of a partition: [`apply`] takes one log record, reads and writes the
//! tables through a [`PartitionStore`], and returns the [`Action`]s the leader must carry out.
//! No IO but the store, no clock, no randomness: replaying the same records on the same tables
//! yields the same tables and the same actions.
//!
//! Records that make no sense for the current state (an effect of an attempt that is no longer
//! running, a notification sent as a command) are ignored and logged, the same way on every
//! replica. Only a storage failure is an error: the partition cannot go on without its tables.

mod attach;
mod completion;
mod object;
mod outbox;
mod promises;
mod signals;
mod terminate;
mod timers;

use completion::{complete, forget};
use timers::{register_timer, timer_fired};

pub use attach::query_of_command;
pub use outbox::is_implemented;
pub use promises::{PromiseCommand, promise_of_command};
pub use signals::signal_of_command;

use bytes::Bytes;
use prost::Message;
use reprise_service_protocol::MessageType;
use reprise_service_protocol::proto::{self, notification_template, output_command_message};
use reprise_types::{InvocationId, MillisSinceEpoch};
use tracing::{debug, info, warn};

use crate::action::Action;
use crate::record::{
    EffectKind, InvocationResult, InvokerEffect, OutboxMessage, Record, ResponseSink,
    ServiceInvocation, StoredFrame, TimerKey, TimerKind,
};
use crate::status::{InFlight, InvocationStatus, PinnedDeployment, Waiting};
use crate::storage::{PartitionStore, StorageError};

/// What a record is applied with, from the log entry that carries it: the same on every
/// replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyContext {
    /// The proposer's clock when it proposed the entry: what retention counts from.
    pub now: MillisSinceEpoch,
}

/// Applies one record. On error nothing may be committed: the caller discards the batch.
pub fn apply<S: PartitionStore>(
    store: &mut S,
    record: &Record,
    ctx: ApplyContext,
) -> Result<Vec<Action>, StorageError> {
    match record {
        Record::Invoke(invocation) => invoke(store, invocation, ctx.now),
        Record::Effect(effect) => apply_effect(store, effect, ctx),
        Record::TimerFired(timer) => timer_fired(store, timer),
        Record::AnnounceLeader { epoch } => announce_leader(store, *epoch),
        Record::Deliver(delivery) => outbox::deliver(store, delivery, ctx.now),
        Record::Signal(signal) => signals::signal(store, signal),
        Record::Terminate { target, mode } => terminate::terminate(store, *target, *mode, ctx.now),
        Record::Purge { target } => terminate::purge(store, *target),
        Record::Resume { target } => terminate::resume(store, *target),
        Record::Attach { target, sink } => attach::attach(store, *target, sink.clone()),
        Record::OutboxDelivered { seqs } => {
            for &seq in seqs {
                store.delete_outbox(seq)?;
            }
            Ok(Vec::new())
        }
    }
}

/// A new leadership: effects of earlier ones are fenced from here on. An announcement that is
/// not newer than the current epoch (two leaders raced) changes nothing.
fn announce_leader<S: PartitionStore>(
    store: &mut S,
    epoch: u64,
) -> Result<Vec<Action>, StorageError> {
    let current = store.leader_epoch()?;
    if epoch > current {
        store.put_leader_epoch(epoch)?;
    } else {
        info!(
            epoch,
            current, "a leadership announcement that is not newer; ignored"
        );
    }
    Ok(Vec::new())
}

fn invoke<S: PartitionStore>(
    store: &mut S,
    invocation: &ServiceInvocation,
    now: MillisSinceEpoch,
) -> Result<Vec<Action>, StorageError> {
    let id = invocation.invocation_id;
    match store.status(id)? {
        None => {}
        // The same invocation again (a retried request): join it rather than run it twice.
        Some(InvocationStatus::Completed { result, .. }) => {
            return match &invocation.response_sink {
                Some(sink) => Ok(vec![respond(store, sink.clone(), id, result)?]),
                None => Ok(Vec::new()),
            };
        }
        Some(status) => {
            return match &invocation.response_sink {
                Some(sink) => join(store, id, status, sink.clone()),
                None => Ok(Vec::new()),
            };
        }
    }

    let input = proto::InputCommandMessage {
        headers: invocation
            .headers
            .iter()
            .map(|(key, value)| proto::Header {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        value: Some(proto::Value {
            content: invocation.argument.clone(),
        }),
        name: String::new(),
    };
    store.put_journal_entry(id, 0, frame(MessageType::InputCommand, &input))?;
    let in_flight = InFlight {
        target: invocation.target.clone(),
        response_sinks: invocation.response_sink.iter().cloned().collect(),
        journal_length: 1,
        commands: 1,
        attempt: 0,
        deployment: None,
        output: None,
        notified_completions: Vec::new(),
        notified_signals: Vec::new(),
        notified_signal_names: Vec::new(),
        pending_calls: Vec::new(),
        last_failure: None,
        created_at: invocation.created_at,
        retention: invocation.retention,
    };
    if let Some(at) = invocation.execution_time.filter(|at| *at > now) {
        let timer = TimerKey {
            wake_at: at,
            invocation_id: id,
            kind: TimerKind::Start,
        };
        store.put_timer(timer)?;
        store.put_status(id, InvocationStatus::Scheduled(in_flight))?;
        return Ok(vec![Action::RegisterTimer(timer)]);
    }
    start(store, id, in_flight)
}

/// An invocation whose input is journaled starts: it runs, or, for an exclusive handler whose
/// object is held, waits its turn in the object's inbox.
fn start<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    in_flight: InFlight,
) -> Result<Vec<Action>, StorageError> {
    if let Some(object) = in_flight.target.locked_object()
        && let Some(seq) = object::lock_or_enqueue(store, &object, id)?
    {
        store.put_status(id, InvocationStatus::Inboxed { in_flight, seq })?;
        return Ok(Vec::new());
    }
    let target = in_flight.target.clone();
    store.put_status(id, InvocationStatus::Invoked(in_flight))?;
    Ok(vec![Action::Invoke {
        invocation_id: id,
        target,
    }])
}

/// Hands a result to whoever waits for it: an ingress request on this node, or a calling
/// invocation, through the outbox.
fn respond<S: PartitionStore>(
    store: &mut S,
    sink: ResponseSink,
    id: InvocationId,
    result: InvocationResult,
) -> Result<Action, StorageError> {
    match sink {
        ResponseSink::Ingress { .. } => Ok(Action::Respond {
            sink,
            invocation_id: id,
            result,
        }),
        ResponseSink::Invocation {
            caller,
            completion_id,
            notification,
        } => outbox::send(
            store,
            OutboxMessage::CallResult {
                caller,
                completion_id,
                notification,
                result,
            },
        ),
    }
}

/// The most callers one invocation answers at completion: attaching is open to any client, and
/// the sinks are kept in the status.
const MAX_SINKS: usize = 4096;

/// `sink` waits for the invocation in flight with `status` (which the caller read): it is
/// answered at completion, or at once with a failure when too many wait already.
fn join<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    mut status: InvocationStatus,
    sink: ResponseSink,
) -> Result<Vec<Action>, StorageError> {
    let Some(in_flight) = status.in_flight_mut() else {
        return Ok(Vec::new());
    };
    if in_flight.response_sinks.len() >= MAX_SINKS {
        warn!(invocation = %id, "too many callers wait for this invocation; one more is refused");
        let refused = InvocationResult::Failure {
            code: 429,
            message: format!("more than {MAX_SINKS} callers wait for invocation {id}"),
        };
        return Ok(vec![respond(store, sink, id, refused)?]);
    }
    in_flight.response_sinks.push(sink);
    store.put_status(id, status)?;
    Ok(Vec::new())
}

fn apply_effect<S: PartitionStore>(
    store: &mut S,
    effect: &InvokerEffect,
    ctx: ApplyContext,
) -> Result<Vec<Action>, StorageError> {
    let id = effect.invocation_id;
    let now = ctx.now;
    let Some(status) = store.status(id)? else {
        warn!(invocation = %id, "effect for an unknown invocation; ignored");
        return Ok(Vec::new());
    };
    if let Some(stale) = stale_effect(&status, effect, store.leader_epoch()?) {
        info!(invocation = %id, kind = effect.kind.name(), fence = ?effect.fence, reason = stale, "fenced effect; ignored");
        return Ok(Vec::new());
    }
    // Giving up ends a running or a suspended invocation alike.
    if let EffectKind::GaveUp { code, message } = &effect.kind
        && let InvocationStatus::Invoked(in_flight) | InvocationStatus::Suspended { in_flight, .. } =
            status
    {
        let result = InvocationResult::Failure {
            code: *code,
            message: message.clone(),
        };
        return complete(store, id, in_flight, result, now);
    }
    // Pausing stops a running or suspended invocation alike, until it is resumed.
    if let EffectKind::Paused { code, message } = &effect.kind
        && let InvocationStatus::Invoked(mut in_flight)
        | InvocationStatus::Suspended { mut in_flight, .. } = status
    {
        in_flight.last_failure = Some(format!("[{code}] {message}"));
        // Late effects of the paused attempt are fenced.
        in_flight.attempt = in_flight.attempt.saturating_add(1);
        store.put_status(id, InvocationStatus::Paused(in_flight))?;
        return Ok(vec![Action::AbortAttempt { invocation_id: id }]);
    }
    if let EffectKind::RunProposal {
        completion_id,
        result,
    } = &effect.kind
    {
        return complete_run(store, id, *completion_id, result);
    }
    match (status, &effect.kind) {
        (InvocationStatus::Invoked(mut in_flight), kind) => match kind {
            EffectKind::PinnedDeployment {
                deployment_id,
                protocol_version,
            } => {
                if in_flight.deployment.is_none() {
                    in_flight.deployment = Some(PinnedDeployment {
                        deployment_id: deployment_id.clone(),
                        protocol_version: *protocol_version,
                    });
                    store.put_status(id, InvocationStatus::Invoked(in_flight))?;
                }
                Ok(Vec::new())
            }
            EffectKind::JournalEntry(entry) => append_command(store, id, in_flight, entry),
            EffectKind::Call { entry, callee } => {
                outbox::call(store, id, in_flight, entry, callee, now)
            }
            EffectKind::Suspended {
                waiting_completions,
                waiting_signals,
                waiting_named_signals,
            } => {
                let waiting = Waiting {
                    completions: waiting_completions.clone(),
                    signals: waiting_signals.clone(),
                    named_signals: waiting_named_signals.clone(),
                };
                suspend(store, id, in_flight, waiting)
            }
            EffectKind::End => {
                let result = in_flight
                    .output
                    .clone()
                    .unwrap_or(InvocationResult::Failure {
                        code: 500,
                        message: "the handler ended without producing an output".to_owned(),
                    });
                complete(store, id, in_flight, result, now)
            }
            EffectKind::AttemptFailed { code, message } => {
                in_flight.last_failure = Some(format!("[{code}] {message}"));
                // The next attempt is another one: late effects of this one are fenced.
                in_flight.attempt = in_flight.attempt.saturating_add(1);
                store.put_status(id, InvocationStatus::Invoked(in_flight))?;
                Ok(Vec::new())
            }
            EffectKind::GaveUp { .. }
            | EffectKind::Paused { .. }
            | EffectKind::RunProposal { .. } => Ok(Vec::new()),
        },
        (status, kind) => {
            debug!(invocation = %id, ?kind, state = state_name(&status), "stale effect; ignored");
            Ok(Vec::new())
        }
    }
}

/// Why an effect is not the current attempt's, if it is not: it was issued under another
/// leadership than the one whose log entry carries it, by another attempt, or it is a command
/// for a journal position that is already taken (or not reached yet).
fn stale_effect(
    status: &InvocationStatus,
    effect: &InvokerEffect,
    term: u64,
) -> Option<&'static str> {
    if effect.fence.leader_epoch != term {
        return Some("issued under another leadership");
    }
    // Effects for other states are dealt with (ignored) by the state's own rules.
    let in_flight = match status {
        InvocationStatus::Invoked(in_flight) | InvocationStatus::Suspended { in_flight, .. } => {
            in_flight
        }
        _ => return None,
    };
    if effect.fence.attempt != in_flight.attempt {
        return Some("from another attempt");
    }
    if matches!(
        effect.kind,
        EffectKind::JournalEntry(_) | EffectKind::Call { .. }
    ) && effect.fence.command_index != in_flight.commands
    {
        return Some("a command for another journal position");
    }
    None
}

fn state_name(status: &InvocationStatus) -> &'static str {
    match status {
        InvocationStatus::Invoked(_) => "invoked",
        InvocationStatus::Scheduled(_) => "scheduled",
        InvocationStatus::Paused(_) => "paused",
        InvocationStatus::Inboxed { .. } => "inboxed",
        InvocationStatus::Suspended { .. } => "suspended",
        InvocationStatus::Completed { .. } => "completed",
    }
}

/// Appends a command (or custom entry) the deployment sent, verbatim.
fn append_command<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    mut in_flight: InFlight,
    entry: &StoredFrame,
) -> Result<Vec<Action>, StorageError> {
    let Some(ty) = MessageType::from_id(entry.ty) else {
        warn!(invocation = %id, ty = entry.ty, "unknown journal entry type; ignored");
        return Ok(Vec::new());
    };
    if !(ty.is_command() || ty.is_custom()) || ty == MessageType::InputCommand {
        warn!(invocation = %id, %ty, "a deployment cannot journal this entry; ignored");
        return Ok(Vec::new());
    }
    // The invoker fails the attempt on these instead of proposing them, and call commands
    // come as `EffectKind::Call`; journaling one here would acknowledge what nothing does.
    if !is_implemented(ty)
        || matches!(
            ty,
            MessageType::CallCommand | MessageType::OneWayCallCommand
        )
    {
        warn!(invocation = %id, %ty, "a command this state machine cannot carry out; ignored");
        return Ok(Vec::new());
    }
    if ty == MessageType::OutputCommand {
        match proto::OutputCommandMessage::decode(entry.payload.clone()) {
            Ok(output) => in_flight.output = Some(output_result(output)),
            Err(err) => {
                warn!(invocation = %id, %err, "undecodable output command; ignored");
                return Ok(Vec::new());
            }
        }
    }
    let signal = match signal_of_command(ty, &entry.payload) {
        Ok(signal) => signal,
        Err(err) => {
            warn!(invocation = %id, %ty, %err, "a signal command that cannot be carried out; ignored");
            return Ok(Vec::new());
        }
    };
    let query = match query_of_command(ty, &entry.payload) {
        Ok(query) => query,
        Err(err) => {
            warn!(invocation = %id, %ty, %err, "an attach or output command that cannot be carried out; ignored");
            return Ok(Vec::new());
        }
    };
    let promise = match promise_of_command(ty, &entry.payload) {
        Ok(Some(_)) if in_flight.target.object().is_none() => {
            warn!(invocation = %id, %ty, "a promise command from a handler that is not a workflow's; ignored");
            return Ok(Vec::new());
        }
        Ok(promise) => promise,
        Err(err) => {
            warn!(invocation = %id, %ty, %err, "a promise command that cannot be carried out; ignored");
            return Ok(Vec::new());
        }
    };
    journal_command(store, id, &mut in_flight, entry)?;
    if let Some(command) = promise
        && let Some(workflow) = in_flight.target.object()
    {
        let (mut actions, woken) = promises::apply(store, id, &mut in_flight, &workflow, command)?;
        store.put_status(id, InvocationStatus::Invoked(in_flight))?;
        if let Some(woken) = woken {
            for &(listener, completion_id) in &woken.listeners {
                let entry = woken.notification(completion_id);
                actions.extend(notify_completion(store, listener, completion_id, entry)?);
            }
        }
        return Ok(actions);
    }
    if let Some((target, completion_id)) = query {
        let message = attach::query_message(ty, target, id, completion_id);
        let deliver = outbox::send(store, message)?;
        store.put_status(id, InvocationStatus::Invoked(in_flight))?;
        return Ok(vec![deliver]);
    }
    if let Some(signal) = signal {
        let deliver = outbox::send(store, OutboxMessage::Signal(signal))?;
        store.put_status(id, InvocationStatus::Invoked(in_flight))?;
        return Ok(vec![deliver]);
    }
    if ty == MessageType::SleepCommand {
        let actions = register_timer(store, id, entry)?;
        store.put_status(id, InvocationStatus::Invoked(in_flight))?;
        return Ok(actions);
    }
    // State commands take effect in the same batch as the entry that records them.
    let actions = match object::state_command(store, id, &mut in_flight, ty, entry)? {
        Some(notification) => {
            let index = in_flight.journal_length;
            store.put_journal_entry(id, index, notification.clone())?;
            in_flight.journal_length = index.saturating_add(1);
            vec![Action::Notify {
                invocation_id: id,
                entry_index: index,
                entry: notification,
            }]
        }
        None => Vec::new(),
    };
    store.put_status(id, InvocationStatus::Invoked(in_flight))?;
    Ok(actions)
}

/// Puts a command at the end of the journal.
fn journal_command<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    in_flight: &mut InFlight,
    entry: &StoredFrame,
) -> Result<(), StorageError> {
    let index = in_flight.journal_length;
    store.put_journal_entry(id, index, entry.clone())?;
    in_flight.journal_length = index.saturating_add(1);
    in_flight.commands = in_flight.commands.saturating_add(1);
    Ok(())
}

fn output_result(output: proto::OutputCommandMessage) -> InvocationResult {
    match output.result {
        Some(output_command_message::Result::Value(value)) => {
            InvocationResult::Success(value.content)
        }
        Some(output_command_message::Result::Failure(failure)) => InvocationResult::Failure {
            code: failure.code,
            message: failure.message,
        },
        None => InvocationResult::Success(Bytes::new()),
    }
}

/// Turns a run proposal into the journaled notification the deployment then receives.
fn complete_run<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    completion_id: u32,
    result: &InvocationResult,
) -> Result<Vec<Action>, StorageError> {
    let entry = result_notification(
        MessageType::RunCompletionNotification,
        completion_id,
        result,
    );
    notify_completion(store, id, completion_id, entry)
}

/// The notification completing `completion_id` with nothing (a sleep's, a promise's
/// completion acknowledged, an output that is not there yet).
fn void_notification(ty: MessageType, completion_id: u32) -> StoredFrame {
    let notification = proto::NotificationTemplate {
        id: Some(notification_template::Id::CompletionId(completion_id)),
        result: Some(notification_template::Result::Void(proto::Void {})),
    };
    frame(ty, &notification)
}

/// The notification completing `completion_id` with a result.
fn result_notification(
    ty: MessageType,
    completion_id: u32,
    result: &InvocationResult,
) -> StoredFrame {
    let result = match result {
        InvocationResult::Success(value) => notification_template::Result::Value(proto::Value {
            content: value.clone(),
        }),
        InvocationResult::Failure { code, message } => {
            notification_template::Result::Failure(proto::Failure {
                code: *code,
                message: message.clone(),
                metadata: Vec::new(),
            })
        }
    };
    let notification = proto::NotificationTemplate {
        id: Some(notification_template::Id::CompletionId(completion_id)),
        result: Some(result),
    };
    frame(ty, &notification)
}

/// Journals the notification that completes `completion_id`, once. A running attempt receives
/// it; a suspended invocation waiting for it resumes.
fn notify_completion<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    completion_id: u32,
    entry: StoredFrame,
) -> Result<Vec<Action>, StorageError> {
    /// What the invocation does while the completion is journaled.
    enum State {
        Running,
        Waiting(Waiting),
        Paused,
    }
    let status = store.status(id)?;
    let (mut in_flight, state) = match status {
        Some(InvocationStatus::Invoked(in_flight)) => (in_flight, State::Running),
        Some(InvocationStatus::Suspended { in_flight, waiting }) => {
            (in_flight, State::Waiting(waiting))
        }
        // Kept for when it is resumed: its handler will be waiting for it.
        Some(InvocationStatus::Paused(in_flight)) => (in_flight, State::Paused),
        _ => {
            debug!(invocation = %id, completion_id, "completion for an invocation that is not running; ignored");
            return Ok(Vec::new());
        }
    };
    if in_flight.notified_completions.contains(&completion_id) {
        debug!(invocation = %id, completion_id, "already completed; ignored");
        return Ok(Vec::new());
    }
    let notify = journal_notification(store, id, &mut in_flight, completion_id, entry)?;
    let waiting = match state {
        State::Running => None,
        State::Waiting(waiting) => Some(waiting),
        State::Paused => {
            store.put_status(id, InvocationStatus::Paused(in_flight))?;
            return Ok(Vec::new());
        }
    };
    match waiting {
        None => {
            store.put_status(id, InvocationStatus::Invoked(in_flight))?;
            Ok(vec![notify])
        }
        Some(waiting) if waiting.completions.contains(&completion_id) => {
            let target = in_flight.target.clone();
            in_flight.attempt = in_flight.attempt.saturating_add(1);
            store.put_status(id, InvocationStatus::Invoked(in_flight))?;
            Ok(vec![Action::Invoke {
                invocation_id: id,
                target,
            }])
        }
        Some(waiting) => {
            store.put_status(id, InvocationStatus::Suspended { in_flight, waiting })?;
            Ok(Vec::new())
        }
    }
}

/// Journals the notification completing `completion_id` of a running or suspended invocation
/// (the caller writes its status); the action tells a running attempt.
fn journal_notification<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    in_flight: &mut InFlight,
    completion_id: u32,
    entry: StoredFrame,
) -> Result<Action, StorageError> {
    let index = in_flight.journal_length;
    store.put_journal_entry(id, index, entry.clone())?;
    in_flight.journal_length = index.saturating_add(1);
    in_flight.notified_completions.push(completion_id);
    Ok(Action::Notify {
        invocation_id: id,
        entry_index: index,
        entry,
    })
}

/// Suspends, or resumes at once when something waited for is already in the journal.
fn suspend<S: PartitionStore>(
    store: &mut S,
    id: InvocationId,
    mut in_flight: InFlight,
    waiting: Waiting,
) -> Result<Vec<Action>, StorageError> {
    let ready = waiting.is_empty() || waiting.is_ready(&in_flight);
    if ready {
        let target = in_flight.target.clone();
        in_flight.attempt = in_flight.attempt.saturating_add(1);
        store.put_status(id, InvocationStatus::Invoked(in_flight))?;
        return Ok(vec![Action::Invoke {
            invocation_id: id,
            target,
        }]);
    }
    store.put_status(id, InvocationStatus::Suspended { in_flight, waiting })?;
    Ok(Vec::new())
}

fn frame(ty: MessageType, message: &impl Message) -> StoredFrame {
    StoredFrame {
        ty: ty.id(),
        payload: message.encode_to_vec().into(),
    }
}
