#![cfg(test)]

use std::time::{Duration, Instant};

use super::*;
use crate::shared::raw_mutex::Taken;

#[test]
fn four_threads_adding_ten_thousand_each_make_forty_thousand() {
    let total = SharedMutex::new(0u64).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    *total.lock().unwrap() += 1;
                }
            });
        }
    });
    assert_eq!(*total.lock().unwrap(), 40_000);
}

#[test]
fn a_held_lock_is_would_block_for_try_and_timeout() {
    let m = SharedMutex::new(0u8).unwrap();
    let held = m.lock().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
            let t = Instant::now();
            assert!(matches!(
                m.lock_timeout(Duration::from_millis(100)),
                Err(TryLockError::WouldBlock)
            ));
            let waited = t.elapsed();
            assert!(waited >= Duration::from_millis(90), "{waited:?}");
            assert!(waited < Duration::from_secs(5), "{waited:?}");
        });
    });
    drop(held);
    assert!(m.lock_timeout(Duration::from_millis(100)).is_ok());
}

#[test]
fn a_thread_that_ends_holding_the_lock_poisons_it_and_the_value_survives() {
    let m = SharedArray::new(3, 0u32).unwrap();
    let held = m.clone();
    // Joined by its handle (`pthread_join`), not by the end of a scope,
    // which comes when the closure returns, before the thread has exited
    // and its robust list was walked: measured flaky (2 runs of 4).
    std::thread::spawn(move || {
        let mut g = held.lock().unwrap();
        g[0] = 7;
        // Never unlocked: the thread ends as the holder, as a killed
        // worker would; the robust mutex hands the next locker EOWNERDEAD.
        std::mem::forget(g);
    })
    .join()
    .unwrap();
    assert_eq!(m.region.header().try_lock(), Some(Taken::OwnerDied));
    m.region.header().unlock();
    assert!(m.is_poisoned());
    let poisoned = match m.lock_timeout(Duration::from_secs(5)) {
        Err(TryLockError::Poisoned(p)) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(**poisoned.get_ref(), [7, 0, 0]);
    let mut g = poisoned.recover();
    g[1] = 8;
    drop(g);
    assert_eq!(*m.lock().unwrap(), [7, 8, 0]);
}

#[test]
fn a_panic_with_the_guard_alive_poisons_for_every_clone_until_cleared() {
    let m = SharedMutex::new(1u64).unwrap();
    let other = m.clone();
    let r = std::panic::catch_unwind(|| {
        let mut g = m.lock().unwrap();
        *g = 2;
        panic!("mid-update");
    });
    assert!(r.is_err());
    assert!(other.is_poisoned());
    assert_eq!(*other.lock().unwrap_err().into_inner(), 2);
    assert!(other.lock().is_err(), "into_inner leaves the poison");
    other.clear_poison();
    assert_eq!(*m.lock().unwrap(), 2);
    assert!(format!("{m:?}").contains("data: 2"), "{m:?}");
}

#[test]
#[should_panic(expected = "locked again by the thread that holds it")]
fn locking_twice_in_one_thread_panics_instead_of_hanging() {
    let m = SharedMutex::new(0u8).unwrap();
    let _first = m.lock().unwrap();
    let _second = m.lock();
}
