use pool_runtime::{worker_task, Pool};

pub struct Grid {
    width: u64,
}

#[worker_task]
fn index(g: &Grid, (x, y): (u64, u64)) -> u64 {
    y * g.width + x
}

#[worker_task]
fn ignore(_: &mut Grid, _: u64) {}

#[worker_task]
fn countdown(mut n: u64) -> u64 {
    while n > 1 {
        n /= 2;
    }
    n
}

#[worker_task]
fn r#match(x: u64) -> u64 {
    x
}

fn _never(pool: &Pool<Grid>) {
    let _: Result<Vec<u64>, _> = pool.map(index, vec![(1, 2)]);
    let _: Result<Vec<()>, _> = pool.map(ignore, vec![7]);
    let _: Result<Vec<u64>, _> = pool.map(countdown, vec![7]);
    let _: Result<Vec<u64>, _> = pool.map(r#match, vec![7]);
}

fn main() {
    let mut g = Grid { width: 10 };
    assert_eq!(index(&g, (3, 2)), 23);
    ignore(&mut g, 1);
    assert_eq!(countdown(9), 1);
    assert_eq!(r#match(4), 4);
}
