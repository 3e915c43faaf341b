//! Helpers shared by [netmap-rs](https://crates.io/crates/netmap-rs)'s
//! integration tests, benchmarks and examples: its dev-dependency,
//! published so that the tests of the packaged `netmap-rs` build. Nothing
//! here knows netmap-rs's types, so this crate depends on no netmap crate.
//!
//! - [`packets`]: the one reproducible generator and packet checksums;
//! - [`fork`]: running a check in a forked child;
//! - [`netns`]: a network namespace with a veth pair, for real packets;
//! - [`signals`]: waits under a stream of signals, and the poll-deadline
//!   checks every backend must pass;
//! - [`examples`]: the example binaries, as the tests run them;
//! - [`skip`]: a test that cannot run here says why, and CI cannot skip it;
//! - [`bench`]: the benchmarks' command line.

pub mod bench;
pub mod examples;
pub mod fork;
pub mod netns;
pub mod packets;
pub mod signals;
pub mod skip;
