//! Retention of completed invocations: what a completion keeps, for how long, and how the
//! purge timers remove it — deterministically, from the time carried by the log.

mod support;

use reprise_partition_processor::{
    Action, InvocationStatus, MemoryStore, Record, Retention, ServiceInvocation, TimerKey,
    TimerKind,
};
use reprise_types::MillisSinceEpoch;
use support::*;

fn invoke_keeping(n: u128, completion_ms: u64, journal_ms: u64) -> Record {
    let Record::Invoke(invocation) = invoke(n, n as u64) else {
        unreachable!("invoke makes an Invoke record")
    };
    Record::Invoke(ServiceInvocation {
        retention: Retention {
            completion_ms,
            journal_ms,
        },
        ..invocation
    })
}

fn run(store: &mut MemoryStore, records: &[Record]) -> Vec<Action> {
    records
        .iter()
        .flat_map(|record| apply_fenced(store, record))
        .collect()
}

fn finish(n: u128) -> [Record; 3] {
    [
        effect(n, run_command(1)),
        effect(n, output(b"done")),
        effect(n, reprise_partition_processor::EffectKind::End),
    ]
}

fn purge_timer(n: u128, kind: TimerKind, after_ms: u64) -> TimerKey {
    TimerKey {
        wake_at: MillisSinceEpoch::new(NOW.as_u64() + after_ms),
        invocation_id: id(n),
        kind,
    }
}

#[test]
fn without_completion_retention_nothing_is_kept_but_the_caller_is_answered() {
    let mut store = MemoryStore::default();
    run(&mut store, &[invoke_keeping(1, 0, 0)]);
    let actions = run(&mut store, &finish(1));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Respond { invocation_id, .. } if *invocation_id == id(1)))
    );
    assert!(store.statuses.is_empty());
    assert!(store.journals.is_empty());
    assert!(store.timers.is_empty());
    // Nothing remembers it: the same id again is a new invocation.
    let actions = run(&mut store, &[invoke_keeping(1, 0, 0)]);
    assert!(matches!(actions.as_slice(), [Action::Invoke { .. }]));
}

#[test]
fn the_status_is_kept_for_its_retention_then_purged_by_its_timer() {
    let mut store = MemoryStore::default();
    run(&mut store, &[invoke_keeping(1, DAY_MS, 0)]);
    let actions = run(&mut store, &finish(1));
    let timer = purge_timer(1, TimerKind::PurgeInvocation, DAY_MS);
    assert!(actions.contains(&Action::RegisterTimer(timer)));
    assert!(matches!(
        store.statuses.get(&id(1)),
        Some(InvocationStatus::Completed {
            journal_length: 0,
            ..
        })
    ));
    assert!(store.journals.is_empty(), "no journal retention");
    // A duplicate within the retention gets the stored result.
    let actions = run(&mut store, &[invoke_keeping(1, DAY_MS, 0)]);
    assert!(matches!(actions.as_slice(), [Action::Respond { .. }]));

    run(&mut store, &[Record::TimerFired(timer)]);
    assert!(store.statuses.is_empty());
    assert!(store.timers.is_empty());
    // Fired again (a new leader re-proposing it): nothing happens.
    assert!(run(&mut store, &[Record::TimerFired(timer)]).is_empty());
}

#[test]
fn the_journal_is_kept_for_its_own_retention_within_the_status_retention() {
    let mut store = MemoryStore::default();
    run(&mut store, &[invoke_keeping(1, DAY_MS, 1_000)]);
    run(&mut store, &finish(1));
    let journal_length = match store.statuses.get(&id(1)) {
        Some(InvocationStatus::Completed { journal_length, .. }) => *journal_length,
        other => panic!("not completed: {other:?}"),
    };
    assert_eq!(journal_length, 3, "input, run and output");
    assert_eq!(store.journals.len(), 3);
    let kinds: Vec<(TimerKind, u64)> = store
        .timers
        .iter()
        .map(|t| (t.kind, t.wake_at.as_u64() - NOW.as_u64()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (TimerKind::PurgeJournal, 1_000),
            (TimerKind::PurgeInvocation, DAY_MS)
        ]
    );

    run(
        &mut store,
        &[Record::TimerFired(purge_timer(
            1,
            TimerKind::PurgeJournal,
            1_000,
        ))],
    );
    assert!(store.journals.is_empty());
    assert!(matches!(
        store.statuses.get(&id(1)),
        Some(InvocationStatus::Completed {
            journal_length: 0,
            ..
        })
    ));
    run(
        &mut store,
        &[Record::TimerFired(purge_timer(
            1,
            TimerKind::PurgeInvocation,
            DAY_MS,
        ))],
    );
    assert!(store.statuses.is_empty());
}

#[test]
fn a_journal_retention_longer_than_the_status_is_cut_to_it() {
    let mut store = MemoryStore::default();
    run(&mut store, &[invoke_keeping(1, 1_000, DAY_MS)]);
    run(&mut store, &finish(1));
    let kinds: Vec<TimerKind> = store.timers.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, vec![TimerKind::PurgeInvocation]);
    run(
        &mut store,
        &[Record::TimerFired(purge_timer(
            1,
            TimerKind::PurgeInvocation,
            1_000,
        ))],
    );
    assert!(store.statuses.is_empty());
    assert!(
        store.journals.is_empty(),
        "the journal goes with the status"
    );
}
