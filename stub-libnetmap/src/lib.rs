//! A stand-in `libnetmap.so` for netmap-rs's own tests: libnetmap's entry
//! points, with their C signatures and its `nmport_d` layout, implemented on
//! the public API of netmap-rs over its embedded kernel.
//!
//! Any name given to `nmport_prepare` (`netmap:NAME{N`, `NAME}N`, a bare
//! `NAME`, with the usual suffixes and options) is opened as the same name
//! with the `emu:` prefix instead, in this library's own copy of the embedded
//! kernel, in a namespace of its own (`set_emu_namespace`).
//! `nmport_open_desc` applies what the caller wrote into the prepared
//! descriptor's `reg` (ring selection, counts, flags), as libnetmap's callers
//! may, and fills the descriptor as libnetmap does: `fd`, `nifp`, `mem`, the
//! register reply and the first/last ring ids. As with the kernel, a request
//! without `NR_EXCLUSIVE` in `nr_flags` binds its rings shared.
//!
//! Users of a real libnetmap sync and wait with `ioctl(d->fd, NIOCTXSYNC)`
//! and `poll(d->fd)`. The descriptors handed out here are eventfds of the
//! embedded kernel, so this library also defines `ioctl` and `poll`: for its
//! own descriptors they sync or poll the embedded port; for any other they
//! forward to the C library's. Loaded `RTLD_LOCAL`, as netmap-rs loads it,
//! those two are found only by looking them up in this library's handle;
//! they interpose on nothing else in the process.
//!
//! Errors are reported as libnetmap reports them: a message through the
//! error callback of the context (`nmctx_get`), and `errno`.
//!
//! Variants for the tests, by Cargo feature: `no-offset` leaves out
//! `nmport_offset`, `no-open-desc` leaves out `nmport_open_desc`.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::cell::{Cell, UnsafeCell};
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_ulong, c_void, CStr, CString};
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use netmap_rs::ffi::{self, nmctx, nmem_d, nmport_d};
use netmap_rs::spec::RingSelect;
use netmap_rs::{Error, Netmap, NetmapBuilder};

// ---------------------------------------------------------------------------
// The context and its error callback
// ---------------------------------------------------------------------------

/// The default context, as libnetmap's: verbose, printing errors to stderr.
struct Context(UnsafeCell<nmctx>);

// SAFETY: the context is only accessed through raw pointers, by this library
// and by its caller, who (like any libnetmap caller) serializes its use.
unsafe impl Sync for Context {}

static CONTEXT: Context = Context(UnsafeCell::new(nmctx {
    verbose: 1,
    error: Some(print_error),
    malloc: None,
    free: None,
    lock: None,
    mem_descs: ptr::null_mut(),
}));

/// The context's default error callback: one line on stderr.
unsafe extern "C" fn print_error(_ctx: *mut nmctx, msg: *const c_char) {
    if !msg.is_null() {
        // SAFETY: the message is a NUL-terminated string (see `report`).
        eprintln!("{}", unsafe { CStr::from_ptr(msg) }.to_string_lossy());
    }
}

