//! One attempt of an invocation: one HTTP/2 request to the deployment. The request body is
//! `StartMessage` and the stored journal, then (in bidirectional mode) every notification that
//! commits while the attempt runs. The response is read frame by frame as it streams: commands
//! and run results are proposed to the partition in the order they arrive, and the attempt ends
//! with `End`, `Suspension`, `Error`, or a failure of the transport or the protocol.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use prost::Message;
use reprise_partition_processor::{
    Callee, Committed, EffectKind, Fence, InvocationResult, InvocationTarget, InvokerEffect,
    PartitionHandle, Record, StoredFrame, is_implemented, promise_of_command, query_of_command,
    signal_of_command,
};
use reprise_schema::{Deployment, SchemaView};
use reprise_service_client::{RequestBody, SendError, ServiceClient, endpoint_path};
use reprise_service_protocol::discovery::ProtocolMode;
use reprise_service_protocol::proto::{self, propose_run_completion_message};
use reprise_service_protocol::{
    Frame, FrameDecoder, FrameWriter, MessageType, ServiceProtocolVersion,
};
use reprise_types::InvocationId;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use crate::body::ChannelBody;
use crate::{Config, Notification};

/// Protocol violations, as the SDKs number them.
const PROTOCOL_VIOLATION: u32 = 571;
const INTERNAL: u32 = 500;
/// A command Reprise does not carry out yet.
const NOT_IMPLEMENTED: u32 = 501;

/// Why an attempt failed; the invocation is retried.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) code: u32,
    pub(crate) message: String,
    /// The deployment asked for this delay before the next attempt.
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    fn new(code: u32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

pub(crate) enum Outcome {
    /// `End` was received and proposed.
    Ended,
    /// `Suspension` was received and proposed.
    Suspended,
    Failed(Failure),
    /// The partition cannot take proposals (it stopped, or this node lost its leadership), or
    /// the invoker asked the attempt to stop.
    Stopped,
}

/// What an attempt did, besides how it ended.
pub(crate) struct Report {
    pub(crate) outcome: Outcome,
    /// The last proposal: once committed, everything the attempt proposed is.
    pub(crate) last_proposal: Option<Committed>,
    /// The attempt journaled at least one new command.
    pub(crate) made_progress: bool,
}

/// An attempt idle this long while invocations wait for a slot suspends to free its own.
const YIELD_WHEN_IDLE: Duration = Duration::from_millis(200);

pub(crate) struct Attempt<'a> {
    pub(crate) config: &'a Config,
    pub(crate) schema: &'a SchemaView,
    pub(crate) slots: &'a crate::slots::Slots,
    pub(crate) client: &'a ServiceClient,
    pub(crate) partition: &'a PartitionHandle,
    pub(crate) invocation_id: InvocationId,
    /// Stamped on every effect; `fence.command_index` counts the commands as they are sent.
    pub(crate) fence: Fence,
    pub(crate) target: &'a InvocationTarget,
    pub(crate) deployment: &'a Deployment,
    pub(crate) version: ServiceProtocolVersion,
    pub(crate) journal: Vec<StoredFrame>,
    /// The object's whole state, or `None` to let the SDK read it lazily.
    pub(crate) eager_state: Option<Vec<(Bytes, Bytes)>>,
    pub(crate) retry_count: u32,
    pub(crate) since_last_stored: Duration,
    pub(crate) inactivity_timeout: Duration,
    pub(crate) abort_timeout: Duration,
}

