//! SIGINT and SIGTERM taken by a thread of the program's own, as the
//! examples that stop cleanly take them: block both in every thread, then
//! wait for them in one.

use std::io;
use std::mem::MaybeUninit;
use std::ptr;
use std::time::Duration;

/// Blocks SIGINT and SIGTERM in the calling thread (and in the threads it
/// starts afterwards); returns the set for [`wait_signal`].
pub fn block_signals() -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` is writable memory for one sigset_t, which sigemptyset
    // initialises.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: `set` was initialised by sigemptyset just above.
    let mut set = unsafe { set.assume_init() };
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `set` is an initialised sigset_t; `sig` is a valid signal.
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    // SAFETY: `set` is an initialised sigset_t; a null old-set pointer is
    // allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(set)
}

/// Waits up to `timeout` for a signal of `set` (which must be blocked);
/// returns it, or `None` on timeout or interruption.
pub fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are valid for the call; the siginfo pointer may
    // be null.
    let sig = unsafe { libc::sigtimedwait(set, ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}
