//! `retries(n)`: an input whose worker died runs again in a fresh worker; an
//! input that kills n + 1 workers is quarantined, never an endless respawn.

use std::path::PathBuf;

use pool_runtime::{worker_init, worker_task, ErrorKind, Pool, WorkerInfo};

struct Gen(u32);

#[worker_init]
fn gen(_: &(), me: WorkerInfo) -> Gen {
    Gen(me.generation())
}

#[worker_task]
fn generation(g: &mut Gen) -> u32 {
    g.0
}

/// Dies on input 5 the first `deaths` times (counted in files under `dir`).
#[worker_task]
fn flaky(_g: &mut Gen, x: u64, dir: String, deaths: u32) -> u64 {
    if x == 5 {
        let dir = PathBuf::from(dir);
        let so_far = std::fs::read_dir(&dir).unwrap().count() as u32;
        if so_far < deaths {
            std::fs::write(dir.join(format!("death-{so_far}")), b"").unwrap();
            std::process::abort();
        }
    }
    x
}

fn scratch(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("pool-retries-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.to_string_lossy().into_owned()
}

fn inputs(dir: &str, deaths: u32) -> impl Iterator<Item = (u64, String, u32)> + '_ {
    (0..20).map(move |x| (x, dir.to_string(), deaths))
}

#[test]
fn a_retried_input_succeeds_in_a_fresh_worker() {
    let dir = scratch("ok");
    let pool = Pool::builder()
        .workers(2)
        .retries(2)
        .build(gen, ())
        .unwrap();
    let out = pool.map(flaky, inputs(&dir, 2)).unwrap();
    assert_eq!(out, (0..20).collect::<Vec<_>>());
    // Two workers died for it, and were replaced.
    assert_eq!(
        pool.broadcast(generation, ()).unwrap().iter().sum::<u32>(),
        2
    );
}

#[test]
fn a_poison_pill_is_quarantined_after_n_plus_one_deaths() {
    let dir = scratch("poison");
    let pool = Pool::builder()
        .workers(2)
        .retries(2)
        .build(gen, ())
        .unwrap();
    let out: Vec<_> = pool.imap(flaky, inputs(&dir, u32::MAX)).collect();
    assert_eq!(out.len(), 20);
    for (x, r) in out.iter().enumerate() {
        if x == 5 {
            let e = r.as_ref().unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::Quarantined(m) if m.contains("killed 3 workers") && m.contains("SIGABRT")),
                "{e}"
            );
        } else {
            assert_eq!(*r.as_ref().unwrap(), x as u64);
        }
    }
    // Exactly three deaths, then no more: no respawn loop.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
    assert_eq!(
        pool.broadcast(generation, ()).unwrap().iter().sum::<u32>(),
        3
    );
}

#[test]
fn without_retries_the_input_fails_at_once() {
    let dir = scratch("none");
    let pool = Pool::builder().workers(2).build(gen, ()).unwrap();
    let out: Vec<_> = pool.imap(flaky, inputs(&dir, u32::MAX)).collect();
    assert!(matches!(
        out[5].as_ref().unwrap_err().kind(),
        ErrorKind::WorkerDied(_)
    ));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}
