//! The shared file behind a region: where it lives, how processes attach to
//! and detach from it, the process-shared lock of its "kernel" state, and
//! the words of that state.
//!
//! A parent `NAME` is the file `netmap-rs-emu.NAME` in the embedded kernel's
//! directory ([`dir`]: `$NETMAP_RS_EMU_DIR`, else `/dev/shm`, else `/tmp`), created by
//! the first process that opens a port of it, mode 0600 (0660 and the group
//! of `$NETMAP_RS_EMU_GROUP` when that is set), and removed by the last one
//! to leave. The file holds two parts, mapped separately:
//!
//! ```text
//! 0                    CTL_SIZE                          CTL_SIZE + len
//! | control: header,   | the netmap region (see region.rs) |
//! | tables (u32 words) | netmap_if, rings, buffers         |
//! ```
//!
//! # Who is alive
//! Liveness is kept by the kernel, not by what the file says: each attached
//! process holds an open-file-description lock (`F_OFD_SETLK`) on one byte
//! of the file, past its end, at `LIVE_BASE + slot`, and the kernel drops
//! it when the process dies, however it dies. A process slot whose byte no
//! one holds belongs to a dead process (or to none), and whatever the tables
//! say it owned is reclaimed (region.rs). Attaching and detaching hold the
//! lock at `ATTACH_LOCK`, so that the last process to leave removes the file
//! only while no one is attaching to it, and a newcomer that finds a file no
//! live process is attached to (its last user crashed) starts it afresh,
//! unless it holds persistent ports: then the file stays when its last user
//! leaves, and the newcomer reclaims what its dead users left.
//!
//! # The lock
//! The "kernel" work of a sync runs in the calling process under one lock
//! per region: a futex word holding `1 + slot` of the process that holds it
//! (and `CONTENDED` when someone sleeps on it), taken by a thread after a
//! mutex of its own process, so that the word only arbitrates between
//! processes. A waiter that finds the holder's liveness byte free (or the
//! word naming its own process) takes the lock over; one that waits longer
//! than [`LOCK_PATIENCE`] for a live holder (stopped, or hostile) gets
//! `EDEADLK` instead of waiting forever. No value in the file can make a
//! lock operation fault or hang past that bound.

use std::ffi::{CString, OsStr};
use std::fmt;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crate::backend::sys::{cvt, OwnedMap};
use crate::backend::{errno, lock};

/// Bytes of the control part.
pub(super) const CTL_SIZE: usize = 1 << 20;
/// Its words.
const CTL_WORDS: usize = CTL_SIZE / 4;
/// Most processes attached to one region at a time.
pub(super) const MAX_PROCS: u32 = 256;

/// File offset of the attach lock byte: past any region, so the locks
/// never cover data (they are advisory anyway).
const ATTACH_LOCK: i64 = 1 << 40;
/// File offset of process slot 0's liveness byte.
const LIVE_BASE: i64 = ATTACH_LOCK + 4096;

const MAGIC: u32 = u32::from_le_bytes(*b"NMRS");
/// Bumped whenever the layout of the control part changes: processes of
/// another version are refused rather than misread.
const VERSION: u32 = 1;

/// Header words.
const H_MAGIC: usize = 0;
const H_VERSION: usize = 1;
const H_LOCK: usize = 2;
/// Bumped, and futex-woken, whenever a sync makes a ring of a port ready.
pub(super) const H_GEN: usize = 3;
/// Threads sleeping on `H_GEN`.
pub(super) const H_WAITERS: usize = 4;
/// Region length in MiB.
const H_LEN_MIB: usize = 5;
/// First word after the header that the tables may use.
pub(super) const H_END: usize = 64;
/// The process table: `MAX_PROCS` entries of `P_WORDS` words from
/// `PROCS`; word 0 is the pid of the process that last held the slot.
const PROCS: usize = H_END;
const P_WORDS: usize = 2;
/// First word the region's tables may use.
pub(super) const TABLES: usize = PROCS + MAX_PROCS as usize * P_WORDS;

