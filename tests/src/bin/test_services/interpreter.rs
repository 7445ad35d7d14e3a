//! `VirtualObjectCommandInterpreter`, after the conformance contract's combinator checks:
//! `interpretCommands` runs a list of commands, each of which awaits one or more awaitables —
//! awakeables, sleeps, named signals, calls that answer and calls that fail — with one of the
//! combinators (first completed, first succeeded or all failed, all succeeded or first failed,
//! all completed, an awakeable or a timeout). Every
//! command's outcome is appended to the object's `results`; a command whose outcome is a failure
//! fails the invocation with it. The shared handlers let the test see and complete the
//! awakeables the running program made, and learn its invocation id to send it signals.
//!
//! The Rust SDK runs `ctx.run` closures only when awaited on their own, so the contract's
//! `RunReturns`/`RunThrowTerminalException` awaitables are calls here: `callEcho` answers,
//! `callFailing` fails terminally.

use std::pin::Pin;
use std::time::Duration;

use restate_sdk::context::{DurableFuture, RequestTarget};
use restate_sdk::prelude::*;
use serde::Deserialize;
use serde_json::json;

const RESULTS: &str = "results";
const INVOCATION_ID: &str = "invocationId";

#[derive(Deserialize)]
pub struct Program {
    commands: Vec<Command>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Command {
    #[serde(rename = "awaitOne")]
    One { awaitable: Awaitable },
    #[serde(rename = "awaitFirstCompleted")]
    FirstCompleted { awaitables: Vec<Awaitable> },
    #[serde(rename = "awaitFirstSucceededOrAllFailed")]
    FirstSucceededOrAllFailed { awaitables: Vec<Awaitable> },
    #[serde(rename = "awaitAllSucceededOrFirstFailed")]
    AllSucceededOrFirstFailed { awaitables: Vec<Awaitable> },
    #[serde(rename = "awaitAllCompleted")]
    AllCompleted { awaitables: Vec<Awaitable> },
    #[serde(rename_all = "camelCase")]
    #[serde(rename = "awaitAwakeableOrTimeout")]
    AwakeableOrTimeout { key: String, timeout_millis: u64 },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Awaitable {
    /// An awakeable whose id is kept as state `awk-<key>`; its value or rejection.
    CreateAwakeable { key: String },
    /// A durable sleep; `sleep` once it is over.
    Sleep { millis: u64 },
    /// The named signal on this invocation; its value or rejection.
    CreateSignal { name: String },
    /// A call to `TestUtilsService/echo`: `value`.
    CallEcho { value: String },
    /// A call to `Failing/<key>/terminallyFailingCall`: a terminal failure with `reason`.
    CallFailing { reason: String },
}

#[derive(Clone, Copy)]
enum Combinator {
    /// The first outcome, success or failure.
    FirstCompleted,
    /// The first success; a failure once all have failed.
    FirstSucceeded,
    /// Every value, joined with `|`; the first failure as soon as it comes.
    AllSucceeded,
    /// Every outcome, `ok:<value>` or `err:<message>`, joined with `|`.
    AllCompleted,
}

/// An awakeable to complete from a shared handler.
#[derive(Deserialize)]
pub struct Completion {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    reason: String,
}

type Outcome = Result<String, TerminalError>;
type Pending<'ctx> = Pin<Box<dyn DurableFuture<Output = Outcome> + Send + 'ctx>>;

pub struct VirtualObjectCommandInterpreter;

#[restate_sdk::object(name = "VirtualObjectCommandInterpreter")]
impl VirtualObjectCommandInterpreter {
    /// Runs the program; answers the last command's outcome.
    #[handler(name = "interpretCommands")]
    async fn interpret_commands(
        &self,
        ctx: ObjectContext<'_>,
        Json(program): Json<Program>,
    ) -> HandlerResult<String> {
        ctx.set(INVOCATION_ID, ctx.invocation_id().to_owned());
        let mut last = String::new();
        for command in program.commands {
            let outcome = Self::interpret(&ctx, command).await?;
            let mut results = ctx
                .get::<Json<Vec<String>>>(RESULTS)
                .await?
                .map(Json::into_inner)
                .unwrap_or_default();
            results.push(match &outcome {
                Ok(value) => value.clone(),
                Err(failure) => format!("failed: {}", failure.message()),
            });
            ctx.set(RESULTS, Json(results));
            last = outcome?;
        }
        Ok(last)
    }

    #[handler(name = "hasAwakeable")]
    async fn has_awakeable(
        &self,
        ctx: SharedObjectContext<'_>,
        key: String,
    ) -> HandlerResult<bool> {
        let state = awakeable_state(&key);
        Ok(ctx.get::<String>(&state).await?.is_some())
    }

    #[handler(name = "resolveAwakeable")]
    async fn resolve_awakeable(
        &self,
        ctx: SharedObjectContext<'_>,
        Json(completion): Json<Completion>,
    ) -> HandlerResult<()> {
        let state = awakeable_state(&completion.key);
        let id = held(&ctx, &state).await?;
        ctx.resolve_awakeable(&id, completion.value);
        Ok(())
    }

    #[handler(name = "rejectAwakeable")]
    async fn reject_awakeable(
        &self,
        ctx: SharedObjectContext<'_>,
        Json(completion): Json<Completion>,
    ) -> HandlerResult<()> {
        let state = awakeable_state(&completion.key);
        let id = held(&ctx, &state).await?;
        ctx.reject_awakeable(&id, TerminalError::new(completion.reason));
        Ok(())
    }

    /// The id of the invocation running `interpretCommands`, or an empty string before it runs.
    #[handler(name = "invocationId")]
    async fn invocation_id(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<String> {
        Ok(ctx.get::<String>(INVOCATION_ID).await?.unwrap_or_default())
    }

    /// Every outcome so far, a failure as `failed: <message>`.
    #[handler(name = "getResults")]
    async fn get_results(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<Json<Vec<String>>> {
        Ok(ctx
            .get::<Json<Vec<String>>>(RESULTS)
            .await?
            .unwrap_or_else(|| Json(Vec::new())))
    }
}

impl VirtualObjectCommandInterpreter {
    /// One command's outcome; `Err` only when the invocation itself must stop (cancellation).
    async fn interpret(
        ctx: &ObjectContext<'_>,
        command: Command,
    ) -> Result<Outcome, TerminalError> {
        let (combinator, awaitables) = match command {
            Command::AwakeableOrTimeout {
                key,
                timeout_millis,
            } => {
                let (id, awakeable) = ctx.awakeable::<String>();
                ctx.set(&awakeable_state(&key), id);
                return Ok(restate_sdk::select! {
                    value = awakeable => value,
                    timer = ctx.sleep(Duration::from_millis(timeout_millis)) => {
                        timer.and(Err(TerminalError::new("await-timeout")))
                    },
                });
            }
            Command::One { awaitable } => (Combinator::FirstCompleted, vec![awaitable]),
            Command::FirstCompleted { awaitables } => (Combinator::FirstCompleted, awaitables),
            Command::FirstSucceededOrAllFailed { awaitables } => {
                (Combinator::FirstSucceeded, awaitables)
            }
            Command::AllSucceededOrFirstFailed { awaitables } => {
                (Combinator::AllSucceeded, awaitables)
            }
            Command::AllCompleted { awaitables } => (Combinator::AllCompleted, awaitables),
        };
        let mut outcomes: Vec<Option<Outcome>> = awaitables.iter().map(|_| None).collect();
        let mut pending: DurableFuturesUnordered<Pending<'_>> = awaitables
            .into_iter()
            .map(|awaitable| Self::start(ctx, awaitable))
            .collect();
        while let Some((index, outcome)) = pending.next().await? {
            let decides = match combinator {
                Combinator::FirstCompleted => true,
                Combinator::FirstSucceeded => outcome.is_ok(),
                Combinator::AllSucceeded => outcome.is_err(),
                Combinator::AllCompleted => false,
            };
            if decides {
                return Ok(outcome);
            }
            outcomes[index] = Some(outcome);
        }
        // Every awaitable completed without one deciding: in their order, not completion's.
        let outcomes = outcomes.into_iter().flatten();
        let joined = |parts: Vec<String>| parts.join("|");
        Ok(match combinator {
            Combinator::FirstCompleted => Err(TerminalError::new("nothing to await")),
            Combinator::FirstSucceeded => Err(TerminalError::new(format!(
                "all failed: {}",
                joined(
                    outcomes
                        .filter_map(|o| o.err())
                        .map(|f| f.message().to_owned())
                        .collect()
                )
            ))),
            Combinator::AllSucceeded => Ok(joined(outcomes.filter_map(Result::ok).collect())),
            Combinator::AllCompleted => Ok(joined(
                outcomes
                    .map(|outcome| match outcome {
                        Ok(value) => format!("ok:{value}"),
                        Err(failure) => format!("err:{}", failure.message()),
                    })
                    .collect(),
            )),
        })
    }

    fn start<'ctx>(ctx: &ObjectContext<'ctx>, awaitable: Awaitable) -> Pending<'ctx> {
        match awaitable {
            Awaitable::CreateAwakeable { key } => {
                let (id, awakeable) = ctx.awakeable::<String>();
                ctx.set(&awakeable_state(&key), id);
                Box::pin(awakeable)
            }
            Awaitable::Sleep { millis } => Box::pin(
                ctx.sleep(Duration::from_millis(millis))
                    .map_ok(|()| "sleep".to_owned()),
            ),
            Awaitable::CreateSignal { name } => Box::pin(ctx.signal::<String>(&name)),
            Awaitable::CallEcho { value } => Box::pin(
                ctx.request::<String, String>(
                    RequestTarget::service("TestUtilsService", "echo"),
                    value,
                )
                .call(),
            ),
            Awaitable::CallFailing { reason } => Box::pin(
                ctx.request::<Json<serde_json::Value>, ()>(
                    RequestTarget::object("Failing", ctx.key(), "terminallyFailingCall"),
                    Json(json!({ "errorMessage": reason })),
                )
                .call()
                .map_ok(|()| String::new()),
            ),
        }
    }
}

fn awakeable_state(key: &str) -> String {
    format!("awk-{key}")
}

/// The id of the awakeable the running program keeps as `state` (see [`awakeable_state`]).
async fn held(ctx: &SharedObjectContext<'_>, state: &str) -> Result<String, TerminalError> {
    ctx.get::<String>(state)
        .await?
        .ok_or_else(|| TerminalError::new_with_code(412, format!("no awakeable `{state}` yet")))
}
