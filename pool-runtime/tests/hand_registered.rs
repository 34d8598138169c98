//! The runtime on its own: entries written by hand with the glue the
//! runtime's `task_entry!`/`exit_entry!` write (less their type assertions),
//! so a runtime bug shows here without the macros in the way.

use pool_runtime::__private01::{
    input1, linkme, run_batch, run_exit, run_stateless, stage_call, stage_call_stateless,
    stage_decode, stage_encode, type_id_of_val, ByMut, ExitEntry, SplitNone, SplitProbe, StageGlue,
    Stateless, TaskEntry, EXITS, TASKS,
};
use pool_runtime::{ErrorKind, Pool};

struct Counter {
    base: u64,
    seen: u64,
}

fn start(base: &u64) -> Counter {
    Counter {
        base: *base,
        seen: 0,
    }
}

fn add(c: &mut Counter, x: u64) -> u64 {
    c.seen += 1;
    if x == 13 {
        panic!("unlucky {x}");
    }
    c.base + x
}

fn square(x: u64) -> u64 {
    x * x
}

fn seen(c: Counter) -> u64 {
    c.seen
}

fn unregistered(x: u64) -> u64 {
    x
}

#[linkme::distributed_slice(TASKS)]
#[linkme(crate = linkme)]
static ADD: TaskEntry = TaskEntry {
    name: concat!(module_path!(), "::add"),
    type_id: || type_id_of_val(&add),
    signature: "fn(&mut Counter, u64) -> u64",
    run: |s, b| run_batch::<Counter, _, u64, ByMut<(u64,)>, _, _>(add, input1::<u64>, s, b),
    stage: StageGlue {
        decode: |b| stage_decode(input1::<u64>, b),
        call: |s, v| stage_call::<Counter, _, u64, ByMut<(u64,)>, _>(add, s, v),
        encode: |v, out, long| stage_encode::<u64>(v, out, long),
        split: |v| SplitNone::split_glue(&SplitProbe::<u64>::NEW)(v),
    },
    debug_input: |_| None,
};

#[linkme::distributed_slice(TASKS)]
#[linkme(crate = linkme)]
static SQUARE: TaskEntry = TaskEntry {
    name: concat!(module_path!(), "::square"),
    type_id: || type_id_of_val(&square),
    signature: "fn(u64) -> u64",
    run: |s, b| run_stateless::<_, u64, Stateless<(u64,)>, _, _>(square, input1::<u64>, s, b),
    stage: StageGlue {
        decode: |b| stage_decode(input1::<u64>, b),
        call: |s, v| stage_call_stateless::<_, u64, Stateless<(u64,)>, _>(square, s, v),
        encode: |v, out, long| stage_encode::<u64>(v, out, long),
        split: |v| SplitNone::split_glue(&SplitProbe::<u64>::NEW)(v),
    },
    debug_input: |_| None,
};

#[linkme::distributed_slice(EXITS)]
#[linkme(crate = linkme)]
static SEEN: ExitEntry = ExitEntry {
    name: concat!(module_path!(), "::seen"),
    type_id: || type_id_of_val(&seen),
    signature: "fn(Counter) -> u64",
    run: |s, o| run_exit::<Counter, u64, _>(seen, s, o),
};

#[test]
fn map_apply_broadcast_join_with() {
    let pool = Pool::builder().workers(2).build(start, 100).unwrap();
    assert_eq!(pool.map(add, 0..5).unwrap(), vec![100, 101, 102, 103, 104]);
    assert_eq!(pool.apply(add, 7).unwrap(), 107);
    assert_eq!(
        pool.map(square, 0..1000u64).unwrap(),
        (0..1000u64).map(|x| x * x).collect::<Vec<_>>()
    );
    let b = pool.broadcast(add, 1).unwrap();
    assert_eq!(b, vec![101, 101]);
    let seen = pool.join_with(seen).unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen.iter().sum::<u64>(), 5 + 1 + 2);
}

#[test]
fn a_panic_is_that_input_error_only() {
    let pool = Pool::builder().workers(2).build(start, 0).unwrap();
    let out: Vec<_> = pool.imap(add, 10..16).collect();
    assert_eq!(out.len(), 6);
    for (x, r) in (10..16).zip(&out) {
        match r {
            Ok(v) => assert_eq!(*v, x),
            Err(e) => {
                assert_eq!(x, 13);
                assert!(
                    matches!(e.kind(), ErrorKind::Panicked(m) if m.contains("unlucky 13")),
                    "{e}"
                );
            }
        }
    }
    assert_eq!(pool.apply(add, 1).unwrap(), 1);
}

#[test]
fn an_unregistered_function_is_an_error() {
    let pool = Pool::builder().workers(1).build(start, 0).unwrap();
    let e = pool.map(unregistered, 0..3u64).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::NotRegistered(n) if n.contains("unregistered")),
        "{e}"
    );
}