/// The `H_LOCK` bit that says someone sleeps on the lock.
const CONTENDED: u32 = 1 << 31;
/// How long a waiter waits for a live holder of the lock before it gives
/// up: far longer than any sync holds it.
pub(super) const LOCK_PATIENCE: Duration = Duration::from_secs(5);
/// How long a waiter sleeps before it checks whether the holder still lives.
const LOCK_NAP: Duration = Duration::from_millis(10);
/// How long attaching waits for another process to finish attaching.
const ATTACH_PATIENCE: Duration = Duration::from_secs(5);

/// The embedded kernel's directory: `$NETMAP_RS_EMU_DIR`, else `/dev/shm`,
/// else (a system that mounts no `/dev/shm`) `/tmp`. Not `$TMPDIR`: every
/// process of the host must find the same files.
pub(super) fn dir() -> PathBuf {
    pick_dir(std::env::var_os("NETMAP_RS_EMU_DIR"), &["/dev/shm", "/tmp"])
}

/// `set` if it is set and not empty, else the first of `dirs` that is a
/// directory, else the first of `dirs` (whose absence the open then
/// reports).
fn pick_dir(set: Option<std::ffi::OsString>, dirs: &[&str]) -> PathBuf {
    set.filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs.iter().map(PathBuf::from).find(|d| d.is_dir()))
        .unwrap_or_else(|| PathBuf::from(dirs[0]))
}

/// What a failed open of region file `path` says: a missing directory, or
/// one this user cannot create files in, is named with what to do; any
/// other error (a file of another user) stays as it is.
fn dir_error(path: &CString, e: io::Error) -> io::Error {
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path.as_bytes()));
    let dir = path.parent().unwrap_or(path).display();
    let fix = "or set NETMAP_RS_EMU_DIR to a directory that every process sharing emu: ports can write";
    match e.raw_os_error() {
        Some(libc::ENOENT) => io::Error::new(
            io::ErrorKind::NotFound,
            format!("the embedded kernel's directory {dir} does not exist: create it, {fix}"),
        ),
        Some(libc::EACCES) if std::fs::symlink_metadata(path).is_err() => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "this user cannot create the embedded kernel's regions in {dir}: give it write access, {fix}"
            ),
        ),
        _ => e,
    }
}

/// This copy of the crate's namespace (see [`set_namespace`]).
static NAMESPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the namespace of this copy of the crate's embedded kernel, once,
/// before any region is attached: `false` if one was set before.
pub(crate) fn set_namespace(ns: &str) -> bool {
    NAMESPACE.set(ns.to_owned()).is_ok()
}

/// The file of parent `name`: `netmap-rs-emu.NAME`, or
/// `netmap-rs-emu-NS.NAME` in namespace `NS`.
pub(super) fn file_name(name: &str) -> String {
    match NAMESPACE.get() {
        Some(ns) => format!("netmap-rs-emu-{ns}.{name}"),
        None => format!("netmap-rs-emu.{name}"),
    }
}

/// The group that `$NETMAP_RS_EMU_GROUP` names (a number or a group name),
/// if set: the group gets read and write access to regions this process
/// creates.
fn share_group() -> io::Result<Option<libc::gid_t>> {
    let Some(g) = std::env::var_os("NETMAP_RS_EMU_GROUP").filter(|g| !g.is_empty()) else {
        return Ok(None);
    };
    if let Some(n) = g.to_str().and_then(|s| s.parse().ok()) {
        return Ok(Some(n));
    }
    let name = CString::new(g.as_bytes()).map_err(|_| errno(libc::EINVAL))?;
    let mut grp: libc::group = unsafe_zeroed_group();
    let mut buf = vec![0u8; 16384];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: the name is a C string,
    // `grp` and `out` are writable, `buf` is writable for its length.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        )
    };
    if rc != 0 || out.is_null() {
        return Err(errno(libc::EINVAL));
    }
    Ok(Some(grp.gr_gid))
}

fn unsafe_zeroed_group() -> libc::group {
    // SAFETY: `libc::group` is plain C data (integers and pointers), for
    // which all zero bytes is a valid value.
    unsafe { mem::zeroed() }
}

