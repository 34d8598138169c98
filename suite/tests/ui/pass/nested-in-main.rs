// Annotated functions may live inside a function body.
use pool_runtime::{worker_exit, worker_init, worker_task, Pool};

fn main() {
    pub struct Counter {
        seen: u64,
    }

    #[worker_init]
    fn start(base: &u64) -> Counter {
        Counter { seen: *base }
    }

    #[worker_task]
    fn add(c: &mut Counter, x: u64) -> u64 {
        c.seen += 1;
        x + c.seen
    }

    #[worker_exit]
    fn seen(c: Counter) -> u64 {
        c.seen
    }

    fn _never() -> Result<(), pool_runtime::Error> {
        let pool = Pool::builder().build(start, 0)?;
        let _: Vec<u64> = pool.map(add, 0..4)?;
        let _: Vec<u64> = pool.join_with(seen)?;
        Ok(())
    }

    let mut c = start(&1);
    assert_eq!(add(&mut c, 1), 3);
    assert_eq!(seen(c), 2);
    assert!(pool_runtime::registry::task_name(add).is_some());
}
