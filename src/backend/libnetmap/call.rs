//! Calls into the library: one lock, and the messages of each call.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr};
use std::io;
use std::ptr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::LibNetmap;
use crate::ffi::{self, nmctx};

/// Serializes every call sequence into libnetmap (see the module docs).
static LOCK: Mutex<()> = Mutex::new(());

/// The most messages one call keeps (so a chatty library cannot grow the
/// buffer without bound).
const MAX_MESSAGES: usize = 16;

thread_local! {
    /// The messages libnetmap reported on this thread during the current call.
    static MESSAGES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// The error callback installed into libnetmap's context during a call:
/// records the message for the calling thread instead of printing it.
unsafe extern "C" fn record_message(_ctx: *mut nmctx, msg: *const c_char) {
    let saved = errno();
    if !msg.is_null() {
        // SAFETY: libnetmap passes a NUL-terminated message that is valid
        // for the duration of the callback.
        let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned();
        // Never panic here (this runs inside a C call): a thread being torn
        // down or a re-entrant call just loses the message.
        let _ = MESSAGES.try_with(|m| {
            if let Ok(mut m) = m.try_borrow_mut() {
                if m.len() < MAX_MESSAGES {
                    m.push(text);
                }
            }
        });
    }
    // The library reads `errno` after reporting; keep what it set.
    set_errno(saved);
}

/// The calling thread's `errno`.
pub(super) fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Sets the calling thread's `errno`.
fn set_errno(value: c_int) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: `__errno_location` returns the calling thread's errno slot,
    // valid for the thread's lifetime.
    unsafe {
        *libc::__errno_location() = value;
    }
    #[cfg(any(target_os = "freebsd", target_os = "dragonfly"))]
    // SAFETY: `__error` returns the calling thread's errno slot, valid for
    // the thread's lifetime.
    unsafe {
        *libc::__error() = value;
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "dragonfly"
    )))]
    let _ = value;
}

/// One call sequence into libnetmap: holds [`LOCK`] and routes the messages
/// of the contexts it is given to this thread; undoes both when dropped.
pub(super) struct Call {
    /// Contexts whose callback was replaced, with the callback and verbosity
    /// they had.
    saved: Vec<(*mut nmctx, ffi::nmctx_error_cb, c_int)>,
    _guard: MutexGuard<'static, ()>,
}

impl Call {
    /// Takes the lock and starts recording messages (of the default
    /// context, when the library says which it is).
    pub(super) fn begin(lib: &LibNetmap) -> Call {
        // A panic while holding the lock leaves no state of ours behind it.
        let guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = MESSAGES.try_with(|m| m.borrow_mut().clear());
        let mut call = Call {
            saved: Vec::new(),
            _guard: guard,
        };
        if let Some(get) = lib.nmctx_get {
            // SAFETY: `nmctx_get` takes no arguments and returns the
            // library's default context (static in the library), or null.
            let ctx = unsafe { get() };
            // SAFETY: a context the library handed out stays valid while it
            // is loaded, which `lib` guarantees.
            unsafe { call.capture(ctx) };
        }
        call
    }

    /// Routes the messages of `ctx` to this call, until it ends.
    ///
    /// # Safety
    /// `ctx` must be null or point at a live `nmctx` of the library, valid
    /// until this call ends.
    pub(super) unsafe fn capture(&mut self, ctx: *mut nmctx) {
        if ctx.is_null() || self.saved.iter().any(|s| s.0 == ctx) {
            return;
        }
        // SAFETY: `ctx` is a live context (caller); the library touches it
        // only inside calls, and every call of ours holds `LOCK`. Fields are
        // accessed through raw pointers, never a reference.
        unsafe {
            let error = ptr::addr_of!((*ctx).error).read();
            let verbose = ptr::addr_of!((*ctx).verbose).read();
            self.saved.push((ctx, error, verbose));
            ptr::addr_of_mut!((*ctx).error).write(Some(record_message));
            // A silent context reports nothing; we want the messages.
            ptr::addr_of_mut!((*ctx).verbose).write(verbose.max(1));
        }
    }

    /// The messages recorded so far, joined with "; ".
    pub(super) fn messages(&self) -> String {
        MESSAGES.try_with(|m| m.borrow().join("; ")).unwrap_or_default()
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        for &(ctx, error, verbose) in self.saved.iter().rev() {
            // SAFETY: `capture`'s contract keeps `ctx` live until now, and
            // `LOCK` is still held (the guard drops after this body).
            unsafe {
                ptr::addr_of_mut!((*ctx).error).write(error);
                ptr::addr_of_mut!((*ctx).verbose).write(verbose);
            }
        }
        let _ = MESSAGES.try_with(|m| m.borrow_mut().clear());
    }
}
