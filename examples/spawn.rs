//! Workers started fresh: each is this program run again, in worker mode.
//!
//! For a program that cannot fork at `build` (threads holding locks, a
//! running async runtime, a client that breaks across fork), or that wants
//! workers sharing nothing with it. The first line of `main` is where a
//! worker leaves `main`'s path; init arguments cross to each worker once,
//! with serde (here a path, from which each worker builds its own index).
//!
//! ```text
//! cargo run --release --example spawn
//! ```

use std::collections::HashMap;
use std::time::Instant;

use pool_runtime::{worker_init, worker_task, Pool};

/// A worker's state: the words of a text and where they occur, built once
/// per worker from a path (the init is the factory; the index never
/// crosses a process boundary).
struct Index {
    words: HashMap<String, Vec<usize>>,
}

#[worker_init]
fn load(path: &String) -> Result<Index, std::io::Error> {
    let text = std::fs::read_to_string(path)?;
    let mut words: HashMap<String, Vec<usize>> = HashMap::new();
    for (line, text) in text.lines().enumerate() {
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            words.entry(word.to_lowercase()).or_default().push(line + 1);
        }
    }
    Ok(Index { words })
}

/// The lines a word occurs on, and the worker that answered.
#[worker_task]
fn lookup(index: &Index, word: String) -> (String, Vec<usize>, u32) {
    let lines = index.words.get(&word).cloned().unwrap_or_default();
    (word, lines, std::process::id())
}

fn main() -> Result<(), pool_runtime::Error> {
    // A worker started fresh serves its driver from here and never returns.
    pool_runtime::worker_mode();

    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/spawn.rs").to_string();
    let t = Instant::now();
    let pool = Pool::builder().spawn().workers(2).build(load, source)?;
    let built = t.elapsed();
    // The last word is in no line of the file (not even this one).
    let absent = ["no", "where", "near"].concat();
    let queries = ["worker", "serde", "fork", "index", &absent].map(String::from);
    let t = Instant::now();
    let answers = pool.map(lookup, queries)?;
    let took = t.elapsed();
    let mut pids: Vec<u32> = answers.iter().map(|a| a.2).collect();
    pids.sort();
    pids.dedup();
    assert!(pids.iter().all(|&p| p != std::process::id()));
    for (word, lines, _) in &answers {
        println!("{word:>8}: {} lines {lines:?}", lines.len());
    }
    assert!(answers[0].1.len() > 1 && answers[4].1.is_empty());
    println!(
        "spawn: 2 workers started fresh (pids {pids:?}), each indexed examples/spawn.rs once; built in {built:.1?}, {} lookups in {took:.1?}",
        answers.len()
    );
    Ok(())
}
