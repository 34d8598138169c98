//! The pool inside a multithreaded program: `cargo test`'s own threads,
//! threads that print and allocate while pools are built, and several
//! threads submitting to one pool.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pool_runtime::{worker_init, worker_task, Pool};

/// Neither `Send` nor `Sync`, nor `Serialize`.
struct Local {
    name: Rc<String>,
}

#[worker_init]
fn local(name: &Rc<String>) -> Local {
    Local { name: name.clone() }
}

#[worker_task]
fn greet(l: &mut Local, who: String) -> String {
    format!("{} greets {who}", l.name)
}

#[test]
fn pool_is_send_and_sync_whatever_the_state() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pool<Local>>();
}

#[test]
fn args_and_state_need_not_be_send() {
    let pool = Pool::builder()
        .workers(2)
        .build(local, Rc::new("w".to_string()))
        .unwrap();
    assert_eq!(pool.apply(greet, "you".into()).unwrap(), "w greets you");
}

#[test]
fn several_threads_submit_to_one_pool() {
    let pool = Pool::builder()
        .workers(2)
        .build(local, Rc::new("w".to_string()))
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let pool = &pool;
            s.spawn(move || {
                for round in 0..20 {
                    let who: Vec<String> = (0..50).map(|i| format!("{t}-{round}-{i}")).collect();
                    let out = pool.map(greet, who.clone()).unwrap();
                    assert_eq!(
                        out,
                        who.iter()
                            .map(|w| format!("w greets {w}"))
                            .collect::<Vec<_>>()
                    );
                    assert_eq!(
                        pool.apply(greet, format!("{t}")).unwrap(),
                        format!("w greets {t}")
                    );
                }
            });
        }
    });
}

#[test]
fn pools_build_while_other_threads_print_and_allocate() {
    let stop = Arc::new(AtomicBool::new(false));
    let noise: Vec<_> = (0..3)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v: Vec<String> = (0..64).map(|k| format!("{i}:{k}")).collect();
                    n += v.len() as u64;
                    if n.is_multiple_of(4096) {
                        println!("noise {i} {n}");
                        eprintln!("noise {i} {n}");
                    }
                }
            })
        })
        .collect();
    // Build from several threads at once, too.
    std::thread::scope(|s| {
        for t in 0..3 {
            s.spawn(move || {
                for round in 0..8 {
                    let pool = Pool::builder()
                        .workers(2)
                        .build(local, Rc::new(format!("p{t}")))
                        .unwrap();
                    let out = pool.map(greet, vec![format!("{round}"); 10]).unwrap();
                    assert!(out.iter().all(|o| o == &format!("p{t} greets {round}")));
                }
            });
        }
    });
    stop.store(true, Ordering::Relaxed);
    for n in noise {
        n.join().unwrap();
    }
}

#[test]
fn args_may_borrow_from_the_driver() {
    // Not 'static: a reference into this stack frame. The workers read it
    // copy-on-write; the driver's copy of the reference is dropped at build.
    let table: Vec<u64> = (0..1000).collect();
    let pool = Pool::builder()
        .workers(2)
        .build(|t: &&Vec<u64>| t.iter().sum::<u64>(), &table)
        .unwrap();
    assert_eq!(
        pool.broadcast(sum_state, ()).unwrap(),
        vec![499_500, 499_500]
    );
}

#[worker_task]
fn sum_state(total: &u64) -> u64 {
    *total
}