/// Reports `msg` through `ctx`'s error callback, as `nmctx_ferror` does.
fn report(ctx: *mut nmctx, msg: &str) {
    if ctx.is_null() {
        return;
    }
    // SAFETY: `ctx` is this library's context (or one the caller keeps
    // alive); fields are read through the raw pointer.
    let (verbose, error) = unsafe {
        (
            ptr::addr_of!((*ctx).verbose).read(),
            ptr::addr_of!((*ctx).error).read(),
        )
    };
    if verbose == 0 {
        return;
    }
    if let Some(error) = error {
        let msg = CString::new(msg.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the callback takes the context and a NUL-terminated
        // message, valid for the duration of the call.
        unsafe { error(ctx, msg.as_ptr()) };
    }
}

/// Sets the calling thread's `errno`.
fn set_errno(value: c_int) {
    // SAFETY: `__errno_location` returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = value };
}

/// The errno a failure of netmap-rs stands for.
fn errno_of(e: &Error) -> c_int {
    match e {
        Error::InterfaceNotFound { .. } => libc::ENOENT,
        Error::PermissionDenied { .. } => libc::EACCES,
        Error::Busy { .. } => libc::EBUSY,
        Error::Unsupported { .. } => libc::EOPNOTSUPP,
        Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        _ => libc::EINVAL,
    }
}

/// `strerror(code)`, as libnetmap puts it in its messages.
fn strerror(code: c_int) -> String {
    let text = std::io::Error::from_raw_os_error(code).to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// Fails a call: reports `msg`, sets `errno` (after reporting, which may
/// change it) and returns -1.
fn fail(ctx: *mut nmctx, code: c_int, msg: &str) -> c_int {
    report(ctx, msg);
    set_errno(code);
    -1
}

/// `nmctx_get`: the default context.
#[no_mangle]
pub extern "C" fn nmctx_get() -> *mut nmctx {
    CONTEXT.0.get()
}

// ---------------------------------------------------------------------------
// Descriptors
// ---------------------------------------------------------------------------

/// What this library keeps for one descriptor.
struct Desc {
    /// The name as given to `nmport_prepare`.
    given: String,
    /// The same port on the embedded kernel.
    emu: String,
    /// The descriptor's context.
    ctx: usize,
    /// `nmport_offset` was called.
    offsets: bool,
    /// `nmport_extmem` was called.
    extmem: bool,
    /// The open port, once `nmport_open_desc` succeeded.
    port: Option<Arc<Mutex<Netmap>>>,
    fd: c_int,
    /// The `nmem_d` handed out in the descriptor (a `Box`'s address).
    mem: usize,
}

/// Every live descriptor, by address.
static DESCS: Mutex<BTreeMap<usize, Desc>> = Mutex::new(BTreeMap::new());

fn descs() -> MutexGuard<'static, BTreeMap<usize, Desc>> {
    DESCS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The open port whose fd is `fd`, if this library issued it.
fn port_by_fd(fd: c_int) -> Option<Arc<Mutex<Netmap>>> {
    descs()
        .values()
        .find(|d| d.fd == fd && d.port.is_some())
        .and_then(|d| d.port.clone())
}

/// The ring selection a register request's `nr_mode`/`nr_ringid` name.
fn ring_select(mode: u32, ringid: u16) -> Option<RingSelect> {
    Some(match mode {
        ffi::NR_REG_DEFAULT | ffi::NR_REG_ALL_NIC => RingSelect::AllNic,
        ffi::NR_REG_SW => RingSelect::Host,
        ffi::NR_REG_NIC_SW => RingSelect::NicAndHost,
        ffi::NR_REG_ONE_NIC => RingSelect::OneNic(ringid),
        ffi::NR_REG_ONE_SW => RingSelect::OneHost(ringid),
        _ => return None,
    })
}

/// `nmport_prepare`: allocates a descriptor and parses `name` into it.
///
/// # Safety
/// `name` must be a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn nmport_prepare(name: *const c_char) -> *mut nmport_d {
    let ctx = nmctx_get();
    // This library's ports are its own, apart from the embedded ports of
    // the program that loads it (a copy of netmap-rs too).
    netmap_rs::set_emu_namespace("stub-libnetmap");
    if name.is_null() {
        fail(ctx, libc::EINVAL, "no port name");
        return ptr::null_mut();
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let given = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
    let rest = given.strip_prefix("netmap:").unwrap_or(&given);
    let emu = format!("emu:{rest}");
    let spec = match netmap_rs::spec::parse(&emu) {
        Ok(spec) => spec,
        Err(e) => {
            fail(ctx, libc::EINVAL, &format!("{given}: {e}"));
            return ptr::null_mut();
        }
    };
    let mut d = Box::<nmport_d>::default();
    d.hdr.nr_version = ffi::NETMAP_API;
    d.hdr.nr_reqtype = ffi::NETMAP_REQ_REGISTER;
    for (dst, src) in d.hdr.nr_name.iter_mut().zip(spec.nr_name.bytes()) {
        *dst = src as c_char;
    }
    let c = &spec.conf;
    d.reg.nr_mode = spec.rings.nr_mode();
    d.reg.nr_ringid = spec.rings.nr_ringid();
    d.reg.nr_flags = spec.flags;
    d.reg.nr_mem_id = spec.mem_id;
    d.reg.nr_tx_rings = c.tx_rings.unwrap_or(0);
    d.reg.nr_rx_rings = c.rx_rings.unwrap_or(0);
    d.reg.nr_tx_slots = c.tx_slots.unwrap_or(0);
    d.reg.nr_rx_slots = c.rx_slots.unwrap_or(0);
    d.ctx = ctx;
    d.fd = -1;
    let d = Box::into_raw(d);
    // SAFETY: `d` is the live allocation just made.
    unsafe { (*d).hdr.nr_body = ptr::addr_of_mut!((*d).reg) as usize as u64 };
    descs().insert(
        d as usize,
        Desc {
            given,
            emu,
            ctx: ctx as usize,
            offsets: false,
            extmem: false,
            port: None,
            fd: -1,
            mem: 0,
        },
    );
    d
}

/// Frees what `nmport_prepare` and `nmport_open_desc` made for `d`.
///
/// # Safety
/// `d` must be null or a descriptor of this library, not used afterwards.
unsafe fn release(d: *mut nmport_d) {
    let Some(desc) = descs().remove(&(d as usize)) else {
        return;
    };
    // Close the port before freeing the memory descriptor naming its region.
    drop(desc.port);
    if desc.mem != 0 {
        // SAFETY: `mem` came from `Box::into_raw` in `open_desc` and is freed
        // once: the entry that named it was just removed.
        drop(unsafe { Box::from_raw(desc.mem as *mut nmem_d) });
    }
    // SAFETY: `d` came from `Box::into_raw` in `nmport_prepare` and had an
    // entry, so it was not freed yet.
    drop(unsafe { Box::from_raw(d) });
}

/// `nmport_undo_prepare`: frees a prepared (not opened) descriptor.
///
/// # Safety
/// `d` must be null or a descriptor of this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn nmport_undo_prepare(d: *mut nmport_d) {
    // SAFETY: the caller's contract is `release`'s.
    unsafe { release(d) }
}

/// `nmport_close`: closes and frees a descriptor.
///
/// # Safety
/// `d` must be null or a descriptor of this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn nmport_close(d: *mut nmport_d) {
    // SAFETY: the caller's contract is `release`'s.
    unsafe { release(d) }
}