/// An OFD lock request over `[start, start + len)`.
fn flock(kind: i32, start: i64, len: i64) -> libc::flock {
    // SAFETY: `libc::flock` is plain C data; all zero is valid.
    let mut l: libc::flock = unsafe { mem::zeroed() };
    l.l_type = kind as i16;
    l.l_whence = libc::SEEK_SET as i16;
    l.l_start = start;
    l.l_len = len;
    l
}

/// Tries to take the write lock on byte `at` of `fd`: `Ok(false)` if another
/// open file description holds a lock there.
fn try_lock(fd: BorrowedFd<'_>, at: i64) -> io::Result<bool> {
    let l = flock(libc::F_WRLCK, at, 1);
    // SAFETY: F_OFD_SETLK reads one `struct flock`, which `l` is.
    match cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &l) }) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn unlock(fd: BorrowedFd<'_>, at: i64) {
    let l = flock(libc::F_UNLCK, at, 1);
    // SAFETY: as in `try_lock`; unlocking cannot fail in a way that matters.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &l) };
}

/// Whether another open file description holds a lock on any byte of
/// `[start, start + len)` of `fd`.
fn held_by_other(fd: BorrowedFd<'_>, start: i64, len: i64) -> bool {
    let mut l = flock(libc::F_WRLCK, start, len);
    // SAFETY: F_OFD_GETLK reads and writes one `struct flock`, which `l` is.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut l) };
    // A failed query says "held": the safe answer, which keeps a region.
    rc != 0 || l.l_type != libc::F_UNLCK as i16
}

/// Takes the lock on byte `at`, waiting up to `patience`.
fn lock_within(fd: BorrowedFd<'_>, at: i64, patience: Duration) -> io::Result<()> {
    let start = Instant::now();
    let mut nap = Duration::from_micros(50);
    while !try_lock(fd, at)? {
        if start.elapsed() > patience {
            return Err(errno(libc::EDEADLK));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(5));
    }
    Ok(())
}

/// `futex(FUTEX_WAIT)` on a word of a shared mapping: sleeps while `word`
/// holds `val`, at most `timeout`.
pub(super) fn futex_wait(word: &AtomicU32, val: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: the word is a live, 4-aligned u32 of a mapping that outlives
    // the call; FUTEX_WAIT (not private: the mapping is shared between
    // processes) reads it and the timespec only.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            val,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
}

/// `futex(FUTEX_WAKE)`: wakes up to `n` sleepers on `word`.
pub(super) fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: as for `futex_wait`; FUTEX_WAKE does not touch the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
}

/// Spins a while on `m` before sleeping on it: a sync holds the lock for
/// a microsecond or two, less than a sleep and a wake-up cost.
fn lock_spinning(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    for _ in 0..SPINS {
        match m.try_lock() {
            Ok(g) => return g,
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(TryLockError::WouldBlock) => std::hint::spin_loop(),
        }
    }
    lock(m)
}

/// How many times a lock is tried before its taker sleeps.
const SPINS: u32 = 2000;

/// One process's attachment to a region file.
pub(super) struct Shm {
    file: OwnedFd,
    path: CString,
    /// The control part, `[0, CTL_SIZE)` of the file.
    ctl: OwnedMap,
    /// The netmap region, `[CTL_SIZE, CTL_SIZE + len)` of the file.
    pub(super) region: OwnedMap,
    /// This process's slot.
    pub(super) me: u32,
    /// Whether this attachment made the file's contents (no live process
    /// was attached).
    pub(super) fresh: bool,
    /// Taken by a thread of this process before the lock word: the word
    /// only arbitrates between processes, so a word that names this
    /// process while its thread holds `local` names no one (another
    /// process wrote it).
    local: Mutex<()>,
    /// Set when the file must outlive this process (see `keep_file`).
    keep: AtomicBool,
}

/// Says, from a file's words, whether a file no live process uses is kept
/// as it is rather than made afresh.
pub(super) type Reuse = fn(&dyn Fn(usize) -> u32) -> bool;

impl fmt::Debug for Shm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shm")
            .field("path", &self.path)
            .field("me", &self.me)
            .field("len", &self.region.len())
            .finish_non_exhaustive()
    }
}

