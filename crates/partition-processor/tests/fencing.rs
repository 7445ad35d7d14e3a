//! Fencing: `apply` takes only the effects of an invocation's current attempt under the
//! partition's current leadership epoch, and journals a command only at the position its
//! attempt expects — so a stale attempt, an old leader's invoker, or a proposal retried after it
//! committed changes nothing, identically on every replica.

mod support;

use reprise_partition_processor::{
    Action, EffectKind, Fence, InvocationStatus, InvokerEffect, MemoryStore, Record, apply,
};
use support::*;

fn effect_with(n: u128, kind: EffectKind, fence: Fence) -> Record {
    Record::Effect(InvokerEffect {
        invocation_id: id(n),
        kind,
        fence,
    })
}

fn in_flight(store: &MemoryStore, n: u128) -> (u32, u32, u32) {
    let status = store.statuses.get(&id(n)).expect("a status");
    let in_flight = status.in_flight().expect("not completed");
    (
        in_flight.attempt,
        in_flight.commands,
        in_flight.journal_length,
    )
}

/// The epoch the tests lead in (announced by [`started`]).
const EPOCH: u64 = 3;

fn fence(attempt: u32, command_index: u32) -> Fence {
    Fence {
        leader_epoch: EPOCH,
        attempt,
        command_index,
    }
}

/// A store whose leadership announced [`EPOCH`], with invocation 1 started.
fn started() -> MemoryStore {
    let mut store = MemoryStore::default();
    apply(&mut store, &Record::AnnounceLeader { epoch: EPOCH }, CTX).expect("apply");
    apply_fenced(&mut store, &invoke(1, 1));
    store
}

#[test]
fn an_effect_of_another_leadership_is_ignored() {
    let mut store = started();
    let old_leader = Fence {
        leader_epoch: EPOCH - 1,
        ..fence(0, 1)
    };
    let before = store.clone();
    for kind in [run_command(1), EffectKind::End, output(b"x")] {
        let actions = apply(&mut store, &effect_with(1, kind, old_leader), CTX).expect("apply");
        assert!(actions.is_empty());
    }
    assert_eq!(store, before);
    // In its own epoch it is taken.
    apply(
        &mut store,
        &effect_with(1, run_command(1), fence(0, 1)),
        CTX,
    )
    .expect("apply");
    assert_eq!(in_flight(&store, 1), (0, 2, 2));
    // A new leadership (or a step-down and take-over) fences the old epoch's effects.
    apply(
        &mut store,
        &Record::AnnounceLeader { epoch: EPOCH + 1 },
        CTX,
    )
    .expect("apply");
    let before = store.clone();
    apply(
        &mut store,
        &effect_with(1, run_command(2), fence(0, 2)),
        CTX,
    )
    .expect("apply");
    assert_eq!(store, before);
    // An announcement that is not newer changes nothing.
    apply(&mut store, &Record::AnnounceLeader { epoch: EPOCH }, CTX).expect("apply");
    assert_eq!(store.leader_epoch, EPOCH + 1);
    let next = Fence {
        leader_epoch: EPOCH + 1,
        ..fence(0, 2)
    };
    apply(&mut store, &effect_with(1, run_command(2), next), CTX).expect("apply");
    assert_eq!(in_flight(&store, 1), (0, 3, 3));
}

#[test]
fn a_command_is_journaled_once_at_the_position_its_attempt_expects() {
    let mut store = started();
    let command = effect_with(1, run_command(1), fence(0, 1));
    apply(&mut store, &command, CTX).expect("apply");
    // The same proposal again (retried after it had committed): nothing more.
    apply(&mut store, &command, CTX).expect("apply");
    assert_eq!(in_flight(&store, 1), (0, 2, 2));
    // A command from past a gap is not journaled either.
    apply(
        &mut store,
        &effect_with(1, run_command(2), fence(0, 3)),
        CTX,
    )
    .expect("apply");
    assert_eq!(in_flight(&store, 1), (0, 2, 2));
    // Notifications do not move the command position.
    let proposal = EffectKind::RunProposal {
        completion_id: 1,
        result: reprise_partition_processor::InvocationResult::Success("1".into()),
    };
    apply(&mut store, &effect_with(1, proposal, fence(0, 2)), CTX).expect("apply");
    assert_eq!(in_flight(&store, 1), (0, 2, 3));
    apply(
        &mut store,
        &effect_with(1, run_command(2), fence(0, 2)),
        CTX,
    )
    .expect("apply");
    assert_eq!(in_flight(&store, 1), (0, 3, 4));
}

#[test]
fn a_failed_attempt_fences_its_late_effects_and_the_next_attempt_goes_on() {
    let mut store = started();
    let failed = EffectKind::AttemptFailed {
        code: 500,
        message: "boom".into(),
    };
    apply(
        &mut store,
        &effect_with(1, failed.clone(), fence(0, 1)),
        CTX,
    )
    .expect("apply");
    assert_eq!(in_flight(&store, 1).0, 1, "the next attempt is attempt 1");
    // The failure proposed again, and a late command of attempt 0: both stale.
    let before = store.clone();
    apply(&mut store, &effect_with(1, failed, fence(0, 1)), CTX).expect("apply");
    apply(
        &mut store,
        &effect_with(1, run_command(1), fence(0, 1)),
        CTX,
    )
    .expect("apply");
    let ended = apply(
        &mut store,
        &effect_with(1, EffectKind::End, fence(0, 1)),
        CTX,
    )
    .expect("apply");
    assert!(ended.is_empty());
    assert_eq!(store, before);
    // Attempt 1 journals and ends.
    apply(&mut store, &effect_with(1, output(b"ok"), fence(1, 1)), CTX).expect("apply");
    let actions = apply(
        &mut store,
        &effect_with(1, EffectKind::End, fence(1, 2)),
        CTX,
    )
    .expect("apply");
    assert!(actions.iter().any(|a| matches!(a, Action::Respond { .. })));
    assert!(matches!(
        store.statuses.get(&id(1)),
        Some(InvocationStatus::Completed { .. })
    ));
}

#[test]
fn a_resumed_invocation_runs_a_new_attempt() {
    let mut store = started();
    apply(&mut store, &effect_with(1, sleep(1, 500), fence(0, 1)), CTX).expect("apply");
    apply(
        &mut store,
        &effect_with(1, suspended_on(&[1]), fence(0, 2)),
        CTX,
    )
    .expect("apply");
    let timer = *store.timers.iter().next().expect("a timer");
    let actions = apply(&mut store, &Record::TimerFired(timer), CTX).expect("apply");
    assert!(matches!(actions.as_slice(), [Action::Invoke { .. }]));
    assert_eq!(in_flight(&store, 1).0, 1);
    // The suspended attempt's late effects are stale; the resumed one's are taken.
    apply(
        &mut store,
        &effect_with(1, output(b"late"), fence(0, 2)),
        CTX,
    )
    .expect("apply");
    assert_eq!(in_flight(&store, 1).1, 2);
    apply(&mut store, &effect_with(1, output(b"ok"), fence(1, 2)), CTX).expect("apply");
    assert_eq!(in_flight(&store, 1).1, 3);
}
