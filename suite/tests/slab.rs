//! `Pool::map_slab`: outputs left in their frames, lent as `&[u8]` or
//! `&str`, the same outcomes as `map` in every shape.

use pool_runtime::{worker_init, worker_task, ErrorKind, Pool};

#[worker_init]
fn nothing(_: &()) -> u8 {
    0
}

#[worker_task]
fn bits(x: u64) -> Vec<u8> {
    format!("{x:b}").bytes().map(|b| b - b'0').collect()
}

#[worker_task]
fn text(x: u64) -> String {
    "é".repeat((x % 7) as usize) + &x.to_string()
}

#[worker_task]
fn big(x: u64) -> Vec<u8> {
    vec![x as u8; (1 << 20) + x as usize]
}

#[worker_task]
fn panics_at_5(x: u64) -> Vec<u8> {
    assert!(x != 5, "five");
    vec![x as u8]
}

#[worker_task]
fn dies_at_3(x: u64) -> String {
    if x == 3 {
        std::process::abort();
    }
    x.to_string()
}

#[worker_task]
fn empty(_: u64) -> Vec<u8> {
    Vec::new()
}

fn pool() -> Pool<u8> {
    Pool::builder().workers(2).build(nothing, ()).unwrap()
}

#[test]
fn a_slab_holds_what_map_returns_in_input_order() {
    let pool = pool();
    let n = 100_000u64;
    let slab = pool.map_slab(bits, 0..n).unwrap();
    let owned = pool.map(bits, 0..n).unwrap();
    assert_eq!(slab.len(), owned.len());
    for (i, (a, b)) in slab.iter().zip(&owned).enumerate() {
        assert_eq!(a, &b[..], "output {i}");
    }
    assert_eq!(slab.to_vec(), owned);
    assert_eq!(&slab[77], &bits_here(77)[..]);
    assert_eq!(slab.get(n as usize), None);
    assert_eq!(slab.iter().next_back(), Some(&bits_here(n - 1)[..]));
}

fn bits_here(x: u64) -> Vec<u8> {
    format!("{x:b}").bytes().map(|b| b - b'0').collect()
}

#[test]
fn text_is_lent_as_str() {
    let pool = pool();
    let slab = pool.map_slab(text, 0..1000).unwrap();
    let owned = pool.map(text, 0..1000).unwrap();
    let lent: Vec<&str> = (&slab).into_iter().collect();
    assert_eq!(lent, owned.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        format!("{:?}", pool.map_slab(text, 1..3).unwrap()),
        r#"["é1", "éé2"]"#
    );
}

#[test]
fn large_outputs_and_empty_ones() {
    let pool = pool();
    let slab = pool.map_slab(big, 0..12).unwrap();
    assert_eq!(slab.len(), 12);
    for (i, v) in slab.iter().enumerate() {
        assert_eq!(v.len(), (1 << 20) + i);
        assert!(v.iter().all(|&b| b == i as u8));
    }
    let none = pool.map_slab(empty, 0..5).unwrap();
    assert_eq!(none.len(), 5);
    assert!(none.iter().all(|v| v.is_empty()));
    let nothing_in = pool.map_slab(bits, 0..0).unwrap();
    assert!(nothing_in.is_empty());
}

#[test]
fn the_first_failure_in_input_order_is_the_error_and_the_pool_goes_on() {
    let pool = pool();
    let e = pool.map_slab(panics_at_5, 0..100).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Panicked(p) if p.message == "five"),
        "{e}"
    );
    let e = pool.map_slab(dies_at_3, 0..50).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::WorkerDied(_) | ErrorKind::Quarantined(_)
        ),
        "{e}"
    );
    // The pool is still usable, and a later slab is whole.
    assert_eq!(pool.map_slab(bits, 0..10).unwrap().len(), 10);
}

#[worker_task]
fn double(x: u64) -> u64 {
    x * 2
}

#[worker_task]
fn nap_then_text(ms: u64) -> String {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms.to_string()
}

#[test]
fn a_pipeline_and_one_calls_options_give_slabs_too() {
    let pool = pool();
    let piped = pool
        .pipeline(double)
        .then(text)
        .map_slab(0..500u64)
        .unwrap();
    let want: Vec<String> = (0..500u64).map(|x| text_here(x * 2)).collect();
    assert_eq!(piped.to_vec(), want);
    let one = pool.call().chunk_size(3).map_slab(text, 0..100u64).unwrap();
    assert_eq!(one.to_vec(), (0..100u64).map(text_here).collect::<Vec<_>>());
    // One call's task timeout holds for its slab.
    let quick = pool
        .call()
        .task_timeout(std::time::Duration::from_millis(200));
    let e = quick.map_slab(nap_then_text, [1, 5_000, 1]).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::TimedOut(_)), "{e}");
    assert_eq!(&pool.map_slab(nap_then_text, [2]).unwrap()[0], "2");
}

fn text_here(x: u64) -> String {
    "é".repeat((x % 7) as usize) + &x.to_string()
}