impl Shm {
    /// Attaches to parent `name`'s file, creating it (with a region of the
    /// first of `sizes` that the file and the address space take) if no
    /// live process is attached to it.
    /// A file that no live process uses is made afresh, unless its header
    /// is ours and `reuse` says, looking at its words, that it holds what
    /// must outlive its users (persistent ports).
    pub(super) fn attach(name: &str, sizes: &[usize], reuse: Reuse) -> io::Result<Shm> {
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| sweep(&dir(), reuse));
        let path = dir().join(file_name(name));
        let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| errno(libc::EINVAL))?;
        let group = share_group()?;
        for _ in 0..100 {
            if let Some(shm) = Shm::try_attach(&cpath, group, sizes, reuse)? {
                return Ok(shm);
            }
        }
        Err(errno(libc::EAGAIN))
    }

    /// One try: `None` if the file was removed while we opened it.
    fn try_attach(
        path: &CString,
        group: Option<libc::gid_t>,
        sizes: &[usize],
        reuse: Reuse,
    ) -> io::Result<Option<Shm>> {
        let mode: libc::mode_t = if group.is_some() { 0o660 } else { 0o600 };
        // SAFETY: `path` is a C string; the flags make a new descriptor
        // that nothing else owns.
        let fd = cvt(unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                libc::c_uint::from(mode),
            )
        })
        .map_err(|e| dir_error(path, e))?;
        // SAFETY: `fd` was just opened and is owned by no one else.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        lock_within(file.as_fd(), ATTACH_LOCK, ATTACH_PATIENCE)?;
        let result = Shm::attach_locked(file, path, group, sizes, reuse);
        if let Ok(Some(shm)) = &result {
            unlock(shm.file.as_fd(), ATTACH_LOCK);
        }
        // On `None` or an error the descriptor is closed, which drops its
        // locks.
        result
    }

    fn attach_locked(
        file: OwnedFd,
        path: &CString,
        group: Option<libc::gid_t>,
        sizes: &[usize],
        reuse: Reuse,
    ) -> io::Result<Option<Shm>> {
        let st = fstat(file.as_fd())?;
        // The file may have been removed (by the last process to leave)
        // between our open and our lock: then start again.
        // SAFETY: `path` is a C string and `now` is writable.
        let mut now: libc::stat = unsafe { mem::zeroed() };
        // SAFETY: as above.
        if st.st_nlink == 0 || unsafe { libc::stat(path.as_ptr(), &mut now) } != 0 || now.st_ino != st.st_ino
        {
            return Ok(None);
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(errno(libc::EINVAL));
        }
        let me = (0..MAX_PROCS)
            .find_map(|i| match try_lock(file.as_fd(), LIVE_BASE + i64::from(i)) {
                Ok(true) => Some(Ok(i)),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            })
            .unwrap_or(Err(errno(libc::EUSERS)))?;
        let others = held_by_other(file.as_fd(), LIVE_BASE, i64::from(MAX_PROCS));
        let mut shm_len = None;
        if st.st_size as u64 >= CTL_SIZE as u64 {
            let ctl = OwnedMap::new_at(CTL_SIZE, libc::MAP_SHARED, Some(file.as_fd()), 0)?;
            let w = |i| word_of(&ctl, i).load(Ordering::Acquire);
            let len = (w(H_LEN_MIB) as usize) << 20;
            let ours = w(H_MAGIC) == MAGIC
                && w(H_VERSION) == VERSION
                && sizes.contains(&len)
                && (st.st_size as u64) >= (CTL_SIZE + len) as u64;
            if ours && (others || reuse(&w)) {
                shm_len = Some((ctl, len));
            } else if others {
                // Live processes of another version of this crate.
                return Err(errno(libc::EPROTO));
            }
        } else if others {
            return Err(errno(libc::EPROTO));
        }
        let (ctl, region, fresh) = match shm_len {
            Some((ctl, len)) => {
                let region = OwnedMap::new_at(len, libc::MAP_SHARED, Some(file.as_fd()), CTL_SIZE as i64)?;
                (ctl, region, false)
            }
            None => {
                // No live process uses the file: make it afresh.
                if let Some(g) = group {
                    // SAFETY: fchown on an fd we own; -1 keeps the owner.
                    cvt(unsafe { libc::fchown(file.as_raw_fd(), u32::MAX, g) })?;
                    // SAFETY: fchmod on an fd we own.
                    cvt(unsafe { libc::fchmod(file.as_raw_fd(), 0o660) })?;
                }
                remove_fifos(path);
                // SAFETY: ftruncate on an fd we own.
                cvt(unsafe { libc::ftruncate(file.as_raw_fd(), 0) })?;
                let (ctl, region) = Shm::create(file.as_fd(), sizes)?;
                (ctl, region, true)
            }
        };
        word_of(&ctl, PROCS + me as usize * P_WORDS).store(std::process::id(), Ordering::Relaxed);
        Ok(Some(Shm {
            file,
            path: path.clone(),
            ctl,
            region,
            me,
            fresh,
            local: Mutex::new(()),
            keep: AtomicBool::new(false),
        }))
    }

    /// Sizes the emptied file for the first of `sizes` that the filesystem
    /// (its free space: buffers are reserved when handed out, so a full
    /// filesystem refuses REGISTER rather than faulting later) and the
    /// address space take, maps it and writes the header.
    fn create(fd: BorrowedFd<'_>, sizes: &[usize]) -> io::Result<(OwnedMap, OwnedMap)> {
        // SAFETY: `vfs` is writable; fstatvfs only fills it.
        let mut vfs: libc::statvfs = unsafe { mem::zeroed() };
        // SAFETY: as above, on an fd we hold.
        let free = if unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut vfs) } == 0 {
            (vfs.f_bavail as u64).saturating_mul(vfs.f_frsize as u64)
        } else {
            u64::MAX
        };
        let mut err = errno(libc::ENOMEM);
        let fitting = sizes.iter().filter(|&&s| (s as u64) <= free);
        // The smallest size is tried even when it does not seem to fit.
        for &len in fitting.chain(sizes.last()) {
            // SAFETY: ftruncate on an fd we own.
            if let Err(e) = cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), (CTL_SIZE + len) as i64) }) {
                err = e;
                continue;
            }
            let maps = OwnedMap::new_at(CTL_SIZE, libc::MAP_SHARED, Some(fd), 0).and_then(|ctl| {
                OwnedMap::new_at(
                    len,
                    libc::MAP_SHARED | libc::MAP_NORESERVE,
                    Some(fd),
                    CTL_SIZE as i64,
                )
                .map(|r| (ctl, r))
            });
            let (ctl, region) = match maps {
                Ok(m) => m,
                Err(e) => {
                    err = e;
                    continue;
                }
            };
            // The control part is written now: reserve its pages.
            reserve(fd, 0, CTL_SIZE)?;
            word_of(&ctl, H_LEN_MIB).store((len >> 20) as u32, Ordering::Relaxed);
            word_of(&ctl, H_VERSION).store(VERSION, Ordering::Relaxed);
            word_of(&ctl, H_MAGIC).store(MAGIC, Ordering::Release);
            return Ok((ctl, region));
        }
        Err(err)
    }

    /// Word `i` of the control part.
    pub(super) fn word(&self, i: usize) -> &AtomicU32 {
        word_of(&self.ctl, i)
    }

    /// The group the file is shared with, if it is (group read and write).
    pub(super) fn group(&self) -> Option<libc::gid_t> {
        let st = fstat(self.file.as_fd()).ok()?;
        (st.st_mode & 0o060 == 0o060).then_some(st.st_gid)
    }

    /// Keeps the file when this process leaves, even if it is the last.
    pub(super) fn keep_file(&self) {
        self.keep.store(true, Ordering::Relaxed);
    }

    /// Whether process slot `p` belongs to a live process.
    pub(super) fn alive(&self, p: u32) -> bool {
        p == self.me || (p < MAX_PROCS && held_by_other(self.file.as_fd(), LIVE_BASE + i64::from(p), 1))
    }

    /// Reserves bytes `[off, off + len)` of the region in the file, so that
    /// touching them cannot fault for want of space.
    pub(super) fn reserve(&self, off: usize, len: usize) -> io::Result<()> {
        reserve(self.file.as_fd(), CTL_SIZE + off, len)
    }

    /// Gives bytes `[off, off + len)` of the region back to the filesystem;
    /// they read as zeros afterwards, and must be reserved again before use.
    pub(super) fn release(&self, off: usize, len: usize) {
        if len > 0 {
            // SAFETY: fallocate on an fd we own; punching a hole only drops
            // the contents of those pages, in every process's mapping.
            unsafe {
                libc::fallocate(
                    self.file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    (CTL_SIZE + off) as i64,
                    len as i64,
                )
            };
        }
    }

    /// The path of the notification FIFO of handle slot `h`, generation `gen`.
    pub(super) fn fifo_path(&self, h: u32, gen: u32) -> CString {
        let mut p = self.path.as_bytes().to_vec();
        p.extend_from_slice(format!("@h{h}.{gen}").as_bytes());
        CString::new(p).expect("no NUL in a path made of a C string and digits")
    }

    /// Takes the region's lock. `Ok((guard, true))` if it was taken over
    /// from a dead holder: the tables may be half-changed then.
    pub(super) fn lock(&self) -> io::Result<(Guard<'_>, bool)> {
        let local = lock_spinning(&self.local);
        let word = self.word(H_LOCK);
        let mine = self.me + 1;
        let guard = |stolen| {
            Ok((
                Guard {
                    shm: self,
                    _local: local,
                },
                stolen,
            ))
        };
        if word
            .compare_exchange(0, mine, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return guard(false);
        }
        for _ in 0..SPINS {
            std::hint::spin_loop();
            if word.load(Ordering::Relaxed) == 0
                && word
                    .compare_exchange(0, mine, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return guard(false);
            }
        }
        let start = Instant::now();
        loop {
            let v = word.load(Ordering::Relaxed);
            if v == 0 {
                // Taken as contended: someone else may still be asleep.
                if word
                    .compare_exchange(0, mine | CONTENDED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return guard(false);
                }
                continue;
            }
            let holder = (v & !CONTENDED).wrapping_sub(1);
            // No other thread of this process holds it (we hold `local`):
            // a word naming us is garbage, like one naming a dead holder.
            if holder == self.me || !self.alive(holder) {
                if word
                    .compare_exchange(v, mine | CONTENDED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return guard(true);
                }
                continue;
            }
            if start.elapsed() > LOCK_PATIENCE {
                return Err(errno(libc::EDEADLK));
            }
            if v & CONTENDED == 0
                && word
                    .compare_exchange(v, v | CONTENDED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            futex_wait(word, v | CONTENDED, LOCK_NAP);
        }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // The last process to leave removes the file, under the attach lock
        // so that no one is attaching meanwhile. If the lock cannot be had,
        // the file stays: the next process to attach finds no one alive
        // and starts it afresh.
        if lock_within(self.file.as_fd(), ATTACH_LOCK, ATTACH_PATIENCE).is_ok() {
            unlock(self.file.as_fd(), LIVE_BASE + i64::from(self.me));
            if !self.keep.load(Ordering::Relaxed)
                && !held_by_other(self.file.as_fd(), LIVE_BASE, i64::from(MAX_PROCS))
            {
                // SAFETY: `path` is a C string.
                unsafe { libc::unlink(self.path.as_ptr()) };
                remove_fifos(&self.path);
            }
        }
        // Then the maps are unmapped and the descriptor closed (fields drop
        // after this), which drops its locks.
    }
}

