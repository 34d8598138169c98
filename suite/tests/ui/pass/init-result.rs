use std::fmt;

use pool_runtime::{worker_init, worker_task, Pool};

pub struct Config {
    path: String,
}

pub struct Classifier {
    hits: u64,
}

#[derive(Debug)]
pub struct LoadError(String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot load {}", self.0)
    }
}

#[worker_init]
fn load(config: &Config) -> Result<Classifier, LoadError> {
    if config.path.is_empty() {
        return Err(LoadError(config.path.clone()));
    }
    Ok(Classifier { hits: 0 })
}

#[worker_init]
fn load_io(config: &Config) -> std::io::Result<Classifier> {
    std::fs::metadata(&config.path)?;
    Ok(Classifier { hits: 0 })
}

#[worker_task]
fn classify(c: &mut Classifier, row: u64) -> bool {
    c.hits += 1;
    row % 2 == 0
}

fn _never() -> Result<(), pool_runtime::Error> {
    let pool: Pool<Classifier> = Pool::builder()
        .workers(2)
        .build(load, Config { path: "x".into() })?;
    let _: Vec<bool> = pool.map(classify, vec![1, 2])?;
    let other: Pool<Classifier> = Pool::builder().build(load_io, Config { path: "x".into() })?;
    let _: Vec<bool> = other.map(classify, vec![1, 2])?;
    Ok(())
}

fn main() {
    assert!(load(&Config {
        path: String::new()
    })
    .is_err());
    assert_eq!(load(&Config { path: "x".into() }).unwrap().hits, 0);
}
