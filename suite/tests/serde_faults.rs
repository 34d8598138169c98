//! Exactly one outcome per input whatever the user's serde code does, on
//! either side of the channel (issue 9): each situation that broke it, in
//! `map`/`imap` with adaptive and fixed chunk sizes, on a fresh pool and on
//! one that already ran work; then every other call shape.

mod faults;

use std::time::Duration;

use faults::{
    check, deaths, imap_and_check, probe, touch, worker, Fault, Input, Output, Stage, Watchdog,
    Worker,
};
use pool_runtime::{worker_exit, worker_init, worker_task, ErrorKind, Pool};

/// Every chunking a user can pick: adaptive, one item per frame, 16 per frame.
const CHUNKS: [Option<usize>; 3] = [None, Some(1), Some(16)];

fn pool(chunk: Option<usize>, retries: u32, warm: bool) -> Pool<Worker> {
    let mut b = Pool::builder().workers(2).retries(retries);
    if let Some(n) = chunk {
        b = b.chunk_size(n);
    }
    let pool = b.build(worker, ()).unwrap();
    if warm {
        // A pool that already ran batches: its progress cells are not fresh.
        let out = pool.map(probe, (0..500).map(Input::clean)).unwrap();
        assert_eq!(out.len(), 500);
    }
    pool
}

/// `n` inputs, those at `poisoned` failing at `stage` as `fault` says.
fn inputs(n: u64, poisoned: &[u64], stage: Stage, fault: Fault) -> Vec<Input> {
    (0..n)
        .map(|x| {
            if poisoned.contains(&x) {
                Input::poisoned(x, stage, fault)
            } else {
                Input::clean(x)
            }
        })
        .collect()
}

/// Runs `inputs` through `imap` (bounded by a watchdog) and checks every
/// outcome, in input order.
fn run_and_check(pool: &Pool<Worker>, inputs: &[Input], what: &str) {
    let _watchdog = Watchdog::new(Duration::from_secs(60), "a map with poisoned inputs");
    imap_and_check(pool, inputs, what);
}

/// Every shape a user can reach: the three chunkings, fresh and warm.
fn each_shape(mut f: impl FnMut(Option<usize>, bool, &str)) {
    for chunk in CHUNKS {
        for warm in [false, true] {
            f(chunk, warm, &format!("chunk {chunk:?}, warm {warm}"));
        }
    }
}

// 1. A worker that dies while decoding an input: that input's `WorkerDied`,
//    one death, no respawn loop; and `retries` and quarantine apply.
#[test]
fn a_death_while_decoding_an_input_is_that_inputs_alone() {
    for fault in [Fault::Exit, Fault::Segv, Fault::Abort] {
        each_shape(|chunk, warm, shape| {
            let what = format!("{fault:?}, {shape}");
            let pool = pool(chunk, 0, warm);
            run_and_check(&pool, &inputs(200, &[51], Stage::InputDecode, fault), &what);
            assert_eq!(deaths(&pool), 1, "{what}: exactly one worker died");
            // The pool serves on.
            assert_eq!(
                pool.map(probe, (0..50).map(Input::clean)).unwrap().len(),
                50
            );
        });
    }
}

#[test]
fn retries_and_quarantine_apply_to_a_death_while_decoding() {
    each_shape(|chunk, warm, shape| {
        let pool = pool(chunk, 2, warm);
        let _watchdog = Watchdog::new(Duration::from_secs(60), "a map with a poison pill");
        let ins = inputs(200, &[51], Stage::InputDecode, Fault::Abort);
        let out: Vec<_> = pool.imap(probe, ins.iter().copied()).collect();
        assert_eq!(out.len(), 200);
        for (x, r) in out.iter().enumerate() {
            if x == 51 {
                let e = r.as_ref().unwrap_err();
                assert!(
                    matches!(e.kind(), ErrorKind::Quarantined(m) if m.contains("killed 3 workers") && m.contains("decoding the input")),
                    "{shape}: {e}"
                );
            } else {
                assert_eq!(r.as_ref().unwrap().as_ref().unwrap().x, x as u64, "{shape}");
            }
        }
        assert_eq!(deaths(&pool), 3, "{shape}: three deaths, then quarantine");
    });
}

