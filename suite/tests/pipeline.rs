//! Pipelines: each input runs every stage in one worker; a stage's `Err`
//! ends that input with its message; panics and deaths stay per input; and
//! the values between stages never go through the codec.

use std::collections::BTreeSet;

use pool_runtime::{worker_init, worker_task, ErrorKind, Pool};
use serde::{Deserialize, Serialize};

struct Model {
    scale: u64,
    seen: u64,
}

#[worker_init]
fn load(scale: &u64) -> Model {
    Model {
        scale: *scale,
        seen: 0,
    }
}

/// Every stage is a task in its own right, so its types are serde ones
/// (here the error is a `String`), even though a pipeline never sends them.
#[worker_task]
fn parse(line: String) -> Result<u64, String> {
    line.trim().parse().map_err(|e| format!("{e}"))
}

#[worker_task]
fn scale(m: &mut Model, x: u64) -> u64 {
    m.seen += 1;
    m.scale * x
}

#[worker_task]
fn render(x: u64) -> String {
    format!("<{x}>")
}

#[worker_task]
fn seen(m: &Model) -> u64 {
    m.seen
}

fn lines(n: u64) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

#[test]
fn every_stage_runs_in_order_and_outputs_keep_input_order() {
    let pool = Pool::builder().workers(2).build(load, 3).unwrap();
    let chain = pool.pipeline(parse).then(scale).then(render);
    assert_eq!(chain.len(), 3);
    let out = chain.map(lines(1000)).unwrap();
    let expected: Vec<String> = (0..1000u64).map(|i| format!("<{}>", 3 * i)).collect();
    assert_eq!(out, expected);
    // The stateful middle stage ran once per input, on the workers' own state.
    let seen: u64 = pool.broadcast(seen, ()).unwrap().iter().sum();
    assert_eq!(seen, 1000);
}

#[test]
fn an_err_ends_that_input_only_and_names_the_stage() {
    let pool = Pool::builder().workers(2).build(load, 1).unwrap();
    let chain = pool.pipeline(parse).then(scale).then(render);
    let inputs = vec!["1".to_string(), "two".into(), "3".into(), "".into()];
    let out: Vec<_> = chain.imap(inputs).collect();
    assert_eq!(out[0].as_deref().unwrap(), "<1>");
    assert_eq!(out[2].as_deref().unwrap(), "<3>");
    for bad in [&out[1], &out[3]] {
        let e = bad.as_ref().unwrap_err();
        let ErrorKind::Failed(msg) = e.kind() else {
            panic!("expected a stage failure, got {e}");
        };
        assert!(
            msg.contains("::parse` returned an error: invalid digit") || msg.contains("empty"),
            "{msg}"
        );
    }
    // Only the good inputs reached the later stages.
    assert_eq!(pool.broadcast(seen, ()).unwrap().iter().sum::<u64>(), 2);
    // `map` gives the first failure in input order.
    let e = chain.map(vec!["1".into(), "x".into()]).unwrap_err();
    assert!(e.to_string().starts_with("pipeline stage failed: "), "{e}");
}

#[test]
fn a_last_stage_result_comes_back_whole() {
    #[worker_task]
    fn halve(x: u64) -> Result<u64, String> {
        if x.is_multiple_of(2) {
            Ok(x / 2)
        } else {
            Err(format!("{x} is odd"))
        }
    }
    let pool = Pool::builder().workers(1).build(load, 1).unwrap();
    let out = pool
        .pipeline(parse)
        .then(halve)
        .map(vec!["4".into(), "5".into()])
        .unwrap();
    assert_eq!(out, vec![Ok(2), Err("5 is odd".to_string())]);
}

#[test]
fn a_result_can_feed_a_stage_that_takes_it_whole() {
    #[worker_task]
    fn or_zero(r: Result<u64, String>) -> u64 {
        r.unwrap_or(0)
    }
    let pool = Pool::builder().workers(1).build(load, 1).unwrap();
    let out = pool
        .pipeline(parse)
        .then(or_zero)
        .map(vec!["7".into(), "x".into()])
        .unwrap();
    assert_eq!(out, vec![7, 0]);
}

