//! The wire, all of it: the private channel between the driver and one
//! worker (a `socketpair`, length-prefixed frames with a hard size limit,
//! fixed message headers, length-delimited items in the bodies), and the
//! control packets between the driver and the fork server.

pub(crate) mod control;
pub mod hello;
pub mod frame;
pub mod item;
pub mod message;
pub mod outcome;
pub mod ring;