// A hang in user serde code is that input's `TimedOut`, with where it hung.
#[test]
fn a_hang_in_serde_code_times_out_that_input_alone() {
    let _watchdog = Watchdog::new(Duration::from_secs(60), "a hang in serde code");
    for stage in [Stage::InputDecode, Stage::ResultEncode] {
        let pool = Pool::builder()
            .workers(2)
            .chunk_size(8)
            .task_timeout(Duration::from_millis(300))
            .build(worker, ())
            .unwrap();
        run_and_check(
            &pool,
            &inputs(40, &[13], stage, Fault::Hang),
            &format!("{stage:?}"),
        );
        assert_eq!(deaths(&pool), 1, "{stage:?}: the hung worker was replaced");
    }
}

// 2. A worker that dies while encoding input 51's result blames 51 alone,
//    not the items after it in the same frame.
#[test]
fn a_death_while_encoding_a_result_blames_that_input_alone() {
    for fault in [Fault::Exit, Fault::Segv, Fault::Abort] {
        each_shape(|chunk, warm, shape| {
            let what = format!("{fault:?}, {shape}");
            let pool = pool(chunk, 0, warm);
            run_and_check(
                &pool,
                &inputs(200, &[51], Stage::ResultEncode, fault),
                &what,
            );
            assert_eq!(deaths(&pool), 1, "{what}: exactly one worker died");
        });
    }
}

// 3. A panic in user serde code, in the worker or in the driver, is that
//    input's `Panicked` with message and location; the worker lives on.
#[test]
fn a_panic_in_serde_code_is_that_inputs_panic() {
    for stage in [
        Stage::InputEncode,
        Stage::InputDecode,
        Stage::ResultEncode,
        Stage::ResultDecode,
    ] {
        each_shape(|chunk, warm, shape| {
            let what = format!("{stage:?}, {shape}");
            let pool = pool(chunk, 0, warm);
            run_and_check(
                &pool,
                &inputs(200, &[51, 52, 130], stage, Fault::Panic),
                &what,
            );
            assert_eq!(deaths(&pool), 0, "{what}: no worker died");
        });
    }
}

// 4. One input whose `Deserialize` errs fails alone, with the user's words;
//    the rest of its batch runs.
#[test]
fn an_undecodable_input_fails_alone() {
    each_shape(|chunk, warm, shape| {
        let pool = pool(chunk, 0, warm);
        let ins = inputs(200, &[51, 52, 63, 199], Stage::InputDecode, Fault::Err);
        run_and_check(&pool, &ins, shape);
        assert_eq!(deaths(&pool), 0, "{shape}");
    });
}

// 5. One result whose `Deserialize` errs in the driver fails alone.
#[test]
fn an_undecodable_result_fails_alone() {
    each_shape(|chunk, warm, shape| {
        let pool = pool(chunk, 0, warm);
        let ins = inputs(200, &[0, 51, 52, 63], Stage::ResultDecode, Fault::Err);
        run_and_check(&pool, &ins, shape);
    });
}

// Also: a result whose `Serialize` errs in the worker, and an input whose
// `Serialize` errs in the driver, fail alone with the user's words.
#[test]
fn a_value_that_cannot_be_encoded_fails_alone() {
    for stage in [Stage::InputEncode, Stage::ResultEncode] {
        each_shape(|chunk, warm, shape| {
            let pool = pool(chunk, 0, warm);
            let what = format!("{stage:?}, {shape}");
            run_and_check(
                &pool,
                &inputs(200, &[51, 52, 199], stage, Fault::Err),
                &what,
            );
        });
    }
}

/// A list `depth` nodes long: `depth` levels of nesting on the wire.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Node {
    next: Option<Box<Node>>,
}

fn nest(depth: u32) -> Node {
    let mut node = Node { next: None };
    for _ in 0..depth {
        node = Node {
            next: Some(Box::new(node)),
        };
    }
    node
}

#[worker_task]
fn chain(depth: u32) -> Node {
    nest(depth)
}

