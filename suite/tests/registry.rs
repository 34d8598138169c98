//! Registration by stable name: every `#[worker_task]` and `#[worker_exit]`
//! is in the registry under `module::path::fn_name`, found by name (a worker
//! that is not a fork of the driver) and by value (the driver), and the
//! annotated functions stay plain functions.

use std::any::Any;

use pool_runtime::{codec, registry, worker_exit, worker_init, worker_task, WorkerInfo};

pub struct Counter {
    seen: u64,
}

#[worker_init]
fn start(base: &u64, me: WorkerInfo) -> Counter {
    Counter {
        seen: *base + me.index() as u64,
    }
}

mod a {
    use super::Counter;
    use pool_runtime::{worker_exit, worker_task};

    #[worker_task]
    pub fn work(c: &mut Counter, x: u64) -> u64 {
        c.seen += 1;
        x + 1
    }

    #[worker_exit]
    pub fn report(c: Counter) -> u64 {
        c.seen
    }
}

mod b {
    use pool_runtime::{worker_exit, worker_task};

    #[worker_task]
    pub fn work(x: u64) -> u64 {
        x * 2
    }

    #[worker_exit]
    pub fn report(c: super::Counter) -> String {
        format!("saw {}", c.seen)
    }
}

#[worker_task]
fn r#match(x: u64) -> u64 {
    x
}

fn unannotated(x: u64) -> u64 {
    x
}

fn name(rest: &str) -> String {
    format!("{}::{rest}", module_path!())
}

#[test]
fn same_fn_name_in_two_modules_registers_twice() {
    let a = registry::task_by_name(concat!(module_path!(), "::a::work"))
        .expect("a::work is registered");
    let b = registry::task_by_name(concat!(module_path!(), "::b::work"))
        .expect("b::work is registered");
    assert_eq!(a.name, name("a::work"));
    assert_eq!(b.name, name("b::work"));
    assert_eq!((a.type_id)(), Any::type_id(&a::work));
    assert_eq!((b.type_id)(), Any::type_id(&b::work));
    let names: Vec<&str> = registry::task_names().collect();
    assert!(
        names.contains(&a.name) && names.contains(&b.name),
        "{names:?}"
    );
}

#[test]
fn task_name_is_module_path_and_fn_name() {
    assert_eq!(
        registry::task_name(a::work),
        Some(concat!(module_path!(), "::a::work"))
    );
    assert_eq!(
        registry::task_name(b::work),
        Some(concat!(module_path!(), "::b::work"))
    );
    // A raw identifier registers under the name it spells.
    assert_eq!(
        registry::task_name(r#match),
        Some(concat!(module_path!(), "::match"))
    );
}

#[test]
fn unannotated_fn_is_not_registered() {
    assert_eq!(registry::task_name(unannotated), None);
    assert!(registry::task_by_name(&name("unannotated")).is_none());
    // Nor are inits: they are passed to `build` by value, never dispatched by name.
    assert!(registry::task_by_name(&name("start")).is_none());
    assert!(registry::exit_by_name(&name("start")).is_none());
}

#[test]
fn exit_hooks_are_found_by_name() {
    let a = registry::exit_by_name(concat!(module_path!(), "::a::report"))
        .expect("a::report is registered");
    let b = registry::exit_by_name(concat!(module_path!(), "::b::report"))
        .expect("b::report is registered");
    assert_eq!(a.name, name("a::report"));
    assert_eq!(b.name, name("b::report"));
    assert_eq!((a.type_id)(), Any::type_id(&a::report));
    // Tasks and exit hooks live in separate tables.
    assert!(registry::exit_by_name(&name("a::work")).is_none());
    assert!(registry::task_by_name(&name("a::report")).is_none());
}

#[test]
fn exit_glue_consumes_the_state_and_encodes_the_result() {
    let entry = registry::exit_by_name(&name("b::report")).unwrap();
    let mut out = Vec::new();
    (entry.run)(Box::new(Counter { seen: 3 }), &mut out).unwrap();
    // One outcome item: a head byte (status in the low 3 bits, 0: the hook
    // returned; the value's length above them), then the value.
    assert_eq!(out[0] & 0b111, 0, "status: the hook returned");
    assert_eq!((out[0] >> 3) as usize, out.len() - 1, "length of the value");
    let (text, rest): (String, _) = codec::decode(&out[1..]).unwrap();
    assert_eq!((text.as_str(), rest.len()), ("saw 3", 0));
}

#[test]
fn exit_glue_rejects_a_state_of_another_type() {
    let entry = registry::exit_by_name(&name("a::report")).unwrap();
    let err = (entry.run)(Box::new("not a counter"), &mut Vec::new()).unwrap_err();
    assert!(err.contains("Counter"), "{err}");
}

#[test]
fn annotated_functions_stay_plain_functions() {
    let mut c = start(&10, WorkerInfo::new(2, 0));
    assert_eq!(c.seen, 12);
    assert_eq!(a::work(&mut c, 1), 2);
    assert_eq!(c.seen, 13);
    assert_eq!(b::work(4), 8);
    assert_eq!(a::report(c), 13);
    assert_eq!(b::report(Counter { seen: 1 }), "saw 1");
}

#[test]
fn a_binding_named_like_a_task_compiles() {
    let work = 1;
    let r#match = work + 1;
    assert_eq!(r#match, 2);
}

#[test]
fn tasks_nested_in_a_function_register() {
    #[worker_task]
    fn nested_square(x: u64) -> u64 {
        x * x
    }

    #[worker_exit]
    fn nested_report(c: Counter) -> u64 {
        c.seen
    }

    // module_path!() names the module, not the enclosing function.
    assert_eq!(
        registry::task_name(nested_square),
        Some(concat!(module_path!(), "::nested_square"))
    );
    assert!(registry::exit_by_name(&name("nested_report")).is_some());
    assert_eq!(nested_square(3), 9);
    assert_eq!(nested_report(Counter { seen: 4 }), 4);
}

/// Two nested fns with one stable name: by-name lookup finds neither, and
/// each still runs on a pool (the pool goes by type, not by name).
#[test]
fn a_shared_stable_name_finds_neither() {
    fn first() -> u64 {
        #[worker_task]
        fn twin(x: u64) -> u64 {
            x + 1
        }
        let pool = pool_runtime::Pool::builder()
            .workers(1)
            .build(|_: &()| (), ())
            .unwrap();
        pool.apply(twin, 1).unwrap()
    }
    fn second() -> u64 {
        #[worker_task]
        fn twin(x: u64) -> u64 {
            x + 2
        }
        let pool = pool_runtime::Pool::builder()
            .workers(1)
            .build(|_: &()| (), ())
            .unwrap();
        pool.apply(twin, 1).unwrap()
    }
    assert_eq!((first(), second()), (2, 3));
    let twins: Vec<_> = registry::task_names()
        .filter(|n| n.ends_with("::twin"))
        .collect();
    assert_eq!(
        twins,
        [name("twin"), name("twin")],
        "both registered under one name"
    );
    assert!(registry::task_by_name(&name("twin")).is_none());
}
