// Workers started fresh cannot read the driver's memory: init arguments
// that do not cross with serde are refused, naming the factory form.
use pool_runtime::{worker_init, Pool};

pub struct Table {
    pub rows: Vec<u64>,
}

#[worker_init]
fn index(table: &Table) -> usize {
    table.rows.len()
}

fn main() {
    let _ = Pool::builder().spawn().build(index, Table { rows: vec![1, 2] });
}