/// Refuses to be serialized or deserialized: a pipeline that moved it
/// between processes could not work.
#[derive(Debug)]
struct Opaque(Vec<u64>);

impl Serialize for Opaque {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "Opaque crossed a process boundary",
        ))
    }
}

impl<'de> Deserialize<'de> for Opaque {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "Opaque crossed a process boundary",
        ))
    }
}

#[worker_task]
fn expand(n: u64) -> Opaque {
    Opaque((0..n).collect())
}

#[worker_task]
fn total(o: Opaque) -> u64 {
    o.0.iter().sum()
}

#[test]
fn values_between_stages_never_touch_the_codec() {
    let pool = Pool::builder().workers(2).build(load, 1).unwrap();
    let out = pool.pipeline(expand).then(total).map(0..100u64).unwrap();
    assert_eq!(
        out,
        (0..100u64)
            .map(|n| n * n.saturating_sub(1) / 2)
            .collect::<Vec<_>>()
    );
    // The same stage alone must send its output back: the codec refuses.
    let e = pool.map(expand, [3u64]).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Codec(m) if m.contains("encode the result")),
        "{e}"
    );
}

#[worker_task]
fn fragile(x: u64) -> u64 {
    match x {
        13 => panic!("unlucky {x}"),
        77 => std::process::abort(),
        _ => x,
    }
}

#[test]
fn panics_and_deaths_stay_with_their_input() {
    let pool = Pool::builder()
        .workers(2)
        .chunk_size(50)
        .build(load, 2)
        .unwrap();
    let chain = pool.pipeline(fragile).then(scale);
    let out: Vec<_> = chain.imap(0..200u64).collect();
    assert_eq!(out.len(), 200);
    for (i, r) in out.iter().enumerate() {
        match i {
            13 => assert!(
                matches!(r.as_ref().unwrap_err().kind(), ErrorKind::Panicked(m) if m.contains("unlucky 13")),
                "{r:?}"
            ),
            77 => assert!(
                matches!(r.as_ref().unwrap_err().kind(), ErrorKind::WorkerDied(m) if m.contains("SIGABRT")),
                "{r:?}"
            ),
            // The inputs after 77 in its batch ran again on another worker,
            // through the whole chain.
            _ => assert_eq!(*r.as_ref().unwrap(), 2 * i as u64),
        }
    }
}

#[test]
fn unordered_gives_every_outcome_once() {
    let pool = Pool::builder().workers(2).build(load, 1).unwrap();
    let chain = pool.pipeline(parse).then(scale).then(render);
    let got: BTreeSet<String> = chain
        .imap_unordered(lines(5000))
        .map(Result::unwrap)
        .collect();
    let want: BTreeSet<String> = (0..5000).map(|i| format!("<{i}>")).collect();
    assert_eq!(got, want);
}

#[test]
fn an_unregistered_stage_is_an_error_per_call() {
    fn plain(x: u64) -> u64 {
        x
    }
    let pool = Pool::builder().workers(1).build(load, 1).unwrap();
    let e = pool
        .pipeline(parse)
        .then(plain)
        .map(vec!["1".into()])
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::NotRegistered(_)), "{e}");
    // The pool is fine.
    assert_eq!(pool.map(render, [1u64]).unwrap(), ["<1>"]);
}

#[worker_task]
fn nap_on_seven(x: u64) -> u64 {
    if x == 7 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    x
}

#[test]
fn a_slow_input_shows_in_the_insights_under_the_first_stage() {
    let pool = Pool::builder().workers(2).build(load, 1).unwrap();
    let out = pool
        .pipeline(nap_on_seven)
        .then(render)
        .map(0..20u64)
        .unwrap();
    assert_eq!(out[7], "<7>");
    let insights = pool.insights();
    let slow = insights
        .slowest
        .iter()
        .find(|s| s.input == pool_runtime::SlowInput::Debug("7".into()))
        .unwrap_or_else(|| panic!("input 7 is not among the slowest:\n{insights}"));
    assert!(slow.task.ends_with("::nap_on_seven"), "{}", slow.task);
    assert!(slow.time >= std::time::Duration::from_millis(50));
    assert_eq!(insights.tasks(), 20);
}