impl Attempt<'_> {
    pub(crate) async fn run(
        self,
        notifications: &mut mpsc::UnboundedReceiver<Notification>,
        cancel: &CancellationToken,
    ) -> Report {
        let mut run = Running {
            partition: self.partition,
            schema: self.schema,
            config: self.config,
            keyless: self.target.key.is_none(),
            invocation_id: self.invocation_id,
            fence: self.fence,
            last_proposal: None,
            made_progress: false,
        };
        let outcome = tokio::select! {
            outcome = self.exchange(&mut run, notifications) => outcome,
            _ = cancel.cancelled() => Outcome::Stopped,
        };
        Report {
            outcome,
            last_proposal: run.last_proposal,
            made_progress: run.made_progress,
        }
    }

    fn start_message(&self) -> Frame {
        let id = self.invocation_id;
        Frame::new(
            MessageType::Start,
            &proto::StartMessage {
                id: Bytes::copy_from_slice(&id.to_bytes()),
                debug_id: id.to_string(),
                known_entries: u32::try_from(self.journal.len()).unwrap_or(u32::MAX),
                state_map: self
                    .eager_state
                    .iter()
                    .flatten()
                    .map(|(key, value)| proto::start_message::StateEntry {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                partial_state: self.eager_state.is_none(),
                key: self.target.key.clone().unwrap_or_default(),
                retry_count_since_last_stored_entry: self.retry_count,
                duration_since_last_stored_entry: u64::try_from(self.since_last_stored.as_millis())
                    .unwrap_or(u64::MAX),
                // Stable for the invocation, so `ctx.rand()` replays the same numbers.
                random_seed: random_seed(id),
            },
        )
    }

    fn request(&self, body: ChannelBody) -> Result<Request<RequestBody>, Failure> {
        let base: http::Uri = self.deployment.uri.parse().map_err(|err| {
            Failure::new(
                INTERNAL,
                format!("deployment URI `{}`: {err}", self.deployment.uri),
            )
        })?;
        let suffix = format!("invoke/{}/{}", self.target.service, self.target.handler);
        let uri = endpoint_path(&base, &suffix).ok_or_else(|| {
            Failure::new(
                INTERNAL,
                format!("cannot build the invoke URI from `{}`", self.deployment.uri),
            )
        })?;
        let content_type = HeaderValue::from_static(self.version.content_type());
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, content_type.clone())
            .header(header::ACCEPT, content_type)
            .header("x-restate-invocation-id", self.invocation_id.to_string())
            .header("x-restate-cluster-name", self.config.cluster_name.as_str());
        if let Some(key) = &self.target.key {
            request = request.header("x-restate-service-key", url_encode(key));
        }
        for (name, value) in &self.deployment.additional_headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) else {
                continue;
            };
            request = request.header(name, value);
        }
        request
            .body(BodyExt::boxed(body))
            .map_err(|err| Failure::new(INTERNAL, format!("cannot build the request: {err}")))
    }

    async fn exchange(
        &self,
        run: &mut Running<'_>,
        notifications: &mut mpsc::UnboundedReceiver<Notification>,
    ) -> Outcome {
        let known_entries = self.journal.len() as u32;
        let (input, body) = mpsc::unbounded_channel();
        let mut replay = FrameWriter::default();
        replay.push(&self.start_message());
        for entry in &self.journal {
            match entry.to_frame() {
                Some(frame) => replay.push(&frame),
                None => {
                    return Outcome::Failed(Failure::new(
                        INTERNAL,
                        format!(
                            "the stored journal holds an unknown entry type {}",
                            entry.ty
                        ),
                    ));
                }
            }
        }
        // The receiver is in the request we are about to send; it cannot be gone yet.
        for chunk in replay.finish() {
            let _ = input.send(chunk);
        }
        let bidi = self.deployment.protocol_mode == ProtocolMode::BidiStream
            && !self.inactivity_timeout.is_zero();
        // In request/response mode the input ends with the replay; the deployment suspends
        // when it needs anything new.
        let mut input = bidi.then_some(input);

        let request = match self.request(ChannelBody(body)) {
            Ok(request) => request,
            Err(failure) => return Outcome::Failed(failure),
        };
        let mut deadline = Instant::now() + self.abort_timeout;
        let response = tokio::select! {
            response = self.client.send(request) => response,
            _ = sleep_until(deadline) => {
                return Outcome::Failed(Failure::new(
                    INTERNAL,
                    format!("the deployment did not answer within {:?}", self.abort_timeout),
                ));
            }
        };
        let response = match response {
            Ok(response) => response,
            Err(err) => return Outcome::Failed(Failure::new(INTERNAL, transport_error(&err))),
        };
        if let Err(failure) = self.check_head(&response) {
            return Outcome::Failed(failure);
        }

        let mut body = response.into_body();
        let mut decoder = FrameDecoder::new(self.config.message_size_limit);
        let mut next_live = known_entries;
        let mut last_activity = Instant::now();
        if bidi {
            deadline = last_activity + self.inactivity_timeout;
        }
        loop {
            tokio::select! {
                chunk = body.frame() => {
                    let data = match chunk {
                        None => {
                            if let Err(err) = decoder.finish() {
                                return Outcome::Failed(Failure::new(PROTOCOL_VIOLATION, err.to_string()));
                            }
                            return Outcome::Failed(Failure::new(
                                INTERNAL,
                                "the deployment closed the response without End, Suspension or Error",
                            ));
                        }
                        Some(Err(err)) => {
                            return Outcome::Failed(Failure::new(
                                INTERNAL,
                                format!("reading the response failed: {err}"),
                            ));
                        }
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => data,
                            Err(_) => continue, // trailers carry nothing for us
                        },
                    };
                    decoder.push(&data);
                    last_activity = Instant::now();
                    loop {
                        let frame = match decoder.next_frame() {
                            Ok(Some(frame)) => frame,
                            Ok(None) => break,
                            Err(err) => {
                                return Outcome::Failed(Failure::new(PROTOCOL_VIOLATION, err.to_string()));
                            }
                        };
                        if let Some(outcome) = run.handle(frame).await {
                            return outcome;
                        }
                    }
                    deadline = if input.is_some() {
                        last_activity + self.inactivity_timeout
                    } else {
                        last_activity + self.abort_timeout
                    };
                }
                notification = notifications.recv(), if input.is_some() => {
                    let Some(notification) = notification else {
                        return Outcome::Stopped;
                    };
                    // Entries below `next_live` were replayed with the journal.
                    if notification.entry_index < next_live {
                        continue;
                    }
                    next_live = notification.entry_index + 1;
                    let Some(frame) = notification.entry.to_frame() else { continue };
                    trace!(invocation = %self.invocation_id, ty = %frame.ty, "sending notification");
                    let mut writer = FrameWriter::default();
                    writer.push(&frame);
                    if let Some(sender) = &input
                        && writer.finish().into_iter().any(|chunk| sender.send(chunk).is_err())
                    {
                        input = None;
                    }
                    last_activity = Instant::now();
                    deadline = last_activity + self.inactivity_timeout;
                }
                // Others wait for a slot: look again whether this attempt should give its up.
                _ = self.slots.contention(), if input.is_some() => {}
                _ = sleep_until(last_activity + YIELD_WHEN_IDLE), if input.is_some() && self.slots.contended() => {
                    // Idle while others wait for a slot: close the input, so the deployment
                    // suspends (it resumes when what it waits for arrives) and frees the slot.
                    debug!(invocation = %self.invocation_id, "idle while invocations wait for a slot: closing the input");
                    input = None;
                    deadline = Instant::now() + self.abort_timeout;
                }
                _ = sleep_until(deadline) => {
                    if input.take().is_some() {
                        // Inactive: close the input, so the deployment suspends or finishes.
                        debug!(invocation = %self.invocation_id, "inactivity timeout: closing the input");
                        deadline = Instant::now() + self.abort_timeout;
                    } else {
                        return Outcome::Failed(Failure::new(
                            INTERNAL,
                            format!("the deployment was silent for {:?}; attempt aborted", self.abort_timeout),
                        ));
                    }
                }
            }
        }
    }

    fn check_head(
        &self,
        response: &http::Response<reprise_service_client::ResponseBody>,
    ) -> Result<(), Failure> {
        let status = response.status();
        if !status.is_success() {
            let what = match status {
                StatusCode::UNSUPPORTED_MEDIA_TYPE => format!(
                    "the deployment does not speak protocol {} (HTTP 415)",
                    self.version
                ),
                StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => {
                    format!("the deployment is unavailable (HTTP {status})")
                }
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                    format!("the deployment is overloaded (HTTP {status})")
                }
                _ => format!("the deployment answered HTTP {status}"),
            };
            let mut failure = Failure::new(u32::from(status.as_u16()), what);
            failure.retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(failure);
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type != self.version.content_type() {
            // The deployment's mistake, not the caller's: a protocol violation, not a 415.
            return Err(Failure::new(
                PROTOCOL_VIOLATION,
                format!(
                    "the deployment answered with content-type `{content_type}`, expected `{}`",
                    self.version.content_type()
                ),
            ));
        }
        Ok(())
    }
}

