// The insights' `debug_input` glue: the input's `Debug` text when its type
// has one (one argument, a tuple of several, `()` for none), `None` when any
// part lacks it; never a compile error, never a warning.
#![deny(warnings)]

use pool_runtime::registry::{task_by_name, task_name, task_names};
use pool_runtime::{codec, worker_task};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Opaque(u32);

#[derive(Debug, Serialize, Deserialize)]
pub struct Shown(u32);

#[worker_task]
fn opaque(x: Opaque) -> u32 {
    x.0
}

#[worker_task]
fn shown(x: Shown) -> u32 {
    x.0
}

#[worker_task]
fn pair(a: u32, b: String) -> usize {
    a as usize + b.len()
}

#[worker_task]
fn mixed(a: u32, b: Opaque) -> u32 {
    a + b.0
}

#[worker_task]
fn nothing() -> u32 {
    1
}

fn glue<T: Serialize>(name: &str, input: &T) -> Option<String> {
    let suffix = format!("::{name}");
    let full = task_names().find(|n| n.ends_with(&suffix)).expect(name);
    let entry = task_by_name(full).unwrap();
    let mut bytes = Vec::new();
    codec::encode(input, &mut bytes).unwrap();
    (entry.debug_input)(&bytes)
}

fn main() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Local {
        x: u8,
    }

    #[worker_task]
    fn local(l: Local) -> u8 {
        l.x
    }

    assert_eq!(glue("opaque", &Opaque(1)), None);
    assert_eq!(glue("shown", &Shown(2)).as_deref(), Some("Shown(2)"));
    assert_eq!(glue("pair", &(3u32, "x".to_string())).as_deref(), Some("(3, \"x\")"));
    assert_eq!(glue("mixed", &(3u32, Opaque(4))), None);
    assert_eq!(glue("nothing", &()).as_deref(), Some("()"));
    assert_eq!(glue("local", &Local { x: 5 }).as_deref(), Some("Local { x: 5 }"));
    // Bytes that do not decode: no text, no panic.
    let entry = task_by_name(task_name(shown).unwrap()).unwrap();
    assert_eq!((entry.debug_input)(&[]), None);
    let _ = (opaque, shown, pair, mixed, nothing, local);
}
