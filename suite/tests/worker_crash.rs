//! A worker that dies mid-task: its input gets an error naming how, every
//! other input its result, and a fresh worker (init again) takes its place.

mod common;

use pool_runtime::{worker_init, worker_task, ErrorKind, Pool, WorkerInfo};

struct Me {
    generation: u32,
}

#[worker_init]
fn me(_: &(), info: WorkerInfo) -> Me {
    Me {
        generation: info.generation(),
    }
}

/// Dies in the given way on input 5, else echoes.
#[worker_task]
fn die_on_five(_m: &mut Me, x: u64, how: String) -> u64 {
    if x == 5 {
        match how.as_str() {
            "kill" => {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            }
            "segv" => {
                // A real invalid write, as a crashing C library would do
                // (a raised SIGSEGV is swallowed by std's stack-overflow handler).
                // SAFETY: not safe at all, on purpose: this must crash the worker.
                unsafe { std::ptr::null_mut::<u64>().write_volatile(x) };
            }
            "abort" => std::process::abort(),
            "oom" => {
                // An address-space ceiling, then more than it allows: the
                // allocator fails and Rust aborts, as under a cgroup limit.
                use nix::sys::resource::{setrlimit, Resource};
                setrlimit(Resource::RLIMIT_AS, 256 << 20, 256 << 20).unwrap();
                let big = vec![1u8; 1 << 30];
                return big.len() as u64;
            }
            "exit" => std::process::exit(7),
            _ => {}
        }
    }
    x
}

#[worker_task]
fn generation(m: &mut Me) -> u32 {
    m.generation
}

#[test]
fn each_way_of_dying_is_named_and_the_rest_completes() {
    for (how, expect) in [
        ("kill", "SIGKILL"),
        ("segv", "SIGSEGV"),
        ("abort", "SIGABRT"),
        ("oom", "SIGABRT"),
        ("exit", "exited with code 7"),
    ] {
        let pool = Pool::builder()
            .workers(2)
            .chunk_size(4)
            .build(me, ())
            .unwrap();
        let out: Vec<_> = pool
            .imap(die_on_five, (0..40).map(|x| (x, how.to_string())))
            .collect();
        assert_eq!(out.len(), 40, "{how}: one outcome per input");
        for (x, r) in out.iter().enumerate() {
            if x == 5 {
                let e = r
                    .as_ref()
                    .expect_err(&format!("{how}: input 5 killed its worker"));
                assert!(
                    matches!(e.kind(), ErrorKind::WorkerDied(m) if m.contains(expect)),
                    "{how}: {e}"
                );
            } else {
                assert_eq!(
                    r.as_ref()
                        .copied()
                        .unwrap_or_else(|e| panic!("{how}: input {x}: {e}")),
                    x as u64
                );
            }
        }
        // A replacement took the dead worker's place: the pool serves on,
        // and one slot is on its second generation.
        let gens = pool.broadcast(generation, ()).unwrap();
        assert_eq!(gens.len(), 2, "{how}: both slots live");
        assert_eq!(
            gens.iter().sum::<u32>(),
            1,
            "{how}: exactly one respawn, got {gens:?}"
        );
    }
}

#[test]
fn a_crash_with_one_worker_still_answers_everything() {
    let pool = Pool::builder().workers(1).build(me, ()).unwrap();
    let out: Vec<_> = pool
        .imap_unordered(die_on_five, (0..20).map(|x| (x, "kill".to_string())))
        .collect();
    assert_eq!(out.len(), 20);
    assert_eq!(out.iter().filter(|r| r.is_err()).count(), 1);
}
