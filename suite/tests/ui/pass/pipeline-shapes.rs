// Stages of every shape chain: stateless, `&S`, `&mut S`, several
// arguments, a `Result` feeding its `Ok` side, and a `Result` fed whole.
use pool_runtime::{worker_init, worker_task, Pool};

struct Model(u64);

#[worker_init]
fn load(k: &u64) -> Model {
    Model(*k)
}

#[worker_task]
fn split(line: String) -> (u64, u64) {
    (line.len() as u64, 1)
}

#[worker_task]
fn add(m: &Model, a: u64, b: u64) -> Result<u64, String> {
    Ok(m.0 + a + b)
}

#[worker_task]
fn bump(m: &mut Model, x: u64) -> Result<u64, String> {
    m.0 += 1;
    Ok(x)
}

#[worker_task]
fn keep(r: Result<u64, String>) -> Option<u64> {
    r.ok()
}

fn main() {
    let pool = Pool::builder().workers(1).build(load, 1).unwrap();
    let p = pool.pipeline(split).then(add).then(bump).then(keep);
    let _: Result<Vec<Option<u64>>, _> = p.map(vec![String::new()]);
}