/// The region's lock, held.
pub(super) struct Guard<'a> {
    shm: &'a Shm,
    /// Released after the word (fields drop after `drop` runs).
    _local: MutexGuard<'a, ()>,
}

impl fmt::Debug for Guard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").field("me", &self.shm.me).finish()
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let word = self.shm.word(H_LOCK);
        if word.swap(0, Ordering::Release) & CONTENDED != 0 {
            futex_wake(word, 1);
        }
    }
}

fn word_of(map: &OwnedMap, i: usize) -> &AtomicU32 {
    assert!(i < CTL_WORDS, "control word {i} out of range");
    // SAFETY: word `i` lies inside the `CTL_SIZE`-byte control mapping,
    // which lives as long as `map` is borrowed, 4-aligned (the mapping is
    // page-aligned); every process touches it atomically only.
    unsafe { AtomicU32::from_ptr(map.base().as_ptr().cast::<u32>().add(i)) }
}

fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: `st` is writable; fstat only fills it.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: as above, on an fd we hold.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

fn reserve(fd: BorrowedFd<'_>, off: usize, len: usize) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: fallocate on an fd we hold; mode 0 only allocates blocks.
    let rc = unsafe { libc::fallocate(fd.as_raw_fd(), 0, off as i64, len as i64) };
    match cvt(rc) {
        Ok(_) => Ok(()),
        // No room left: what a kernel says when its allocator is empty.
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => Err(errno(libc::ENOMEM)),
        // A filesystem without fallocate: pages are made on first touch.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the region files in `dir` (and their FIFOs) that no live process
/// uses and that hold nothing that must outlive its users: what crashed
/// processes left under names no one opens again. Files of other users
/// (which this process cannot open) and files being attached are left.
fn sweep(dir: &std::path::Path, reuse: Reuse) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let bytes = name.as_bytes();
        if !bytes.starts_with(b"netmap-rs-emu") || bytes.contains(&b'@') {
            continue;
        }
        let Ok(path) = CString::new(e.path().as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: `path` is a C string; the result is a new descriptor.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
        if fd < 0 {
            continue;
        }
        // SAFETY: `fd` was just opened and is owned by no one else.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        if !try_lock(file.as_fd(), ATTACH_LOCK).unwrap_or(false)
            || held_by_other(file.as_fd(), LIVE_BASE, i64::from(MAX_PROCS))
        {
            continue;
        }
        let Ok(st) = fstat(file.as_fd()) else { continue };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            continue;
        }
        if st.st_size as u64 >= CTL_SIZE as u64 {
            let Ok(ctl) = OwnedMap::new_at(CTL_SIZE, libc::MAP_SHARED, Some(file.as_fd()), 0) else {
                continue;
            };
            let ours = word_of(&ctl, H_MAGIC).load(Ordering::Acquire) == MAGIC
                && word_of(&ctl, H_VERSION).load(Ordering::Acquire) == VERSION;
            if ours && reuse(&|i| word_of(&ctl, i).load(Ordering::Acquire)) {
                continue;
            }
        }
        // SAFETY: `now` is writable; stat only fills it.
        let mut now: libc::stat = unsafe { mem::zeroed() };
        // SAFETY: as above; the file is removed only if it is still the
        // one we locked.
        if unsafe { libc::stat(path.as_ptr(), &mut now) } == 0 && now.st_ino == st.st_ino {
            // SAFETY: `path` is a C string.
            unsafe { libc::unlink(path.as_ptr()) };
            remove_fifos(&path);
        }
    }
}

/// Removes the notification FIFOs left beside the region file `path`.
fn remove_fifos(path: &CString) {
    let path = std::path::Path::new(OsStr::from_bytes(path.as_bytes()));
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let mut prefix = name.as_bytes().to_vec();
    prefix.extend_from_slice(b"@h");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().as_bytes().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl AsFd for Shm {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::pick_dir;
    use std::path::PathBuf;

    #[test]
    fn the_directory_is_the_variable_else_the_first_that_exists() {
        let missing = "/nonexistent/netmap-rs";
        let tmp = std::env::temp_dir();
        let tmp = tmp.to_str().unwrap();
        assert_eq!(pick_dir(Some("/x/y".into()), &[tmp]), PathBuf::from("/x/y"));
        assert_eq!(pick_dir(Some("".into()), &[missing, tmp]), PathBuf::from(tmp));
        assert_eq!(pick_dir(None, &[missing, tmp]), PathBuf::from(tmp));
        assert_eq!(pick_dir(None, &[missing]), PathBuf::from(missing));
    }
}