/// Proposes what the deployment sends, in order.
struct Running<'a> {
    partition: &'a PartitionHandle,
    schema: &'a SchemaView,
    config: &'a Config,
    /// The handler has no object or workflow key (promise commands need one).
    keyless: bool,
    invocation_id: InvocationId,
    fence: Fence,
    last_proposal: Option<Committed>,
    made_progress: bool,
}

impl Running<'_> {
    async fn propose(&mut self, kind: EffectKind) -> Result<(), ()> {
        let is_command = matches!(kind, EffectKind::JournalEntry(_) | EffectKind::Call { .. });
        let record = Record::Effect(InvokerEffect {
            invocation_id: self.invocation_id,
            kind,
            fence: self.fence,
        });
        match self.partition.enqueue(record).await {
            Ok(committed) => {
                self.last_proposal = Some(committed);
                if is_command {
                    self.fence.command_index = self.fence.command_index.saturating_add(1);
                }
                Ok(())
            }
            Err(err) => {
                debug!(invocation = %self.invocation_id, %err, "cannot propose; stopping the attempt");
                Err(())
            }
        }
    }

    /// Handles one frame from the deployment; `Some` ends the attempt.
    async fn handle(&mut self, frame: Frame) -> Option<Outcome> {
        let violation =
            |message: String| Some(Outcome::Failed(Failure::new(PROTOCOL_VIOLATION, message)));
        let ty = frame.ty;
        trace!(invocation = %self.invocation_id, %ty, "received");
        let proposed = match ty {
            MessageType::InputCommand => {
                return violation("the deployment sent an input command".into());
            }
            ty if (ty.is_command() || ty.is_custom()) && !is_implemented(ty) => {
                return Some(Outcome::Failed(Failure::new(
                    NOT_IMPLEMENTED,
                    format!("Reprise does not implement the command {ty} yet"),
                )));
            }
            MessageType::CallCommand | MessageType::OneWayCallCommand => {
                if let Err(err) = frame.check_command() {
                    return violation(err.to_string());
                }
                let callee = match self.callee(&frame).await {
                    Ok(callee) => callee,
                    Err(failure) => return Some(Outcome::Failed(failure)),
                };
                self.made_progress = true;
                self.propose(EffectKind::Call {
                    entry: StoredFrame::from(&frame),
                    callee,
                })
                .await
            }
            ty if ty.is_command() || ty.is_custom() => {
                if let Err(err) = frame.check_command() {
                    return violation(err.to_string());
                }
                // A signal's target must be an invocation id (or an awakeable id) before the
                // command is journaled: journaled, it is carried out.
                let promise = promise_of_command(ty, &frame.payload);
                if matches!(promise, Ok(Some(_))) && self.keyless {
                    return Some(Outcome::Failed(Failure::new(
                        400,
                        format!("{ty} is for workflows: this handler has no workflow key"),
                    )));
                }
                if let Err(err) = signal_of_command(ty, &frame.payload)
                    .map(|_| ())
                    .and_then(|()| query_of_command(ty, &frame.payload).map(|_| ()))
                    .and_then(|()| promise.map(|_| ()))
                {
                    return Some(Outcome::Failed(Failure::new(
                        400,
                        format!("cannot carry out {ty}: {err}"),
                    )));
                }
                self.made_progress = true;
                self.propose(EffectKind::JournalEntry(StoredFrame::from(&frame)))
                    .await
            }
            MessageType::ProposeRunCompletion => {
                let message: proto::ProposeRunCompletionMessage = match frame.decode() {
                    Ok(message) => message,
                    Err(err) => return violation(err.to_string()),
                };
                let result = match message.result {
                    Some(propose_run_completion_message::Result::Value(value)) => {
                        InvocationResult::Success(value)
                    }
                    Some(propose_run_completion_message::Result::Failure(failure)) => {
                        InvocationResult::Failure {
                            code: failure.code,
                            message: failure.message,
                        }
                    }
                    None => return violation("a run completion without a result".into()),
                };
                self.made_progress = true;
                self.propose(EffectKind::RunProposal {
                    completion_id: message.result_completion_id,
                    result,
                })
                .await
            }
            MessageType::Suspension => {
                let message: proto::SuspensionMessage = match frame.decode() {
                    Ok(message) => message,
                    Err(err) => return violation(err.to_string()),
                };
                if message.waiting_completions.is_empty()
                    && message.waiting_signals.is_empty()
                    && message.waiting_named_signals.is_empty()
                {
                    return violation("a suspension that waits for nothing".into());
                }
                let kind = EffectKind::Suspended {
                    waiting_completions: message.waiting_completions,
                    waiting_signals: message.waiting_signals,
                    waiting_named_signals: message.waiting_named_signals,
                };
                return Some(match self.propose(kind).await {
                    Ok(()) => Outcome::Suspended,
                    Err(()) => Outcome::Stopped,
                });
            }
            MessageType::Error => {
                let message: proto::ErrorMessage = match frame.decode() {
                    Ok(message) => message,
                    Err(err) => return violation(err.to_string()),
                };
                let mut text = message.message;
                if let Some(name) = message.related_command_name.filter(|n| !n.is_empty()) {
                    text = format!("{text} (while running `{name}`)");
                }
                return Some(Outcome::Failed(Failure {
                    code: message.code,
                    message: text,
                    retry_after: message.next_retry_delay.map(Duration::from_millis),
                }));
            }
            MessageType::End => {
                return Some(match self.propose(EffectKind::End).await {
                    Ok(()) => Outcome::Ended,
                    Err(()) => Outcome::Stopped,
                });
            }
            other => return violation(format!("{other} is not expected from a deployment")),
        };
        match proposed {
            Ok(()) => None,
            Err(()) => Some(Outcome::Stopped),
        }
    }
}

