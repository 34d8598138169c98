use pool_runtime::{worker_init, Pool, WorkerInfo};

pub struct Shard {
    index: usize,
}

#[worker_init]
fn load(base: &usize, me: WorkerInfo) -> Shard {
    Shard {
        index: base + me.index(),
    }
}

#[worker_init]
fn load_qualified(base: &usize, me: pool_runtime::WorkerInfo) -> Shard {
    Shard {
        index: base + me.index(),
    }
}

fn _never() -> Result<(), pool_runtime::Error> {
    let _: Pool<Shard> = Pool::builder().build(load, 10)?;
    let _: Pool<Shard> = Pool::builder().build(load_qualified, 10)?;
    Ok(())
}

fn main() {
    assert_eq!(load(&10, WorkerInfo::new(2, 0)).index, 12);
}
