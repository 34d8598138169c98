//! The progress bar (feature `progress`): what it shows, drawn into an
//! in-memory terminal, and what reaches a real stderr that is a pipe.
#![cfg(feature = "progress")]

use std::process::Command;
use std::time::{Duration, Instant};

use indicatif::{InMemoryTerm, ProgressDrawTarget as Target};
use pool_runtime::{worker_init, worker_task, ErrorKind, Imap, Pool, ProgressMode};

struct Nothing;

#[worker_init]
fn nothing(_: &()) -> Nothing {
    Nothing
}

/// Panics on 5, 38 and 71 out of 0..100.
#[worker_task]
fn picky(x: u64) -> u64 {
    assert!(x % 33 != 5, "{x} is not welcome");
    x * 2
}

#[worker_task]
fn double(x: u64) -> u64 {
    x * 2
}

#[worker_task]
fn label(x: u64) -> String {
    x.to_string()
}

#[worker_task]
fn slow(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    x
}

fn pool() -> Pool<Nothing> {
    Pool::builder()
        .workers(2)
        .build(nothing, ())
        .expect("build")
}

fn in_memory() -> (InMemoryTerm, Target) {
    let term = InMemoryTerm::new(4, 120);
    let target = Target::term_like(Box::new(term.clone()));
    (term, target)
}

#[test]
fn bar_shows_done_out_of_total_and_the_errors() {
    let pool = pool();
    let (term, target) = in_memory();
    let outcomes: Vec<_> = pool.imap(picky, 0..100).progress_to(target).collect();
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    assert_eq!(failed, 3);
    assert!(outcomes
        .iter()
        .filter_map(|o| o.as_ref().err())
        .all(|e| matches!(e.kind(), ErrorKind::Panicked(_))));
    let screen = term.contents();
    assert!(screen.contains("100/100"), "{screen:?}");
    assert!(screen.contains("3 errors"), "{screen:?}");
    assert!(screen.contains("ETA"), "{screen:?}");
    assert!(screen.contains("/s"), "{screen:?}"); // the rate
}

#[test]
fn unordered_stream_counts_the_same() {
    let pool = pool();
    let (term, target) = in_memory();
    let failed = pool
        .imap_unordered(picky, 0..100)
        .progress_to(target)
        .filter(Result::is_err)
        .count();
    assert_eq!(failed, 3);
    let screen = term.contents();
    assert!(screen.contains("100/100"), "{screen:?}");
    assert!(screen.contains("3 errors"), "{screen:?}");
}

#[test]
fn no_errors_no_error_message() {
    let pool = pool();
    let (term, target) = in_memory();
    let sum: u64 = pool
        .imap(double, 100..300)
        .progress_to(target)
        .map(|o| o.expect("no input panics"))
        .sum();
    assert_eq!(sum, (100..300u64).map(|x| x * 2).sum::<u64>());
    let screen = term.contents();
    assert!(screen.contains("200/200"), "{screen:?}");
    assert!(!screen.contains("error"), "{screen:?}");
}

#[test]
fn unknown_length_shows_a_count_without_total() {
    let pool = pool();
    // A filter: size_hint is (0, Some(1000)), no exact total.
    let (term, target) = in_memory();
    let n = pool
        .imap(picky, (0..1000u64).filter(|x| x % 2 == 0))
        .progress_to(target)
        .count();
    assert_eq!(n, 500);
    let screen = term.contents();
    assert!(screen.contains("500 done"), "{screen:?}");
    assert!(
        !screen.contains("/500") && !screen.contains("/1,000"),
        "{screen:?}"
    );
    assert!(!screen.contains("ETA"), "{screen:?}");
    // Unbounded: size_hint is (0, None).
    let (term, target) = in_memory();
    let n = pool
        .imap(picky, (0u64..).take_while(|&x| x < 70))
        .progress_to(target)
        .count();
    assert_eq!(n, 70);
    let screen = term.contents();
    assert!(screen.contains("70 done"), "{screen:?}");
    assert!(screen.contains("2 errors"), "{screen:?}"); // 5 and 38
}

#[test]
fn stream_dropped_early_leaves_the_bar_where_it_stopped() {
    let pool = pool();
    let (term, target) = in_memory();
    let mut stream = pool.imap(picky, 0..1000).progress_to(target);
    let first: Vec<_> = stream.by_ref().take(10).collect();
    assert_eq!(first.len(), 10);
    drop(stream);
    let screen = term.contents();
    // Not 1,000/1,000: the bar is not "finished" past what was delivered.
    assert!(screen.contains("10/1,000"), "{screen:?}");
    assert!(screen.contains("1 error"), "{screen:?}"); // input 5
                                                       // The pool goes on.
    assert_eq!(pool.map(picky, 6..8).expect("map"), vec![12, 14]);
}

