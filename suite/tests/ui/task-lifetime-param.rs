use pool_runtime::worker_task;

pub struct Parser<'a> {
    text: &'a str,
}

#[worker_task]
fn find<'a>(p: &mut Parser<'a>, needle: String) -> bool {
    p.text.contains(&needle)
}

fn main() {}
