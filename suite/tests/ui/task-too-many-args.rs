use pool_runtime::worker_task;

pub struct Mixer {
    runs: u64,
}

#[worker_task]
fn mix(m: &mut Mixer, a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8) -> u64 {
    m.runs += 1;
    [a, b, c, d, e, f, g].iter().map(|&x| u64::from(x)).sum()
}

fn main() {}
