//! The private channel between the driver and one worker: a `socketpair`,
//! length-prefixed frames with a hard size limit, fixed message headers,
//! and length-delimited items in the bodies.

pub(crate) mod frame;
pub(crate) mod item;
pub(crate) mod message;
pub(crate) mod outcome;
