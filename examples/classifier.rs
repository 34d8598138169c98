//! A classifier that can neither be sent to another thread nor serialized,
//! run over a CSV stream on a pool of processes.
//!
//! The "unpicklable classifier" question: the model is built from `Rc`s and a
//! `RefCell` cache, so it is not `Send`, not `Sync`, not `Serialize`. Each
//! worker builds its own from the model description, which is not `Send`
//! either (an `Rc<str>`): `build` hands it over by fork, never by copy. The
//! rows stream through `imap_unordered`, generated lazily: the whole input
//! never sits in memory.
//!
//! ```text
//! cargo run --release --example classifier
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Instant;

use pool_runtime::{worker_init, worker_task, Pool};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const ROWS: u64 = 200_000;
const WORKERS: usize = 2;

/// Body-mass-index classes, one per line: a label, then the upper bound.
const MODEL: &str = "underweight 18.5
normal 25
overweight 30
obese inf";

struct Rule {
    label: Rc<str>,
    max_bmi: f64,
}

/// The model: labels shared by `Rc` between the rules and a memo of the
/// answers already given. `!Send`, `!Sync`, not `Serialize`.
struct Model {
    rules: Vec<Rule>,
    memo: RefCell<HashMap<(u32, u32), Rc<str>>>,
}

/// Builds a worker's model from the description, after the fork.
#[worker_init]
fn load(spec: &Rc<str>) -> Result<Model, String> {
    let rules = spec
        .lines()
        .map(|line| match line.split_once(' ') {
            Some((label, max)) => Ok(Rule {
                label: label.into(),
                max_bmi: max.parse().map_err(|e| format!("{line:?}: {e}"))?,
            }),
            None => Err(format!("bad rule {line:?}")),
        })
        .collect::<Result<_, _>>()?;
    Ok(Model {
        rules,
        memo: RefCell::new(HashMap::new()),
    })
}

/// Classifies one `id,height_cm,weight_kg` row. Only the line and the label
/// cross processes.
#[worker_task]
fn classify(model: &Model, line: String) -> Result<String, String> {
    let field = |s: Option<&str>| {
        s.and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(|| format!("bad row {line:?}"))
    };
    let mut fields = line.split(',').skip(1);
    let (height, weight) = (field(fields.next())?, field(fields.next())?);
    // The memo stands for what a real model caches between calls.
    let mut memo = model.memo.borrow_mut();
    if let Some(label) = memo.get(&(height, weight)) {
        return Ok(label.to_string());
    }
    let bmi = f64::from(weight) / (f64::from(height) / 100.0).powi(2);
    let rule = model
        .rules
        .iter()
        .find(|r| bmi < r.max_bmi)
        .ok_or_else(|| format!("no rule for BMI {bmi:.1}"))?;
    memo.insert((height, weight), Rc::clone(&rule.label));
    Ok(rule.label.to_string())
}

/// How many distinct rows this worker's memo holds.
#[worker_task]
fn memo_len(model: &Model) -> usize {
    model.memo.borrow().len()
}

/// The CSV rows, made on demand from a fixed seed.
fn csv_rows() -> impl Iterator<Item = String> {
    let mut rng = SmallRng::seed_from_u64(7);
    (0..ROWS).map(move |id| {
        format!(
            "{id},{},{}",
            rng.random_range(140..=200),
            rng.random_range(40..=130)
        )
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec: Rc<str> = Rc::from(MODEL);

    // Sequential: the same functions, called directly.
    let t = Instant::now();
    let model = load(&spec)?;
    let mut expected = BTreeMap::new();
    for line in csv_rows() {
        *expected.entry(classify(&model, line)?).or_insert(0u64) += 1;
    }
    let sequential = t.elapsed();

    // On the pool: labels are counted as they arrive, in whatever order.
    let t = Instant::now();
    let pool = Pool::builder()
        .workers(WORKERS)
        .build(load, Rc::clone(&spec))?;
    let mut counts = BTreeMap::new();
    for label in pool.imap_unordered(classify, csv_rows()) {
        *counts.entry(label??).or_insert(0u64) += 1;
    }
    let parallel = t.elapsed();
    let memos = pool.broadcast(memo_len, ())?;

    println!("{ROWS} CSV rows classified");
    println!("  sequential:    {sequential:>9.1?}");
    println!("  {WORKERS}-worker pool: {parallel:>9.1?} (pool build included)");
    println!("labels: {counts:?}");
    println!("distinct rows memoized per worker: {memos:?}");
    if counts != expected {
        return Err(format!("pool counts differ from sequential: {expected:?}").into());
    }
    Ok(())
}
