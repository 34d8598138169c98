use pool_runtime::{worker_task, Pool};

pub struct Acc {
    calls: u64,
}

#[worker_task]
fn none(a: &mut Acc) -> u64 {
    a.calls += 1;
    a.calls
}

#[worker_task]
fn one(a: &mut Acc, x: u64) -> u64 {
    a.calls + x
}

#[worker_task]
fn two(a: &mut Acc, x: u64, y: String) -> String {
    format!("{}{x}{y}", a.calls)
}

#[worker_task]
fn six(a: &Acc, x1: u8, x2: u16, x3: u32, x4: u64, x5: i8, x6: Vec<u8>) -> u64 {
    a.calls + u64::from(x1) + u64::from(x2) + u64::from(x3) + x4 + x5 as u64 + x6.len() as u64
}

#[worker_task]
fn six_stateless(x1: u8, x2: u8, x3: u8, x4: u8, x5: u8, x6: u8) -> u8 {
    x1 + x2 + x3 + x4 + x5 + x6
}

// No argument travels as `()`, one as itself, several as a tuple.
fn _never(pool: &Pool<Acc>) {
    let _: Result<Vec<u64>, _> = pool.map(none, vec![(), ()]);
    let _: Result<Vec<u64>, _> = pool.map(one, vec![1, 2]);
    let _: Result<Vec<String>, _> = pool.map(two, vec![(1, "a".to_string())]);
    let _: Result<Vec<u64>, _> = pool.map(six, vec![(1, 2, 3, 4, 5, vec![6])]);
    let _: Result<Vec<u8>, _> = pool.map(six_stateless, vec![(1, 2, 3, 4, 5, 6)]);
}

fn main() {
    let mut a = Acc { calls: 0 };
    assert_eq!(none(&mut a), 1);
    assert_eq!(one(&mut a, 2), 3);
    assert_eq!(two(&mut a, 2, "b".into()), "12b");
    assert_eq!(six(&a, 1, 1, 1, 1, 1, vec![1]), 7);
    assert_eq!(six_stateless(1, 1, 1, 1, 1, 1), 6);
}