#[worker_task]
fn length(node: Node) -> u32 {
    let (mut n, mut at) = (0, &node);
    while let Some(next) = &at.next {
        n += 1;
        at = next;
    }
    n
}

// The README's promise, inside batches: a value nested past the limit is a
// `Codec` error for that input alone, as an input and as a result.
#[test]
fn a_value_nested_past_the_limit_fails_alone_in_its_batch() {
    for chunk in CHUNKS {
        let mut b = Pool::builder().workers(2);
        if let Some(n) = chunk {
            b = b.chunk_size(n);
        }
        let pool: Pool<()> = b.build(|_: &()| (), ()).unwrap();
        let depths: Vec<u32> = (0..100)
            .map(|x| if x == 51 { 1000 } else { x % 10 })
            .collect();
        let out: Vec<_> = pool.imap(chain, depths.iter().copied()).collect();
        let lens: Vec<_> = pool.imap(length, depths.iter().map(|&d| nest(d))).collect();
        for (k, &d) in depths.iter().enumerate() {
            if d == 1000 {
                for r in [out[k].as_ref().map(drop), lens[k].as_ref().map(drop)] {
                    let e = r.unwrap_err();
                    assert!(
                        matches!(e.kind(), ErrorKind::Codec(m) if m.contains("nests deeper")),
                        "{chunk:?}: {e}"
                    );
                }
            } else {
                assert!(out[k].is_ok(), "{chunk:?}: {k}: {:?}", out[k]);
                assert_eq!(*lens[k].as_ref().unwrap(), d, "{chunk:?}");
            }
        }
    }
}

/// Each poisoned input, alone, through `apply`, `submit`, a pipeline and
/// `imap_unordered`: each gets the one outcome `check` expects.
#[test]
fn every_call_shape_gives_the_outcome_of_the_failure() {
    let _watchdog = Watchdog::new(Duration::from_secs(120), "every call shape");
    let pool = pool(None, 0, true);
    let mut cases = Vec::new();
    for stage in [
        Stage::InputEncode,
        Stage::InputDecode,
        Stage::Task,
        Stage::ResultEncode,
        Stage::ResultDecode,
    ] {
        for fault in [
            Fault::Exit,
            Fault::Segv,
            Fault::Abort,
            Fault::Panic,
            Fault::Err,
        ] {
            let in_driver = matches!(stage, Stage::InputEncode | Stage::ResultDecode);
            if !(in_driver && fault.kills()) {
                cases.push(Input::poisoned(cases.len() as u64, stage, fault));
            }
        }
    }
    let mut wrong = Vec::new();
    for input in &cases {
        wrong.extend(check(input, &pool.apply(probe, *input)).err());
    }
    let handles: Vec<_> = cases.iter().map(|&i| pool.submit(probe, i)).collect();
    for (input, h) in cases.iter().zip(handles) {
        wrong.extend(check(input, &h.wait()).err());
    }
    let chain = pool.pipeline(touch).then(probe);
    for (input, out) in cases.iter().zip(chain.imap(cases.iter().copied())) {
        wrong.extend(check(input, &out).err());
    }
    // In completion order: match the outcomes to the inputs by kind.
    let unordered: Vec<_> = pool.imap_unordered(probe, cases.iter().copied()).collect();
    assert_eq!(unordered.len(), cases.len());
    let by_index: Vec<_> = pool.imap(probe, cases.iter().copied()).collect();
    let key = |r: &Result<Result<Output, String>, pool_runtime::Error>| match r {
        Ok(Ok(_)) => "ok".to_string(),
        Ok(Err(_)) => "task err".to_string(),
        Err(e) => format!("{:?}", std::mem::discriminant(e.kind())),
    };
    let mut a: Vec<_> = unordered.iter().map(key).collect();
    let mut b: Vec<_> = by_index.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "imap_unordered: the same outcomes as imap");
    for (input, out) in cases.iter().zip(&by_index) {
        wrong.extend(check(input, out).err());
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The pool serves on.
    assert_eq!(
        pool.map(probe, (0..20).map(Input::clean)).unwrap().len(),
        20
    );
}