/// Records an option call on `d`; the embedded kernel implements neither,
/// so `nmport_open_desc` refuses it as a kernel refuses an option.
fn note_option(d: *mut nmport_d, f: impl FnOnce(&mut Desc)) -> c_int {
    match descs().get_mut(&(d as usize)) {
        Some(desc) => {
            f(desc);
            0
        }
        None => fail(nmctx_get(), libc::EINVAL, "not a descriptor of this library"),
    }
}

/// `nmport_offset`: asks for buffer offsets.
///
/// # Safety
/// `d` must be a descriptor of this library.
#[cfg(not(feature = "no-offset"))]
#[no_mangle]
pub unsafe extern "C" fn nmport_offset(
    d: *mut nmport_d,
    _initial: u64,
    _maxoff: u64,
    _bits: u64,
    _mingap: u64,
) -> c_int {
    note_option(d, |desc| desc.offsets = true)
}

/// `nmport_extmem`: asks for external memory.
///
/// # Safety
/// `d` must be a descriptor of this library.
#[no_mangle]
pub unsafe extern "C" fn nmport_extmem(d: *mut nmport_d, _base: *mut c_void, _size: usize) -> c_int {
    note_option(d, |desc| desc.extmem = true)
}

/// Registers a prepared descriptor: opens the port and fills `d`.
///
/// # Safety
/// `d` must be a descriptor of this library that nobody else accesses
/// during the call.
unsafe fn open_desc(d: *mut nmport_d) -> c_int {
    let p = match pending(d) {
        Ok(p) => p,
        Err(rc) => return rc,
    };
    // SAFETY: `d` is a live descriptor of this library, and the caller does
    // not touch it during the call.
    let d = unsafe { &mut *d };
    if let Some((_, option)) = p.options.iter().find(|o| o.0) {
        let why = strerror(libc::EOPNOTSUPP);
        return fail(
            p.ctx,
            libc::EOPNOTSUPP,
            &format!("{}: option {option}: {why}", p.given),
        );
    }
    // What the caller left in `reg` decides, as with libnetmap.
    let reg = d.reg;
    let Some(builder) = builder(&p.emu, &reg) else {
        return fail(
            p.ctx,
            libc::EINVAL,
            &format!("{}: invalid nr_mode {}", p.given, reg.nr_mode),
        );
    };
    let port = match builder.build() {
        Ok(port) => port,
        // As libnetmap words a failed registration: the name and strerror.
        Err(e) => {
            return fail(
                p.ctx,
                errno_of(&e),
                &format!("{}: {}", p.given, strerror(errno_of(&e))),
            )
        }
    };
    let mem = fill(d, &port);
    keep(d, port, mem, &p)
}

