//! Helpers shared by netmap-rs's integration tests, benchmarks and examples
//! (a dev-dependency of `netmap-rs`; not published). Nothing here knows
//! netmap-rs's types, so this crate depends on no netmap crate.
//!
//! - [`packets`]: the one reproducible generator and packet checksums;
//! - [`fork`]: running a check in a forked child;
//! - [`netns`]: a network namespace with a veth pair, for real packets;
//! - [`signals`]: waits under a stream of signals, and the poll-deadline
//!   checks every backend must pass.

pub mod examples;
pub mod fork;
pub mod netns;
pub mod packets;
pub mod signals;
pub mod skip;