impl Running<'_> {
    /// The invocation a call or one-way call creates: its target checked against the schema
    /// (an unknown one fails the attempt, as the reference does), and a new id in the
    /// partition of its key (a random one for a plain service).
    async fn callee(&self, frame: &Frame) -> Result<Callee, Failure> {
        let decoded = match frame.ty {
            MessageType::CallCommand => proto::CallCommandMessage::decode(frame.payload.clone())
                .map(|call| {
                    (
                        call.service_name,
                        call.handler_name,
                        call.key,
                        call.idempotency_key,
                    )
                }),
            _ => proto::OneWayCallCommandMessage::decode(frame.payload.clone()).map(|send| {
                (
                    send.service_name,
                    send.handler_name,
                    send.key,
                    send.idempotency_key,
                )
            }),
        };
        let (service, handler, key, idempotency_key) = decoded.map_err(|err| {
            Failure::new(
                PROTOCOL_VIOLATION,
                format!("a malformed {}: {err}", frame.ty),
            )
        })?;
        if idempotency_key.as_deref() == Some("") {
            return Err(Failure::new(
                400,
                format!("a call to {service}/{handler} with an empty idempotency key"),
            ));
        }
        let schema = self
            .schema
            .current()
            .await
            .map_err(|err| Failure::new(503, format!("cannot read the schema: {err}")))?;
        let resolved = crate::resolve(
            &schema,
            &service,
            &handler,
            Some(&key),
            self.config.default_retention,
        )
        .map_err(|err| Failure::new(404, format!("cannot call {service}/{handler}: {err}")))?;
        Ok(Callee {
            invocation_id: resolved.invocation_id(idempotency_key.as_deref()),
            target: resolved.target,
            retention: resolved.retention,
        })
    }
}

fn random_seed(id: InvocationId) -> u64 {
    let uuid = id.uuid();
    (uuid as u64) ^ ((uuid >> 64) as u64) ^ id.partition_key().as_u64()
}

fn transport_error(err: &SendError) -> String {
    use std::error::Error as _;
    let mut message = format!("cannot reach the deployment: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// Everything but the unreserved characters of RFC 3986 is percent-encoded.
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a key for a header, whose value must be ASCII.
fn url_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, NOT_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::url_encode;

    #[test]
    fn keys_are_percent_encoded_for_headers() {
        assert_eq!(url_encode("a b/é-_.~9"), "a%20b%2F%C3%A9-_.~9");
    }
}