/// What `open_desc` takes from a prepared descriptor's entry.
struct Pending {
    given: String,
    emu: String,
    ctx: *mut nmctx,
    /// Each option, whether it was asked for, and its name.
    options: [(bool, &'static str); 2],
}

/// The entry of `d`, which must be prepared and not yet registered; else
/// the failed call's return value.
fn pending(d: *mut nmport_d) -> Result<Pending, c_int> {
    match descs().get(&(d as usize)) {
        Some(desc) if desc.port.is_some() => {
            let msg = format!("{}: already registered", desc.given);
            Err(fail(desc.ctx as *mut nmctx, libc::EINVAL, &msg))
        }
        Some(desc) => Ok(Pending {
            given: desc.given.clone(),
            emu: desc.emu.clone(),
            ctx: desc.ctx as *mut nmctx,
            options: [(desc.offsets, "offsets"), (desc.extmem, "extmem")],
        }),
        None => Err(fail(
            nmctx_get(),
            libc::EINVAL,
            "not a descriptor of this library",
        )),
    }
}

/// The builder of the port `emu` as the register request `reg` asks for it;
/// `None` for a ring selection it does not name.
fn builder(emu: &str, reg: &ffi::nmreq_register) -> Option<NetmapBuilder> {
    let rings = ring_select(reg.nr_mode, reg.nr_ringid)?;
    let mut builder = NetmapBuilder::new(emu).rings(rings).flags(reg.nr_flags);
    if reg.nr_flags & ffi::NR_EXCLUSIVE == 0 {
        // SAFETY: libnetmap passes the caller's flags to the kernel as they
        // are, and the kernel binds rings without `NR_EXCLUSIVE` shared; a
        // caller that leaves the flag out takes on the promise of
        // `share_rings` (netmap's own rule for shared rings), as with the
        // real library.
        builder = unsafe { builder.share_rings() };
    }
    if reg.nr_tx_rings != 0 {
        builder = builder.num_tx_rings(usize::from(reg.nr_tx_rings));
    }
    if reg.nr_rx_rings != 0 {
        builder = builder.num_rx_rings(usize::from(reg.nr_rx_rings));
    }
    if reg.nr_tx_slots.max(reg.nr_rx_slots) != 0 {
        builder = builder.num_slots(reg.nr_tx_slots.max(reg.nr_rx_slots));
    }
    Some(builder)
}

/// Fills `d` as libnetmap fills a registered descriptor, from the open
/// `port`: the register reply, `fd`, `nifp`, `mem` and the first/last ring
/// ids. Returns the `nmem_d` it hands out, made here.
fn fill(d: &mut nmport_d, port: &Netmap) -> *mut nmem_d {
    let region = port.raw_region();
    let base = region.cast::<u8>().as_ptr();
    let nifp = port.raw_if().as_ptr();
    let (tx_slots, rx_slots) = port.num_slots();
    // SAFETY: `nifp` points at the open port's netmap_if; its counts are
    // constant after registration.
    let (nic_tx, nic_rx, host_tx, host_rx) = unsafe {
        (
            ptr::addr_of!((*nifp).ni_tx_rings).read(),
            ptr::addr_of!((*nifp).ni_rx_rings).read(),
            ptr::addr_of!((*nifp).ni_host_tx_rings).read(),
            ptr::addr_of!((*nifp).ni_host_rx_rings).read(),
        )
    };
    let mem = Box::into_raw(Box::new(nmem_d {
        mem_id: port.mem_id(),
        refcount: 1,
        mem: base.cast(),
        size: region.len(),
        ..nmem_d::default()
    }));
    d.reg.nr_offset = (nifp as usize - base as usize) as u64;
    d.reg.nr_memsize = region.len() as u64;
    d.reg.nr_tx_slots = tx_slots;
    d.reg.nr_rx_slots = rx_slots;
    d.reg.nr_tx_rings = nic_tx as u16;
    d.reg.nr_rx_rings = nic_rx as u16;
    d.reg.nr_host_tx_rings = host_tx as u16;
    d.reg.nr_host_rx_rings = host_rx as u16;
    d.reg.nr_mem_id = port.mem_id();
    d.fd = port.as_raw_fd();
    d.nifp = nifp;
    d.mem = mem;
    (d.first_tx_ring, d.last_tx_ring) = first_last(port.tx_ring_ids(), nic_tx + host_tx);
    (d.first_rx_ring, d.last_rx_ring) = first_last(port.rx_ring_ids(), nic_rx + host_rx);
    d.cur_tx_ring = d.first_tx_ring;
    d.cur_rx_ring = d.first_rx_ring;
    d.register_done = 1;
    d.mmap_done = 1;
    mem
}

/// The first and last ring ids of `r`, of `count` rings, as libnetmap puts
/// them (from its scan of `ring_ofs`): with no ring bound in a direction,
/// `first` is the direction's ring count and `last` one below it.
fn first_last(r: std::ops::Range<u16>, count: u32) -> (u16, u16) {
    if r.is_empty() {
        (count as u16, (count as u16).wrapping_sub(1))
    } else {
        (r.start, r.end - 1)
    }
}

/// Keeps the open `port` and its `mem` in the entry of `d`; fails the call
/// (and frees `mem`) if the entry went away meanwhile.
fn keep(d: &mut nmport_d, port: Netmap, mem: *mut nmem_d, p: &Pending) -> c_int {
    let fd = d.fd;
    match descs().get_mut(&(ptr::from_mut(d) as usize)) {
        Some(desc) => {
            desc.port = Some(Arc::new(Mutex::new(port)));
            desc.fd = fd;
            desc.mem = mem as usize;
            0
        }
        None => {
            // SAFETY: `mem` was just made by `Box::into_raw` and handed to
            // no one who survives this error.
            drop(unsafe { Box::from_raw(mem) });
            fail(p.ctx, libc::EINVAL, &format!("{}: closed while opening", p.given))
        }
    }
}

/// `nmport_open_desc`: registers a prepared descriptor.
///
/// # Safety
/// `d` must be a descriptor of this library that nobody else accesses
/// during the call.
#[cfg(not(feature = "no-open-desc"))]
#[no_mangle]
pub unsafe extern "C" fn nmport_open_desc(d: *mut nmport_d) -> c_int {
    // SAFETY: the caller's contract is `open_desc`'s.
    unsafe { open_desc(d) }
}

/// `nmport_open`: `nmport_prepare` then `nmport_open_desc`.
///
/// # Safety
/// `name` must be a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn nmport_open(name: *const c_char) -> *mut nmport_d {
    // SAFETY: the caller's contract.
    let d = unsafe { nmport_prepare(name) };
    if d.is_null() {
        return d;
    }
    // SAFETY: `d` was just prepared and is known to no one else.
    if unsafe { open_desc(d) } < 0 {
        // SAFETY: as above; it is not used afterwards.
        unsafe { release(d) };
        return ptr::null_mut();
    }
    d
}

/// `nmport_inject`: copies one packet into the first TX ring with room;
/// returns its size, or 0 if no ring had room.
///
/// # Safety
/// `d` must be an open descriptor of this library; `buf` must be readable
/// for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn nmport_inject(d: *mut nmport_d, buf: *const c_void, size: usize) -> c_int {
    let port = descs().get(&(d as usize)).and_then(|desc| desc.port.clone());
    let Some(port) = port else {
        return 0;
    };
    let packet = if size == 0 {
        &[][..]
    } else {
        // SAFETY: the caller's contract: `buf` is readable for `size` bytes.
        unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), size) }
    };
    let port = port.lock().unwrap_or_else(PoisonError::into_inner);
    match port.inject(packet) {
        Ok(()) => c_int::try_from(size).unwrap_or(c_int::MAX),
        Err(_) => 0,
    }
}

