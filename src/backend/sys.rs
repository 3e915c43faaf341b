//! Syscall helpers: the result convention of `libc` calls, retrying on
//! `EINTR`, waiting until a deadline, the page size and owned mappings.
//!
//! A wait that a signal interrupts is retried with the time that remains,
//! never with the whole timeout again: a caller that asked for one second
//! gets one second even if a signal arrives every 50 ms.

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::{self, NonNull};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// `Ok(r)` for a non-negative result, else `errno`: the convention of the
/// calls that return an `int` or a `ssize_t`.
pub(crate) fn cvt<T: Copy + PartialOrd + From<i8>>(r: T) -> io::Result<T> {
    if r < T::from(0) {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Runs `f` again for as long as it fails with `EINTR`.
///
/// For calls that have no timeout (a sync, a send): repeating one is what
/// its caller wants. A call that waits uses [`wait_until`] instead.
pub(crate) fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// When a wait gives up: at an instant, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// `timeout` from now; `None`, or a timeout too long to represent,
    /// never passes.
    pub(crate) fn after(timeout: Option<Duration>) -> Deadline {
        Deadline(timeout.and_then(|t| Instant::now().checked_add(t)))
    }

    /// The instant it passes, if any.
    pub(crate) fn instant(self) -> Option<Instant> {
        self.0
    }

    /// Whether it has passed.
    pub(crate) fn passed(self) -> bool {
        self.0.is_some_and(|d| Instant::now() >= d)
    }

    /// The timeout argument of `poll(2)` and `epoll_wait(2)` for the time
    /// left: -1 for never, 0 once passed, else the milliseconds left rounded
    /// *up* (so that 500 µs left waits 1 ms, not 0 ms, which would return at
    /// once and make a caller's loop spin), at most `c_int::MAX`.
    pub(crate) fn poll_ms(self) -> c_int {
        let Some(d) = self.0 else {
            return -1;
        };
        let left = d.saturating_duration_since(Instant::now());
        let ms = left.as_nanos().div_ceil(1_000_000);
        c_int::try_from(ms).unwrap_or(c_int::MAX)
    }
}

/// Calls `wait` with the `poll(2)` timeout left until `deadline`, and again
/// with what is left then for as long as it fails with `EINTR`.
pub(crate) fn wait_until<T>(
    deadline: Deadline,
    mut wait: impl FnMut(c_int) -> io::Result<T>,
) -> io::Result<T> {
    retry(|| wait(deadline.poll_ms()))
}

/// `poll` as the C library declares it.
pub(crate) type PollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int;

/// `poll(2)` on one descriptor until an event or `deadline`, retried on
/// `EINTR` with the time left; returns `revents`, or 0 on timeout.
pub(crate) fn poll_fd(fd: BorrowedFd<'_>, events: i16, deadline: Deadline) -> io::Result<i16> {
    // SAFETY: `libc::poll` is `poll(2)` itself, and `fd` is a live
    // descriptor for the duration of the borrow.
    unsafe { poll_with(libc::poll, fd.as_raw_fd(), events, deadline) }
}

/// [`poll_fd`] through another implementation of `poll` (a library's own).
///
/// # Safety
/// `poll` must behave as `poll(2)` does on a one-entry array (read the
/// entry, write its `revents`, return the count or -1 with `errno` set) and
/// stay callable during the call; `fd` must stay open during the call.
pub(crate) unsafe fn poll_with(poll: PollFn, fd: c_int, events: i16, deadline: Deadline) -> io::Result<i16> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let n = wait_until(deadline, |ms| {
        pfd.revents = 0;
        // SAFETY: `pfd` is one live, writable pollfd and the count is 1;
        // the caller vouches for `poll` and `fd`.
        cvt(unsafe { poll(&mut pfd, 1, ms) })
    })?;
    Ok(if n == 0 { 0 } else { pfd.revents })
}

/// The size of a memory page: `sysconf(_SC_PAGESIZE)`, or 4096 should it
/// answer something that is not a power of two (an error, -1, included).
///
/// The callers round to it (the embedded kernel's `madvise` ranges) and
/// build on it (AF_PACKET blocks must be page multiples *and* frame
/// multiples, which only a power of two makes both), so an answer that is
/// not a power of two is no page size at all.
pub(crate) fn page_size() -> usize {
    static PAGE: LazyLock<usize> = LazyLock::new(|| {
        // SAFETY: sysconf reads a system constant and has no preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(v)
            .ok()
            .filter(|v| v.is_power_of_two())
            .unwrap_or(4096)
    });
    *PAGE
}