#[test]
fn bar_moves_while_the_stream_is_under_way() {
    // The ticker thread draws the counts while the consumer holds the
    // stream (here: idle). Waits up to 20 s for a redraw due in 0.1 s.
    let pool = pool();
    let (term, target) = in_memory();
    let mut stream = pool.imap(slow, 0..500).progress_to(target);
    for _ in 0..20 {
        stream.next().expect("an outcome").expect("ok");
    }
    let until = Instant::now() + Duration::from_secs(20);
    while !term.contents().contains("20/500") {
        assert!(Instant::now() < until, "{:?}", term.contents());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn setup_error_ends_the_bar_at_one() {
    // A function with no #[worker_task]: the stream's one outcome is an error.
    fn unregistered(x: u64) -> u64 {
        x
    }
    let pool = pool();
    let (term, target) = in_memory();
    let outcomes: Vec<_> = pool.imap(unregistered, 0..50).progress_to(target).collect();
    assert_eq!(outcomes.len(), 1);
    assert!(matches!(
        outcomes[0].as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::NotRegistered(_))
    ));
    let screen = term.contents();
    assert!(screen.contains("1/50"), "{screen:?}");
    assert!(screen.contains("1 error"), "{screen:?}");
}

#[test]
fn hidden_target_costs_nothing_and_draws_nothing() {
    let pool = pool();
    let out: Vec<u64> = pool
        .imap(picky, 6..30)
        .progress_to(Target::hidden())
        .collect::<Result<_, _>>()
        .expect("no input panics");
    assert_eq!(out.len(), 24);
}

#[test]
fn streams_stay_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let pool = pool();
    let (_term, target) = in_memory();
    let mut stream = pool.imap(picky, 0..10).progress_to(target);
    send_sync(&stream);
    send_sync(&pool.imap(picky, 0..10).progress_mode(ProgressMode::Always));
    let _ = stream.next(); // the bar is up now
    send_sync(&stream);
    let _: &Imap<'_, std::ops::Range<u64>, u64> = &stream;
}

// ---------------------------------------------------------------------------
// A real stderr that is a pipe: this test binary runs itself as a child
// with `PROGRESS_CHILD` set, its stderr captured.

/// The child's side: one scenario, named by `PROGRESS_CHILD`.
#[test]
fn child_scenario() {
    let Ok(scenario) = std::env::var("PROGRESS_CHILD") else {
        return; // run as a plain test: nothing to do
    };
    let builder = Pool::builder().workers(2);
    let builder = match scenario.as_str() {
        "builder-auto" => builder.progress(ProgressMode::Auto),
        "builder-always" | "builder-always-call-off" => builder.progress(ProgressMode::Always),
        _ => builder,
    };
    let pool = builder.build(nothing, ()).expect("build");
    let outcomes: Vec<Result<u64, _>> = match scenario.as_str() {
        "call-auto" => pool.imap(picky, 0..200).progress().collect(),
        "call-always" => pool
            .imap(picky, 0..200)
            .progress_mode(ProgressMode::Always)
            .collect(),
        "builder-always-call-off" => pool
            .imap(picky, 0..200)
            .progress_mode(ProgressMode::Off)
            .collect(),
        "builder-auto" | "builder-always" => pool.imap_unordered(picky, 0..200).collect(),
        other => panic!("unknown scenario {other}"),
    };
    assert_eq!(outcomes.len(), 200);
    // `map` too: stops at the first error (input 5), so its bar shows 6 done.
    if scenario == "builder-always" {
        assert!(pool.map(picky, 0..100).is_err());
        // And `map_slab`, to its end.
        assert_eq!(pool.map_slab(label, 0..50).expect("map_slab").len(), 50);
    }
}

/// Runs one scenario in a child whose stderr is a pipe; returns that stderr.
fn child_stderr(scenario: &str) -> String {
    let out = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "child_scenario",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PROGRESS_CHILD", scenario)
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "child {scenario} failed: {}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

#[test]
fn stderr_not_a_terminal_draws_nothing_unless_forced() {
    for quiet in ["call-auto", "builder-auto", "builder-always-call-off"] {
        let stderr = child_stderr(quiet);
        assert!(
            !stderr.contains("/200") && !stderr.contains('\u{1b}'),
            "{quiet} drew into a pipe: {stderr:?}"
        );
    }
    let stderr = child_stderr("call-always");
    assert!(stderr.contains("200/200"), "{stderr:?}");
    assert!(stderr.contains("6 errors"), "{stderr:?}"); // 5, 38, 71, 104, 137, 170
    let stderr = child_stderr("builder-always");
    assert!(stderr.contains("200/200"), "{stderr:?}");
    assert!(stderr.contains("6/100"), "{stderr:?}"); // the map, stopped at input 5
    assert!(stderr.contains("50/50"), "{stderr:?}"); // the slab, whole
}

/// The `Stream` form of a stream with a bar counts the same (`async` on too).
#[cfg(feature = "async")]
#[test]
fn async_stream_draws_the_bar_too() {
    use futures_util::StreamExt;
    let pool = pool();
    let (term, target) = in_memory();
    let stream = pool.imap(picky, 0..100).progress_to(target).into_stream();
    let outcomes: Vec<_> = futures_executor::block_on(stream.collect());
    assert_eq!(outcomes.iter().filter(|o| o.is_err()).count(), 3);
    let screen = term.contents();
    assert!(screen.contains("100/100"), "{screen:?}");
    assert!(screen.contains("3 errors"), "{screen:?}");
}
