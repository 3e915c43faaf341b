//! `Netmap::poll` keeps its deadline on the embedded kernel: a stream of
//! signals neither cuts the wait short nor restarts it, and a timeout under
//! a millisecond still waits.

#[path = "support/signals.rs"]
mod signals;

use std::time::{Duration, Instant};

use netmap_rs::prelude::*;

#[test]
fn poll_under_signals_returns_at_its_deadline() {
    let master = NetmapBuilder::new("emu:sigpoll{1").build().unwrap();
    let idle = NetmapBuilder::new("emu:sigpoll}1").build().unwrap();
    let ((ready, waited), sent) =
        signals::interrupted(Duration::from_millis(20), Duration::from_secs(10), move || {
            let t0 = Instant::now();
            let ready = idle.poll(Some(Duration::from_millis(300))).unwrap();
            (ready, t0.elapsed())
        });
    drop(master);
    assert!(!ready, "nothing was sent");
    assert!(sent >= 5, "only {sent} signals were sent");
    assert!(
        waited >= Duration::from_millis(300),
        "returned early, after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "took {waited:?}");
}

#[test]
fn sub_millisecond_poll_waits() {
    let _master = NetmapBuilder::new("emu:usecpoll{1").build().unwrap();
    let idle = NetmapBuilder::new("emu:usecpoll}1").build().unwrap();
    for _ in 0..5 {
        let t0 = Instant::now();
        assert!(!idle.poll(Some(Duration::from_micros(500))).unwrap());
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_micros(500), "returned after {waited:?}");
        assert!(waited < Duration::from_secs(1), "took {waited:?}");
    }
}