/// `len` bytes at `base` mapped with `mmap`, which this value alone unmaps,
/// on drop.
///
/// It hands out the address, never a reference: the memory is read and
/// written through raw pointers by whoever holds it, under rules of their
/// own (the ring code's atomics and slot ownership).
#[derive(Debug)]
pub(crate) struct OwnedMap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: an `OwnedMap` is an address range that it alone unmaps, and the
// unmap is the only thing it does with the memory; a mapping is a property
// of the process, not of a thread, so it may be dropped on any thread.
unsafe impl Send for OwnedMap {}
// SAFETY: `&OwnedMap` gives nothing but the two numbers: no access to the
// memory, and no way to unmap it.
unsafe impl Sync for OwnedMap {}

impl OwnedMap {
    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0)`: `fd`'s
    /// memory from its start, or anonymous memory (`MAP_ANONYMOUS` is added)
    /// without `fd`. The kernel picks the address, so `flags` may not hold
    /// `MAP_FIXED` (`EINVAL`); replace part of a mapping with
    /// [`map_over`](Self::map_over) instead.
    pub(crate) fn new(len: usize, flags: c_int, fd: Option<BorrowedFd<'_>>) -> io::Result<OwnedMap> {
        OwnedMap::new_at(len, flags, fd, 0)
    }

    /// As [`new`](Self::new), from `offset` bytes into `fd` (a socket's
    /// rings sit at fixed offsets of its descriptor).
    pub(crate) fn new_at(
        len: usize,
        flags: c_int,
        fd: Option<BorrowedFd<'_>>,
        offset: i64,
    ) -> io::Result<OwnedMap> {
        if flags & libc::MAP_FIXED != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let (flags, fd) = match fd {
            Some(fd) => (flags, fd.as_raw_fd()),
            None => (flags | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping at an address the kernel picks (no
        // `MAP_FIXED`): it cannot overlap memory in use; `fd`, if any, is
        // live for the call.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let Some(base) = NonNull::new(p.cast::<u8>()) else {
            // SAFETY: `p..p+len` is the mapping just made, used by nothing.
            unsafe { libc::munmap(p, len) };
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        };
        Ok(OwnedMap { base, len })
    }

    /// The first byte of the mapping.
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// The mapping's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Maps `len` bytes of `fd`, from its start, shared, readable and
    /// writable, over `[off, off + len)` of this mapping (`MAP_FIXED`); the
    /// pages stay this value's to unmap. `EINVAL` if the range is not inside
    /// the mapping, or the kernel put the pages elsewhere.
    ///
    /// # Safety
    /// Nothing may use `[off, off + len)` of the mapping while its pages are
    /// replaced, nor rely on what they held.
    pub(crate) unsafe fn map_over(&self, off: usize, len: usize, fd: BorrowedFd<'_>) -> io::Result<()> {
        if off.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let want = self.base.as_ptr().wrapping_add(off);
        // SAFETY: `[want, want + len)` lies inside this mapping, which this
        // value owns and, by the caller's word, nothing uses; MAP_FIXED
        // replaces that part of it with `fd`'s pages.
        let p = unsafe {
            libc::mmap(
                want.cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        if p.cast::<u8>() != want {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(())
    }
}

impl Drop for OwnedMap {
    fn drop(&mut self) {
        // SAFETY: `base..base+len` was mapped by `mmap` (`new`, or the maker
        // that `from_raw`'s caller vouches for), parts of it perhaps
        // remapped by `map_over`, and is unmapped once, here; whoever keeps
        // pointers into it keeps this value alive.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    #[test]
    fn poll_timeouts_round_up_and_reach_zero_only_when_passed() {
        assert_eq!(Deadline::after(None).poll_ms(), -1);
        assert_eq!(Deadline::after(Some(Duration::ZERO)).poll_ms(), 0);
        assert!(Deadline::after(Some(Duration::ZERO)).passed());
        let sub_ms = Deadline::after(Some(Duration::from_micros(500)));
        let ms = sub_ms.poll_ms();
        assert!(ms == 1 || (ms == 0 && sub_ms.passed()), "{ms}");
        assert_eq!(Deadline::after(Some(Duration::from_micros(900))).poll_ms(), 1);
        let ms = Deadline::after(Some(Duration::from_millis(1500))).poll_ms();
        assert!((1400..=1500).contains(&ms), "{ms}");
        assert_eq!(
            Deadline::after(Some(Duration::from_secs(1 << 40))).poll_ms(),
            c_int::MAX
        );
        // Too far ahead to represent: never.
        assert_eq!(Deadline::after(Some(Duration::MAX)), Deadline::after(None));
        assert!(!Deadline::after(None).passed());
    }

    #[test]
    fn retry_repeats_only_interrupted_calls() {
        let mut calls = 0;
        let r = retry(|| {
            calls += 1;
            if calls < 3 {
                Err(io::Error::from_raw_os_error(libc::EINTR))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), 3);
        let mut calls = 0;
        let r: io::Result<()> = retry(|| {
            calls += 1;
            Err(io::Error::from_raw_os_error(libc::EAGAIN))
        });
        assert_eq!((r.unwrap_err().raw_os_error(), calls), (Some(libc::EAGAIN), 1));
    }

    #[test]
    fn wait_until_retries_with_what_is_left() {
        let deadline = Deadline::after(Some(Duration::from_millis(200)));
        let mut asked = Vec::new();
        let r = wait_until(deadline, |ms| {
            asked.push(ms);
            if asked.len() < 3 {
                std::thread::sleep(Duration::from_millis(60));
                Err(io::Error::from_raw_os_error(libc::EINTR))
            } else {
                Ok(())
            }
        });
        assert!(r.is_ok());
        assert_eq!(asked.len(), 3);
        assert!(asked[0] > asked[1] && asked[1] > asked[2], "{asked:?}");
        assert!(asked[2] <= 200 - 120, "{asked:?}");
    }

    #[test]
    fn poll_fd_waits_a_sub_millisecond_timeout() {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a writable array of two ints, as pipe2 expects.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }).unwrap();
        // SAFETY: pipe2 just returned both descriptors; nothing else owns them.
        let (r, _w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let t0 = Instant::now();
        let deadline = Deadline::after(Some(Duration::from_micros(500)));
        assert_eq!(poll_fd(r.as_fd(), libc::POLLIN, deadline).unwrap(), 0);
        assert!(t0.elapsed() >= Duration::from_micros(500), "{:?}", t0.elapsed());
    }

    #[test]
    fn page_size_is_a_power_of_two() {
        assert!(page_size().is_power_of_two() && page_size() >= 4096);
    }

    #[test]
    fn owned_map_is_zeroed_writable_memory_at_a_kernel_chosen_address() {
        let map = OwnedMap::new(3 * page_size(), libc::MAP_PRIVATE, None).unwrap();
        assert_eq!(map.len(), 3 * page_size());
        let p = map.base().as_ptr();
        // SAFETY: `p..p+len` is the fresh mapping, readable and writable, and
        // used by nothing else.
        unsafe {
            assert_eq!(p.add(map.len() - 1).read(), 0);
            p.write(7);
            assert_eq!(p.read(), 7);
        }
        let fixed = OwnedMap::new(page_size(), libc::MAP_PRIVATE | libc::MAP_FIXED, None);
        assert_eq!(fixed.unwrap_err().raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn map_over_replaces_pages_inside_the_mapping_only() {
        let page = page_size();
        let map = OwnedMap::new(3 * page, libc::MAP_PRIVATE, None).unwrap();
        // SAFETY: the name is NUL-terminated; memfd_create takes no other
        // pointer.
        let fd = cvt(unsafe { libc::memfd_create(c"owned-map".as_ptr(), libc::MFD_CLOEXEC) }).unwrap();
        // SAFETY: memfd_create just returned `fd`; nothing else owns it.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.set_len(page as u64).unwrap();
        std::os::unix::fs::FileExt::write_at(&file, b"abc", 0).unwrap();
        for (off, len) in [(3 * page, page), (2 * page, 2 * page), (usize::MAX, page)] {
            // SAFETY: refused before any page is touched.
            let r = unsafe { map.map_over(off, len, file.as_fd()) };
            assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EINVAL), "{off} {len}");
        }
        // SAFETY: nothing uses the mapping's middle page.
        unsafe { map.map_over(page, page, file.as_fd()) }.unwrap();
        let p = map.base().as_ptr();
        // SAFETY: all three pages are mapped, readable and used by nothing else.
        unsafe {
            assert_eq!(std::slice::from_raw_parts(p.add(page), 3), b"abc");
            assert_eq!((p.read(), p.add(2 * page).read()), (0, 0));
        }
    }
}