// ---------------------------------------------------------------------------
// ioctl and poll
// ---------------------------------------------------------------------------

thread_local! {
    /// Set while this thread runs a sync or poll of ours, so that whatever
    /// that does goes to the C library, never back into this library.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread busy for its lifetime.
struct Busy;

impl Busy {
    /// `None` if this thread is already busy.
    fn enter() -> Option<Busy> {
        let was = BUSY.try_with(|b| b.replace(true)).unwrap_or(true);
        (!was).then_some(Busy)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = BUSY.try_with(|b| b.set(false));
    }
}

/// The definition of `name` that this library's own hides: the next one
/// after this library, else the process's default; never one inside this
/// library. (Its own address cannot be compared directly: taken here, it goes
/// through the GOT, which may well hold the C library's.)
fn next_definition(name: &CStr) -> Option<usize> {
    let here = object_base(ptr::addr_of!(DESCS).cast());
    [libc::RTLD_NEXT, libc::RTLD_DEFAULT]
        .into_iter()
        .find_map(|handle| {
            // SAFETY: `dlsym` with a pseudo-handle and a NUL-terminated name.
            let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
            (!p.is_null() && object_base(p) != here).then_some(p as usize)
        })
}

/// The base address of the loaded object holding `addr` (0 if none).
fn object_base(addr: *const c_void) -> usize {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: `dladdr` inspects the address and fills the `Dl_info` given.
    if unsafe { libc::dladdr(addr, info.as_mut_ptr()) } == 0 {
        return 0;
    }
    // SAFETY: filled by `dladdr` (and zeroed before in any case).
    unsafe { info.assume_init() }.dli_fbase as usize
}

/// `NIOCTXSYNC` as `ioctl` receives it.
const TXSYNC: c_ulong = ffi::NIOCTXSYNC as c_ulong;
/// `NIOCRXSYNC` as `ioctl` receives it.
const RXSYNC: c_ulong = ffi::NIOCRXSYNC as c_ulong;

/// `ioctl` as the C library defines it.
type IoctlFn = unsafe extern "C" fn(c_int, c_ulong, ...) -> c_int;
/// `poll` as the C library defines it.
type PollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int;

/// `ioctl`: `NIOCTXSYNC`/`NIOCRXSYNC` on a descriptor of this library sync
/// its port; everything else goes to the C library's `ioctl`.
///
/// Defined with a fixed third argument (Rust cannot define variadic
/// functions); a variadic call with one pointer-sized argument passes it in
/// the same register on x86-64 and AArch64 Linux.
///
/// # Safety
/// As for the C library's `ioctl`.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, req: c_ulong, arg: *mut c_void) -> c_int {
    let ours = Busy::enter().and_then(|busy| port_by_fd(fd).map(|p| (busy, p)));
    if let Some((_busy, port)) = ours {
        let port = port.lock().unwrap_or_else(PoisonError::into_inner);
        let r = match req {
            TXSYNC => port.txsync(),
            RXSYNC => port.rxsync(),
            _ => {
                set_errno(libc::ENOTTY);
                return -1;
            }
        };
        return match r {
            Ok(()) => 0,
            Err(e) => {
                set_errno(errno_of(&e));
                -1
            }
        };
    }
    static NEXT: OnceLock<Option<usize>> = OnceLock::new();
    forward(&NEXT, c"ioctl", |f| {
        // SAFETY: `f` is the address of the C library's `ioctl`, whose
        // type `IoctlFn` is; the arguments are the caller's.
        let f: IoctlFn = unsafe { std::mem::transmute::<usize, IoctlFn>(f) };
        // SAFETY: the caller's contract is `ioctl`'s.
        unsafe { f(fd, req, arg) }
    })
}

