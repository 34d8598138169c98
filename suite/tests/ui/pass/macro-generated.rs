// Functions written by `macro_rules!` register like any other.
use pool_runtime::{worker_task, Pool};

macro_rules! scaled {
    ($name:ident, $factor:expr) => {
        #[worker_task]
        fn $name(x: u64) -> u64 {
            x * $factor
        }
    };
}

scaled!(double, 2);
scaled!(triple, 3);

macro_rules! fixed {
    () => {
        #[worker_task]
        fn fixed(x: u64) -> u64 {
            x + 1
        }
    };
}

fixed!();

fn _never(pool: &Pool<()>) {
    let _ = pool.map(double, vec![1]);
    let _ = pool.map(triple, vec![1]);
    let _ = pool.map(fixed, vec![1]);
}

fn main() {
    assert_eq!(double(2) + triple(2) + fixed(2), 13);
    assert!(pool_runtime::registry::task_name(double)
        .unwrap()
        .ends_with("::double"));
    assert!(pool_runtime::registry::task_name(fixed)
        .unwrap()
        .ends_with("::fixed"));
}