// A broadcast whose input fails runs once per worker, each with that failure.
#[test]
fn a_broadcast_of_a_poisoned_input_fails_on_every_worker_once() {
    let _watchdog = Watchdog::new(Duration::from_secs(60), "a poisoned broadcast");
    let pool = pool(None, 0, true);
    for fault in [Fault::Err, Fault::Panic, Fault::Abort] {
        let input = Input::poisoned(7, Stage::InputDecode, fault);
        let e = pool.broadcast(probe, input).unwrap_err();
        assert!(check(&input, &Err(e)).is_ok(), "{fault:?}");
    }
    // Two workers died once each for the abort, no more.
    assert_eq!(deaths(&pool), 2);
    assert_eq!(pool.broadcast(probe, Input::clean(1)).unwrap().len(), 2);
}

// 6. `broadcast` on a healthy pool that recycles its workers after every
//    task, with an exit hook: a leaving worker takes no broadcast item, the
//    one it held goes to its replacement, and each slot runs it once.

struct Served(u64);

#[worker_init]
fn served(_: &()) -> Served {
    Served(0)
}

#[worker_task]
fn bump(s: &mut Served, x: u64) -> u64 {
    s.0 += 1;
    x
}

#[worker_exit]
fn tally(s: Served) -> u64 {
    s.0
}

#[test]
fn broadcast_on_a_recycling_pool_runs_once_per_worker() {
    let _watchdog = Watchdog::new(Duration::from_secs(60), "broadcast while recycling");
    for tasks in [1, 2] {
        let pool = Pool::builder()
            .workers(2)
            .max_tasks_per_worker(tasks)
            .exit_hook(tally)
            .build(served, ())
            .unwrap();
        let mut ran = 0;
        for round in 0..20u64 {
            let b = pool
                .broadcast(bump, round)
                .unwrap_or_else(|e| panic!("max_tasks_per_worker({tasks}), round {round}: {e}"));
            assert_eq!(b, vec![round, round], "one per worker");
            ran += 2;
            if round % 3 == 0 {
                assert_eq!(pool.map(bump, 0..5).unwrap(), (0..5).collect::<Vec<_>>());
                ran += 5;
            }
        }
        // Every task ran exactly once, on some worker, each of which ran at
        // most its limit.
        let per_worker = pool.join_with(tally).unwrap();
        assert_eq!(per_worker.iter().sum::<u64>(), ran, "{per_worker:?}");
        assert!(per_worker.iter().all(|&n| n <= tasks), "{per_worker:?}");
    }
}

// Respawns are bounded whatever the cause: an input whose frame a worker
// cannot even take in (its address space is capped below the frame's
// size) kills every worker it is sent to before any item starts. The pool
// blames it after a bounded number of such deaths, and goes on.

struct Capped;

#[worker_init]
fn capped(headroom: &u64) -> Capped {
    use nix::sys::resource::{setrlimit, Resource};
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    let cap = (kib << 10) + headroom;
    setrlimit(Resource::RLIMIT_AS, cap, cap).unwrap();
    Capped
}

#[worker_task]
fn size(_: &mut Capped, bytes: serde_bytes::ByteBuf) -> usize {
    bytes.len()
}

#[test]
fn an_input_that_kills_its_worker_before_it_starts_is_blamed_in_the_end() {
    let _watchdog = Watchdog::new(Duration::from_secs(60), "a frame no worker can take in");
    let pool = Pool::builder().workers(1).build(capped, 64 << 20).unwrap();
    assert_eq!(
        pool.apply(size, serde_bytes::ByteBuf::from(vec![1; 1000]))
            .unwrap(),
        1000
    );
    let big = serde_bytes::ByteBuf::from(vec![1; 256 << 20]);
    let e = pool.apply(size, big).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WorkerDied(m) if m.contains("before its batch started") && m.contains("4th")),
        "{e}"
    );
    // The pool serves on, with the worker that replaced the last one.
    assert_eq!(
        pool.apply(size, serde_bytes::ByteBuf::from(vec![1; 10]))
            .unwrap(),
        10
    );
}
