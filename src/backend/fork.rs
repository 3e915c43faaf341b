//! A port belongs to the process that opened it.
//!
//! A child made by `fork(2)` inherits the parent's descriptors and mappings:
//! kernel ports (and AF_PACKET rings) are `MAP_SHARED`, so a ring handle that
//! the child inherited alive would be a second user of the parent's rings,
//! writing slots and buffers the parent holds as `&mut`. So the crate counts
//! forks (a `pthread_atfork` child handler, installed when the first port
//! opens) and, in the child, replaces every shared region of a live port with
//! private zero pages at the same address before any code of the child runs:
//! what the child's inherited handles touch from then on is its own memory,
//! and the port's calls that reach a backend (ring handles, sync, poll,
//! inject) answer [`Error::Forked`](crate::Error::Forked).
//!
//! `fork` done by a raw `syscall(SYS_clone)` skips the handlers and is not
//! covered; `vfork` and `posix_spawn` run no Rust code of the child.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use crate::backend::lock;

/// How many forks this process descends through since it started (0 in the
/// first process; bumped by the child handler).
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Shared regions of live ports, as `(base, len)`, to privatize in a child.
static SHARED: Mutex<Ranges> = Mutex::new(Vec::new());

/// `(base, len)` of each region.
type Ranges = Vec<(usize, usize)>;

static INSTALL: Once = Once::new();

thread_local! {
    /// `SHARED`'s lock, held by the forking thread across `fork`, so the
    /// child sees a consistent list (the other threads do not exist there).
    static HELD: RefCell<Option<MutexGuard<'static, Ranges>>> = const { RefCell::new(None) };
}

extern "C" fn prepare() {
    let guard = lock(&SHARED);
    HELD.with(|h| *h.borrow_mut() = Some(guard));
}

extern "C" fn parent() {
    HELD.with(|h| h.borrow_mut().take());
}

extern "C" fn child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    HELD.with(|h| {
        if let Some(list) = h.borrow_mut().take() {
            for &(base, len) in list.iter() {
                // SAFETY: `base..base+len` is a live port's region in this
                // (child) process; replacing it with private zero pages at
                // the same address keeps every pointer into it valid while
                // cutting it off from the parent's rings. Only the fork's
                // calling thread exists, and it is here, so no access races.
                // If the kernel refused (out of memory), the child keeps the
                // shared pages; its ports still refuse every backend call.
                unsafe {
                    libc::mmap(
                        base as *mut libc::c_void,
                        len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                        -1,
                        0,
                    );
                }
            }
        }
    });
}

/// The process a port was opened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner(u64);

impl Owner {
    /// This process; installs the fork handlers on first use.
    pub(crate) fn current() -> Owner {
        INSTALL.call_once(|| {
            // SAFETY: the three handlers are `extern "C"` functions that live
            // for the whole program; registering them has no other
            // precondition. A failure (ENOMEM) leaves forks uncounted, which
            // `is_current` cannot detect; it does not happen in practice.
            unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        });
        Owner(GENERATION.load(Ordering::Relaxed))
    }

    /// Whether this is still the process that opened the port.
    #[inline]
    pub(crate) fn is_current(self) -> bool {
        GENERATION.load(Ordering::Relaxed) == self.0
    }
}

/// A shared region made private in forked children while this lives.
#[derive(Debug)]
pub(crate) struct Privatize {
    range: (usize, usize),
}

impl Privatize {
    /// Registers `base..base+len`, the region of a port opened in this process.
    pub(crate) fn new(base: *mut u8, len: usize) -> Privatize {
        let range = (base as usize, len);
        lock(&SHARED).push(range);
        Privatize { range }
    }
}

impl Drop for Privatize {
    fn drop(&mut self) {
        let mut list = lock(&SHARED);
        if let Some(i) = list.iter().position(|&r| r == self.range) {
            list.swap_remove(i);
        }
    }
}
