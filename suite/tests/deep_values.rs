//! A deeply nested output is an error for its input, never a stack overflow
//! in the driver (found by the `codec` fuzz target).

use pool_runtime::{worker_task, ErrorKind, Pool};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug)]
struct Node {
    next: Option<Box<Node>>,
}

/// A list `depth` nodes long: `depth` levels of nesting on the wire.
#[worker_task]
fn chain(depth: u32) -> Node {
    let mut node = Node { next: None };
    for _ in 0..depth {
        node = Node {
            next: Some(Box::new(node)),
        };
    }
    node
}

#[test]
fn a_value_nested_past_the_limit_fails_alone() {
    let pool: Pool<()> = Pool::builder().workers(1).build(|_: &()| (), ()).unwrap();
    assert!(pool.apply(chain, 10).is_ok());
    let e = pool.apply(chain, 1000).unwrap_err();
    // postcard reports the depth limit as a generic deserialization error.
    assert!(matches!(e.kind(), ErrorKind::Codec(_)), "{e}");
    // The driver lives on, and so does the pool.
    assert!(pool.apply(chain, 10).is_ok());
}
