// Every stage runs on the pool's own state.
use pool_runtime::{worker_init, worker_task, Pool};

struct Model;
struct Other;

#[worker_init]
fn load(_: &()) -> Model {
    Model
}

#[worker_task]
fn parse(line: String) -> u64 {
    line.len() as u64
}

#[worker_task]
fn score(_: &mut Other, x: u64) -> u64 {
    x
}

fn main() {
    let pool = Pool::builder().workers(1).build(load, ()).unwrap();
    let _ = pool.pipeline(parse).then(score);
}
