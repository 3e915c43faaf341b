//! Running a wait under a stream of signals, with a limit on how long it
//! may take.
//!
//! [`interrupted`] runs a closure on a thread of its own while another
//! thread sends that thread `SIGALRM` at a fixed interval. The handler does
//! nothing and is installed without `SA_RESTART`, so every signal that lands
//! during a blocking call makes it fail with `EINTR`, as it does in a
//! program with its own signal handlers. A closure that never returns fails
//! the test after the limit instead of hanging the suite.
//! [`poll_keeps_its_deadline`] and [`sub_millisecond_poll_waits`] are the
//! checks every backend's `Netmap::poll` must pass; they take the poll as a
//! closure (`|timeout| port.poll(timeout)`).

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use std::os::unix::thread::JoinHandleExt;

/// The handler: its only effect is to interrupt the call it lands in.
extern "C" fn ignore(_: libc::c_int) {}

/// Installs the no-op handler for `SIGALRM`, without `SA_RESTART`.
fn install() {
    // SAFETY: a zeroed `sigaction` is a valid "no flags, empty mask" value;
    // the handler does nothing, so it is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = ignore as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()), 0);
    }
}

/// Runs `f` on a new thread, interrupted by `SIGALRM` every `every`; panics
/// if it has not returned within `limit`. Returns what `f` returned and how
/// many signals were sent while it ran.
pub fn interrupted<T: Send + 'static>(
    every: Duration,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, u32) {
    install();
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let _ = tx.send(f());
    });
    let target = worker.as_pthread_t();
    let stop = Arc::new(AtomicBool::new(false));
    let signaller = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(Ordering::Acquire) {
                thread::sleep(every);
                if stop.load(Ordering::Acquire) {
                    break;
                }
                // SAFETY: `target` names the worker, which is not joined
                // before this thread stops, so the id stays valid.
                if unsafe { libc::pthread_kill(target, libc::SIGALRM) } == 0 {
                    sent += 1;
                }
            }
            sent
        })
    };
    let result = rx.recv_timeout(limit);
    stop.store(true, Ordering::Release);
    let sent = signaller.join().unwrap();
    match result {
        Ok(v) => {
            worker.join().unwrap();
            (v, sent)
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the wait had not returned after {limit:?} ({sent} signals sent)")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // `f` panicked: report its panic.
            match worker.join() {
                Err(p) => std::panic::resume_unwind(p),
                Ok(()) => unreachable!("the worker returned without sending"),
            }
        }
    }
}

/// `poll(Some(300 ms))`, the poll of a port with nothing to read, under
/// `SIGALRM` every 20 ms: returns `Ok(false)` at its deadline, neither cut
/// short nor restarted by the signals, within `limit`.
pub fn poll_keeps_its_deadline<E: Debug>(
    poll: impl FnOnce(Option<Duration>) -> Result<bool, E> + Send + 'static,
    limit: Duration,
) {
    let ((ready, waited), sent) = interrupted(Duration::from_millis(20), limit, move || {
        let t0 = Instant::now();
        let ready = poll(Some(Duration::from_millis(300))).unwrap();
        (ready, t0.elapsed())
    });
    assert!(!ready, "nothing was sent");
    assert!(sent >= 5, "only {sent} signals were sent");
    assert!(
        waited >= Duration::from_millis(300),
        "returned early, after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "took {waited:?}");
}

/// A timeout under a millisecond given to `poll`, the poll of an idle port,
/// waits for it, rather than rounding to a zero-millisecond wait that
/// returns at once.
pub fn sub_millisecond_poll_waits<E: Debug>(mut poll: impl FnMut(Option<Duration>) -> Result<bool, E>) {
    for _ in 0..5 {
        let t0 = Instant::now();
        assert!(!poll(Some(Duration::from_micros(500))).unwrap());
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_micros(500), "returned after {waited:?}");
        assert!(waited < Duration::from_secs(1), "took {waited:?}");
    }
}
