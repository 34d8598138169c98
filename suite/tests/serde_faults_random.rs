//! Randomized: among 10,000 inputs, a random few are poisoned with a random
//! failure (exit, signal, abort, panic, `Err`) at a random stage (input
//! encode and decode, task, result encode and decode), under a random
//! chunking, on a fresh or a warm pool. Exactly the poisoned inputs fail,
//! each with the outcome its failure calls for; every other input gets its
//! own result; exactly one worker dies per deadly poison; the pool serves
//! on. Seeds: `POOL_FAULT_SEEDS=1,2,3` (a few fixed ones by default).

mod faults;

use std::time::Duration;

use faults::{deaths, imap_and_check, probe, worker, Fault, Input, Stage, Watchdog};
use pool_runtime::Pool;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const INPUTS: u64 = 10_000;

fn seeds() -> Vec<u64> {
    match std::env::var("POOL_FAULT_SEEDS") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("POOL_FAULT_SEEDS: numbers, comma-separated")
            })
            .collect(),
        Err(_) => vec![1, 2, 3, 4, 5, 6],
    }
}

fn poison(rng: &mut SmallRng) -> (Stage, Fault) {
    const STAGES: [Stage; 5] = [
        Stage::InputEncode,
        Stage::InputDecode,
        Stage::Task,
        Stage::ResultEncode,
        Stage::ResultDecode,
    ];
    const FAULTS: [Fault; 5] = [
        Fault::Exit,
        Fault::Segv,
        Fault::Abort,
        Fault::Panic,
        Fault::Err,
    ];
    loop {
        let stage = STAGES[rng.random_range(0..STAGES.len())];
        let fault = FAULTS[rng.random_range(0..FAULTS.len())];
        // What runs in the driver may not end the process: it is the test's.
        let in_driver = matches!(stage, Stage::InputEncode | Stage::ResultDecode);
        if !(in_driver && fault.kills()) {
            return (stage, fault);
        }
    }
}

#[test]
fn exactly_the_poisoned_inputs_fail_each_as_it_should() {
    for seed in seeds() {
        let mut rng = SmallRng::seed_from_u64(seed);
        let chunk = match rng.random_range(0..3) {
            0 => None,
            1 => Some(rng.random_range(1..=8)),
            _ => Some(rng.random_range(9..=400)),
        };
        let warm = rng.random_bool(0.5);
        let poisoned = rng.random_range(1..=12);
        let mut inputs: Vec<Input> = (0..INPUTS).map(Input::clean).collect();
        for _ in 0..poisoned {
            let at = rng.random_range(0..INPUTS) as usize;
            let (stage, fault) = poison(&mut rng);
            inputs[at] = Input::poisoned(at as u64, stage, fault);
        }
        let what = format!("seed {seed}: chunk {chunk:?}, warm {warm}");
        let deadly = inputs
            .iter()
            .filter(|i| i.poison.is_some_and(|(_, f)| f.kills()))
            .count() as u32;

        let _watchdog = Watchdog::new(Duration::from_secs(60), "a randomly poisoned map");
        let mut b = Pool::builder().workers(2);
        if let Some(n) = chunk {
            b = b.chunk_size(n);
        }
        let pool = b.build(worker, ()).unwrap();
        if warm {
            assert_eq!(
                pool.map(probe, (0..777).map(Input::clean)).unwrap().len(),
                777
            );
        }
        imap_and_check(&pool, &inputs, &what);
        assert_eq!(deaths(&pool), deadly, "{what}: one death per deadly poison");
        let again = pool.map(probe, (0..1000).map(Input::clean)).unwrap();
        assert_eq!(again.len(), 1000, "{what}: the pool serves on");
    }
}
