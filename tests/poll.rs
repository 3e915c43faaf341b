//! `Netmap::poll` keeps its deadline on the embedded kernel: a stream of
//! signals neither cuts the wait short nor restarts it, and a timeout under
//! a millisecond still waits.

use std::time::Duration;

use netmap_rs::prelude::*;
use netmap_test_support::signals;

#[test]
fn poll_under_signals_returns_at_its_deadline() {
    let _master = NetmapBuilder::new("emu:sigpoll{1").build().unwrap();
    let idle = NetmapBuilder::new("emu:sigpoll}1").build().unwrap();
    signals::poll_keeps_its_deadline(move |t| idle.poll(t), Duration::from_secs(10));
}

#[test]
fn sub_millisecond_poll_waits() {
    let _master = NetmapBuilder::new("emu:usecpoll{1").build().unwrap();
    let idle = NetmapBuilder::new("emu:usecpoll}1").build().unwrap();
    signals::sub_millisecond_poll_waits(|t| idle.poll(t));
}
