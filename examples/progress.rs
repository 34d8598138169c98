//! A progress bar on a pool's `imap` (feature `progress`).
//!
//! 2,000 tasks of 1 to 3 ms on 4 workers, one in 50 panicking: the bar on
//! stderr shows done/total, the rate, the ETA and the errors so far. Then 600
//! more over a filtered iterator, whose length is unknown: a spinner with a
//! count. The bars are forced (`ProgressMode::Always`), so they show even when
//! stderr is piped or in a CI log. Checks its own results; exits 1 if wrong.
//!
//! ```sh
//! cargo run --release --example progress
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use pool_runtime::{worker_init, worker_task, ErrorKind, Pool, ProgressMode};

const N: u64 = 2_000;

struct Lab {
    factor: u64,
}

#[worker_init]
fn open_lab(factor: &u64) -> Lab {
    Lab { factor: *factor }
}

/// About 1 to 3 ms of waiting (an instrument, say); sample 49, 99, 149, ...
/// panics.
#[worker_task]
fn measure(lab: &mut Lab, sample: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(1_000 + (sample % 3) * 1_000));
    if sample % 50 == 49 {
        panic!("sample {sample} is contaminated");
    }
    sample * lab.factor
}

fn main() -> ExitCode {
    // `.progress(ProgressMode::Always)` here would give every map/imap of
    // the pool a bar; this example asks for it call by call instead.
    let pool = match Pool::builder().workers(4).build(open_lab, 3) {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("progress: cannot start the pool: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let (mut ok, mut panicked, mut wrong) = (0u64, 0u64, Vec::new());
    let outcomes = pool.imap(measure, 0..N).progress_mode(ProgressMode::Always);
    for (sample, outcome) in (0..N).zip(outcomes) {
        match outcome {
            Ok(v) if v == sample * 3 => ok += 1,
            Err(e) if sample % 50 == 49 && matches!(e.kind(), ErrorKind::Panicked(_)) => {
                panicked += 1
            }
            other => wrong.push(format!("sample {sample}: {other:?}")),
        }
    }
    let first = started.elapsed();

    // Unknown length: every third sample of 0..1800 (a filter has no exact
    // size), so a spinner and a count, no total.
    let started = Instant::now();
    let second = pool
        .imap(measure, (0..1800u64).filter(|s| s % 3 == 0))
        .progress_mode(ProgressMode::Always)
        .filter(Result::is_ok)
        .count();
    let second_time = started.elapsed();

    println!(
        "progress: {N} tasks in {:.2} s: {ok} ok, {panicked} panicked (one in 50); \
         then {second} of 600 ok over a filter in {:.2} s",
        first.as_secs_f64(),
        second_time.as_secs_f64()
    );
    // 49, 99, ... below 2,000: 40 panics. Of the multiples of 3 below 1,800,
    // those that are 49 mod 50 (99, 249, ... : one in 50) panic: 12.
    let expected = (N - N / 50, N / 50, 600 - 12);
    if (ok, panicked, second as u64) != expected || !wrong.is_empty() {
        eprintln!(
            "progress: WRONG: got (ok, panicked, second) = {:?}, expected {expected:?}; {wrong:?}",
            (ok, panicked, second)
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
