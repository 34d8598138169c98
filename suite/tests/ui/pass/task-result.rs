use pool_runtime::{worker_task, Pool};

pub struct Parser {
    radix: u32,
}

#[worker_task]
fn parse(p: &Parser, text: String) -> Result<u64, String> {
    u64::from_str_radix(&text, p.radix).map_err(|e| e.to_string())
}

// The task's own error comes back typed, inside the pool's result.
fn _never(pool: &Pool<Parser>) {
    let _: Result<Vec<Result<u64, String>>, pool_runtime::Error> =
        pool.map(parse, vec!["ff".to_string()]);
}

fn main() {
    assert_eq!(parse(&Parser { radix: 16 }, "ff".into()), Ok(255));
}
