//! A log-processing pipeline: parse a line, enrich it from each worker's own
//! lookup table, format the result. The three stages run fused in one worker
//! per line, so the parsed record and the enriched one never leave it; a
//! line that does not parse ends with the parser's error, like `?`.
//!
//! The same stages as three chained `map` calls are timed for comparison:
//! there every intermediate value crosses to the driver and back.
//!
//! ```text
//! cargo run --release --example pipeline
//! ```

use std::collections::HashMap;
use std::time::Instant;

use pool_runtime::{worker_init, worker_task, ErrorKind, Pool};
use serde::{Deserialize, Serialize};

const LINES: usize = 200_000;
const WORKERS: usize = 2;
/// Every this many lines, one is garbage.
const BAD_EVERY: usize = 1_000;

/// One worker's lookup table: user id → country. Built once per worker.
struct Geo {
    country: HashMap<u32, &'static str>,
}

#[worker_init]
fn load(users: &u32) -> Geo {
    const COUNTRIES: [&str; 5] = ["fr", "de", "jp", "br", "ca"];
    let country = (0..*users)
        .map(|u| (u, COUNTRIES[u as usize % COUNTRIES.len()]))
        .collect();
    Geo { country }
}

#[derive(Debug, Serialize, Deserialize)]
struct Hit {
    user: u32,
    path: String,
    millis: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Enriched {
    hit: Hit,
    country: String,
    slow: bool,
}

/// `"<user> <path> <millis>"` → a [`Hit`], or why not.
#[worker_task]
fn parse(line: String) -> Result<Hit, String> {
    let mut f = line.split(' ');
    let (Some(user), Some(path), Some(millis), None) = (f.next(), f.next(), f.next(), f.next())
    else {
        return Err(format!("not three fields: {line:?}"));
    };
    Ok(Hit {
        user: user.parse().map_err(|e| format!("user {user:?}: {e}"))?,
        path: path.to_string(),
        millis: millis
            .parse()
            .map_err(|e| format!("millis {millis:?}: {e}"))?,
    })
}

#[worker_task]
fn enrich(geo: &Geo, hit: Hit) -> Enriched {
    let country = geo
        .country
        .get(&hit.user)
        .copied()
        .unwrap_or("??")
        .to_string();
    Enriched {
        slow: hit.millis > 900,
        hit,
        country,
    }
}

#[worker_task]
fn format_row(e: Enriched) -> String {
    let flag = if e.slow { " SLOW" } else { "" };
    format!("{} {} {}ms{flag}", e.country, e.hit.path, e.hit.millis)
}

fn line(i: usize) -> String {
    if i % BAD_EVERY == 7 {
        return format!("garbage-{i}");
    }
    format!("{} /page/{} {}", i % 5_000, i % 97, (i * 37) % 1000)
}

fn main() -> Result<(), pool_runtime::Error> {
    let pool = Pool::builder().workers(WORKERS).build(load, 5_000)?;
    let chain = pool.pipeline(parse).then(enrich).then(format_row);

    let t = Instant::now();
    let (mut rows, mut failed, mut slow) = (0usize, 0usize, 0usize);
    let mut first_error = None;
    for (i, outcome) in chain.imap((0..LINES).map(line)).enumerate() {
        match outcome {
            Ok(row) => {
                rows += 1;
                slow += row.ends_with("SLOW") as usize;
                if i == 0 {
                    println!("first row: {row}");
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::Failed(_)) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    let fused = t.elapsed();
    println!(
        "pipeline parse -> enrich -> format_row on {WORKERS} workers: {LINES} lines in {:.1} ms ({rows} rows, {slow} slow, {failed} rejected)",
        fused.as_secs_f64() * 1e3
    );
    if let Some(e) = &first_error {
        println!("first rejected line: {e}");
    }

    // The same work as three chained maps: every intermediate value goes to
    // the driver and back.
    let t = Instant::now();
    let hits: Vec<Hit> = pool
        .map(parse, (0..LINES).map(line))?
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let enriched = pool.map(enrich, hits)?;
    let chained_rows = pool.map(format_row, enriched)?;
    let chained = t.elapsed();
    println!(
        "three chained maps: {:.1} ms ({} rows): the fused pipeline took {:.2}x less time",
        chained.as_secs_f64() * 1e3,
        chained_rows.len(),
        chained.as_secs_f64() / fused.as_secs_f64()
    );

    let expected_bad = (0..LINES).filter(|i| i % BAD_EVERY == 7).count();
    let ok = failed == expected_bad && rows == LINES - expected_bad && chained_rows.len() == rows;
    if !ok {
        eprintln!("FAILED: expected {expected_bad} rejected lines and the rest as rows");
        std::process::exit(1);
    }
    println!("ok");
    Ok(())
}
