// A stage must take the previous stage's output (or the `Ok` side of it).
use pool_runtime::{worker_init, worker_task, Pool};

struct Model;

#[worker_init]
fn load(_: &()) -> Model {
    Model
}

#[worker_task]
fn parse(line: String) -> Result<u64, String> {
    line.parse().map_err(|_| line)
}

#[worker_task]
fn label(_: &Model, word: String) -> String {
    word
}

fn main() {
    let pool = Pool::builder().workers(1).build(load, ()).unwrap();
    let _ = pool.pipeline(parse).then(label);
}
