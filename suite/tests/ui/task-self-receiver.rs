use pool_runtime::worker_task;

pub struct Classifier {
    hits: u64,
}

impl Classifier {
    #[worker_task]
    fn classify(&mut self, row: u64) -> bool {
        self.hits += 1;
        row % 2 == 0
    }
}

fn main() {}