/// `poll`: a single descriptor of this library waits on its port (and, as
/// netmap's poll does, syncs it); anything else goes to the C library's
/// `poll`.
///
/// # Safety
/// As for the C library's `poll`.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, nfds: libc::nfds_t, timeout: c_int) -> c_int {
    let busy = Busy::enter();
    if busy.is_some() && nfds == 1 && !fds.is_null() {
        // SAFETY: the caller passes `nfds` (1) valid pollfds.
        let pfd = unsafe { &mut *fds };
        if let Some(port) = port_by_fd(pfd.fd) {
            let port = port.lock().unwrap_or_else(PoisonError::into_inner);
            let wait = u64::try_from(timeout).ok().map(Duration::from_millis);
            let want_in = pfd.events & libc::POLLIN != 0;
            let want_out = pfd.events & libc::POLLOUT != 0;
            let revents = (|| -> Result<i16, Error> {
                let out =
                    want_out && port.poll_writable(if want_in { Some(Duration::ZERO) } else { wait })?;
                let inn = want_in && port.poll(if out { Some(Duration::ZERO) } else { wait })?;
                Ok(if out { libc::POLLOUT } else { 0 } | if inn { libc::POLLIN } else { 0 })
            })()
            .unwrap_or(libc::POLLERR);
            pfd.revents = revents;
            return c_int::from(revents != 0);
        }
    }
    drop(busy);
    static NEXT: OnceLock<Option<usize>> = OnceLock::new();
    forward(&NEXT, c"poll", |f| {
        // SAFETY: `f` is the address of the C library's `poll`, whose
        // type `PollFn` is.
        let f: PollFn = unsafe { std::mem::transmute::<usize, PollFn>(f) };
        // SAFETY: the caller's contract is `poll`'s.
        unsafe { f(fds, nfds, timeout) }
    })
}

/// Hands a call on to the definition of `name` that this library's own
/// hides (its address found once, into `next`): `call` makes it; with no
/// such definition the call fails with `ENOSYS`.
fn forward(next: &OnceLock<Option<usize>>, name: &CStr, call: impl FnOnce(usize) -> c_int) -> c_int {
    match *next.get_or_init(|| next_definition(name)) {
        Some(f) => call(f),
        None => {
            set_errno(libc::ENOSYS);
            -1
        }
    }
}
