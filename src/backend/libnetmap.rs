//! `libnetmap.so`, loaded at run time, and the ports opened through it.
//!
//! # Finding the library
//!
//! The library is looked up once per process ([`load`]): the path in the
//! `NETMAP_LIBRARY` environment variable if it is set (and then only that
//! path), else the names in [`DEFAULT_NAMES`] in order. A name that cannot be
//! opened moves the search on to the next one; a library that opens but lacks
//! a required entry point ends the search and names the symbol, since a later
//! name is unlikely to be a better libnetmap than the first one found.
//!
//! [`LibNetmap`] owns the library handle together with plain function
//! pointers copied out of it, so the pointers can never outlive the code they
//! point into. The library is opened with `RTLD_NOW | RTLD_LOCAL`: every
//! undefined symbol is resolved at load time (a broken library fails here,
//! not at its first call), and its symbols do not leak into the global
//! namespace. A path is first checked to be a regular file (the loader would
//! block forever reading a FIFO) and not an ELF file cut short, on which
//! glibc's loader would crash the process instead of failing.
//!
//! Required: `nmport_open`, `nmport_close`, `nmport_prepare`,
//! `nmport_open_desc`, `nmport_undo_prepare`, `nmport_inject`. Optional, each
//! needed only by one feature: `nmport_extmem` ([`NetmapBuilder::extmem`]),
//! `nmport_offset` ([`NetmapBuilder::offsets`]), `nmctx_get` (capturing the
//! messages of `nmport_prepare`). `nmport_open` itself is never called (ports
//! open in its two steps, with the builder's settings applied between them),
//! but a library without it is no libnetmap.
//!
//! # Opening a port
//!
//! [`open`] gives `nmport_prepare` the port's name exactly as the user wrote
//! it (normalized with a `netmap:` prefix), so the site's library parses it
//! with its own grammar and options; what the builder set beyond the name
//! (ring counts, ring selection, flags, offsets, external memory) is written
//! into the prepared descriptor before `nmport_open_desc`. The registered
//! descriptor then yields what the raw kernel path computes itself: the fd,
//! the `netmap_if`, the memory region (`mem`), the register reply (`reg`) and
//! the first/last TX and RX ring ids. `nmport_close` undoes it all when the
//! port drops; libnetmap shares one mapping between the ports of one memory
//! region and unmaps it with the last of them.
//!
//! # Sync and poll: the library's own `ioctl` and `poll`
//!
//! libnetmap has no sync or poll entry points: its users call
//! `ioctl(d->fd, NIOCTXSYNC)` and `poll(d->fd)` themselves. So do ports opened
//! here, through the `ioctl` and `poll` of the library's namespace: if the
//! library *defines* `ioctl`/`poll` itself (a libnetmap built over another
//! netmap implementation, such as a user-space one, brings its own), those are
//! used for its ports; otherwise (every libnetmap built over the kernel) the C
//! library's, bound exactly as the library's own calls are. The check is
//! `dladdr`: a symbol counts as the library's own only if it lies inside the
//! library's object.
//!
//! # Threads and error messages
//!
//! libnetmap keeps process-global state: its default context (`nmctx`), with
//! an error callback that prints to stderr and a list of mapped regions. This
//! crate serializes every libnetmap call sequence it makes (prepare, the
//! options, open; close; inject) with one process-wide mutex of its own, so
//! ports may be opened and closed from many threads at once whatever the
//! library was built with. It does not call `nmctx_set_threadsafe`: upstream
//! that function runs as a constructor when the library loads, and running it
//! again would re-initialize a mutex that may be held. Within each sequence the
//! context's error callback is pointed at a function that records each message
//! for the calling thread (and restored afterwards), so a failure's [`Error`]
//! carries the library's own words instead of a line on stderr.
//!
//! [`NetmapBuilder::extmem`]: crate::NetmapBuilder::extmem
//! [`NetmapBuilder::offsets`]: crate::NetmapBuilder::offsets

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString, OsStr, OsString};
use std::fmt;
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};

use crate::backend::kernel::{self, KernelPort, RegisterExtras};
use crate::backend::sys::{self, Deadline, PollFn};
use crate::backend::{KernelFd, Mapping, MemDomain, SyncDir};
use crate::error::{BackendKind, Error, Refusal, Refusals, Result};
use crate::ffi::{self, netmap_if, nmctx, nmem_d, nmport_d, nmreq_header, nmreq_register};
use crate::ring::IfTable;
use crate::spec::{self, PortSpec};

/// The environment variable that names the library to load.
pub(crate) const ENV_VAR: &str = "NETMAP_LIBRARY";

/// Names tried, in order, when `NETMAP_LIBRARY` is not set.
///
/// netmap's own build makes only a static archive, so on Linux a shared
/// libnetmap is a local build, usually installed as `libnetmap.so` (or with a
/// versioned soname, `libnetmap.so.1`). FreeBSD's base system builds libnetmap
/// with the default major version of its system libraries, 5.
pub(crate) const DEFAULT_NAMES: &[&str] = &["libnetmap.so", "libnetmap.so.1", "libnetmap.so.5"];

/// The request type of the C library's `ioctl`: `int` on musl, `unsigned
/// long` on glibc and the BSDs.
#[cfg(all(target_os = "linux", target_env = "musl"))]
type IoctlReq = libc::c_int;
/// The request type of the C library's `ioctl`: `int` on musl, `unsigned
/// long` on glibc and the BSDs.
#[cfg(not(all(target_os = "linux", target_env = "musl")))]
type IoctlReq = libc::c_ulong;

/// `ioctl`, declared as the C library declares it (variadic).
///
/// A library's own `ioctl` may be defined with a fixed third argument (as the
/// test stub's is, Rust cannot define variadic functions); calling it through
/// this type is ABI-compatible on the targets this crate supports (x86-64 and
/// AArch64 Linux, x86-64 FreeBSD), where variadic arguments travel in the
/// same registers as fixed ones.
type IoctlFn = unsafe extern "C" fn(c_int, IoctlReq, ...) -> c_int;

/// Required entry points that are only checked for, never called.
const REQUIRED_UNCALLED: &[&str] = &["nmport_open"];

/// Optional entry points that are only reported (by `probe`), never called.
const OPTIONAL_REPORTED: &[&str] = &[
    "nmport_extmem_from_file",
    "nmport_clone",
    "nmport_enable_option",
    "nmport_disable_option",
    "nmctx_set_threadsafe",
];

/// libnetmap's entry points, resolved from one loaded copy of the library.
///
/// The function pointers stay valid as long as `_lib` is alive; `_lib` is only
/// dropped with the whole struct, and the struct is shared as an
/// `Arc<LibNetmap>`, so holding the `Arc` keeps every pointer callable.
#[derive(Debug)]
pub(crate) struct LibNetmap {
    /// The name or path the library was opened by.
    pub(crate) path: String,
    /// Every entry point of libnetmap's this crate knows that the library
    /// exports, required ones first.
    pub(crate) symbols: Vec<&'static str>,
    /// Optional entry points this copy of libnetmap does not export.
    pub(crate) missing_optional: Vec<&'static str>,
    /// Which of `ioctl` and `poll` the library defines itself (and its
    /// ports are therefore synced and polled through).
    pub(crate) own_io: Vec<&'static str>,
    /// Whose memory its ports' regions are: the kernel's, unless the
    /// library brings its own `ioctl` (and so its own netmap).
    pub(crate) domain: MemDomain,

    /// `nmport_close`.
    nmport_close: ffi::nmport_close_t,
    /// `nmport_prepare`.
    nmport_prepare: ffi::nmport_prepare_t,
    /// `nmport_open_desc`.
    nmport_open_desc: ffi::nmport_open_desc_t,
    /// `nmport_undo_prepare`.
    nmport_undo_prepare: ffi::nmport_undo_prepare_t,
    /// `nmport_inject`.
    nmport_inject: ffi::nmport_inject_t,

    /// `nmport_extmem`, if exported.
    nmport_extmem: Option<ffi::nmport_extmem_t>,
    /// `nmport_offset`, if exported.
    nmport_offset: Option<ffi::nmport_offset_t>,
    /// `nmctx_get`, if exported.
    nmctx_get: Option<ffi::nmctx_get_t>,

    /// The `ioctl` its ports are synced with (see the module docs).
    ioctl: IoctlFn,
    /// The `poll` its ports are waited on with.
    poll: PollFn,

    /// The loaded library. Declared last so that it is dropped (and the
    /// library possibly unloaded) after everything above; nothing above needs
    /// it for dropping, but the order states the dependency.
    _lib: Library,
}

/// Why one name could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Why {
    /// The dynamic loader found no such file; carries its message.
    NotFound(String),
    /// The file exists but the loader refused it (not a shared library, wrong
    /// architecture, unresolved dependency, ...); carries its message.
    NotLoadable(String),
    /// The library loaded but does not export this required entry point.
    MissingSymbol(&'static str),
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::NotFound(msg) => write!(f, "not found ({msg})"),
            Why::NotLoadable(msg) => write!(f, "cannot be loaded ({msg})"),
            Why::MissingSymbol(sym) => write!(
                f,
                "loaded, but does not export `{sym}` (not a libnetmap, or too old)"
            ),
        }
    }
}

/// One name tried, and why it was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// The name or path given to the dynamic loader.
    pub(crate) name: String,
    /// Why it failed.
    pub(crate) why: Why,
}

/// Why no usable libnetmap was loaded: every name tried, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadFailure {
    /// Whether the single name tried came from `NETMAP_LIBRARY`.
    pub(crate) from_env: bool,
    /// The names tried, each with its reason; never empty.
    pub(crate) attempts: Vec<Attempt>,
}

impl LoadFailure {
    /// The required symbol that stopped the search, if that is what stopped it.
    pub(crate) fn missing_symbol(&self) -> Option<&'static str> {
        match self.attempts.last()?.why {
            Why::MissingSymbol(sym) => Some(sym),
            _ => None,
        }
    }

    /// The name to blame: the library that was found but unusable, or the
    /// list of names when none was found.
    fn blamed_path(&self) -> String {
        match self
            .attempts
            .iter()
            .rev()
            .find(|a| !matches!(a.why, Why::NotFound(_)))
        {
            Some(a) => a.name.clone(),
            None => self
                .attempts
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

impl LoadFailure {
    /// Whether every name tried was simply absent.
    fn all_not_found(&self) -> bool {
        self.attempts.iter().all(|a| matches!(a.why, Why::NotFound(_)))
    }
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from_env {
            write!(f, "{ENV_VAR} is set, so only it was tried: ")?;
        } else if self.attempts.len() > 1 && self.all_not_found() {
            let names: Vec<&str> = self.attempts.iter().map(|a| a.name.as_str()).collect();
            return write!(f, "not installed (none of {} found)", names.join(", "));
        }
        for (i, a) in self.attempts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", a.name, a.why)?;
        }
        Ok(())
    }
}

impl From<&LoadFailure> for Error {
    fn from(e: &LoadFailure) -> Self {
        Error::Library {
            path: e.blamed_path(),
            symbol: e.missing_symbol().map(str::to_owned),
            reason: e.to_string(),
        }
    }
}

impl From<LoadFailure> for Error {
    fn from(e: LoadFailure) -> Self {
        Error::from(&e)
    }
}

/// Loads libnetmap once per process and returns the shared result.
///
/// Later calls return the first call's outcome, even if `NETMAP_LIBRARY`
/// changed in between.
pub(crate) fn load() -> &'static Result<Arc<LibNetmap>, LoadFailure> {
    static LOADED: OnceLock<Result<Arc<LibNetmap>, LoadFailure>> = OnceLock::new();
    LOADED.get_or_init(|| search(std::env::var_os(ENV_VAR)).map(Arc::new))
}

/// Runs the search, given the value of `NETMAP_LIBRARY` (an empty value
/// counts as unset).
fn search(env: Option<OsString>) -> Result<LibNetmap, LoadFailure> {
    match env.filter(|v| !v.is_empty()) {
        Some(path) => search_names(&[path], true),
        None => {
            let names: Vec<OsString> = DEFAULT_NAMES.iter().map(OsString::from).collect();
            search_names(&names, false)
        }
    }
}

/// Tries `names` in order: the first that opens with every required symbol
/// wins; one that cannot be opened moves on; one that lacks a required
/// symbol stops the search.
fn search_names(names: &[OsString], from_env: bool) -> Result<LibNetmap, LoadFailure> {
    let mut attempts = Vec::with_capacity(names.len());
    for name in names {
        match open_one(name) {
            Ok(lib) => return Ok(lib),
            Err(why) => {
                let stop = matches!(why, Why::MissingSymbol(_));
                attempts.push(Attempt {
                    name: name.to_string_lossy().into_owned(),
                    why,
                });
                if stop {
                    break;
                }
            }
        }
    }
    Err(LoadFailure { from_env, attempts })
}

/// Opens one name and resolves every entry point.
fn open_one(name: &OsStr) -> Result<LibNetmap, Why> {
    if name.as_bytes().contains(&b'/') {
        check_file(Path::new(name)).map_err(Why::NotLoadable)?;
    }
    // SAFETY: opening a library runs its initialisers (and, on unload, its
    // finalisers). We accept that for the library the user named through
    // NETMAP_LIBRARY or installed as libnetmap: loading it is the whole point,
    // and libnetmap's own initialiser only sets up its default context.
    let lib = unsafe { Library::open(Some(name), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| classify_open_error(name, &e.to_string()))?;

    let mut symbols = Vec::new();
    for &sym in REQUIRED_UNCALLED {
        if !exports(&lib, sym) {
            return Err(Why::MissingSymbol(sym));
        }
        symbols.push(sym);
    }
    // Each use pairs a symbol with its `ffi::<symbol>_t` type, which is
    // declared from that symbol's prototype in libnetmap.h.
    macro_rules! required {
        ($name:ident: $ty:ty) => {{
            // SAFETY: `$ty` is the `unsafe extern "C" fn` type declared for
            // this very symbol (see the pairing note above).
            match unsafe { symbol::<$ty>(&lib, stringify!($name)) } {
                Some(f) => {
                    symbols.push(stringify!($name));
                    f
                }
                None => return Err(Why::MissingSymbol(stringify!($name))),
            }
        }};
    }
    let nmport_close = required!(nmport_close: ffi::nmport_close_t);
    let nmport_prepare = required!(nmport_prepare: ffi::nmport_prepare_t);
    let nmport_open_desc = required!(nmport_open_desc: ffi::nmport_open_desc_t);
    let nmport_undo_prepare = required!(nmport_undo_prepare: ffi::nmport_undo_prepare_t);
    let nmport_inject = required!(nmport_inject: ffi::nmport_inject_t);

    let mut missing_optional = Vec::new();
    macro_rules! optional {
        ($name:ident: $ty:ty) => {{
            // SAFETY: as for `required!`: `$ty` is the fn pointer type
            // declared for this symbol.
            let f = unsafe { symbol::<$ty>(&lib, stringify!($name)) };
            match f {
                Some(_) => symbols.push(stringify!($name)),
                None => missing_optional.push(stringify!($name)),
            }
            f
        }};
    }
    let nmport_extmem = optional!(nmport_extmem: ffi::nmport_extmem_t);
    let nmport_offset = optional!(nmport_offset: ffi::nmport_offset_t);
    let nmctx_get = optional!(nmctx_get: ffi::nmctx_get_t);
    for &sym in OPTIONAL_REPORTED {
        if exports(&lib, sym) {
            symbols.push(sym);
        } else {
            missing_optional.push(sym);
        }
    }

    // Where the library's own code lies: any of its required entry points.
    let anchor = nmport_prepare as *const c_void;
    let mut own_io = Vec::new();
    // SAFETY: `IoctlFn` is the prototype of `ioctl` in <sys/ioctl.h>.
    let ioctl = match unsafe { own_symbol::<IoctlFn>(&lib, "ioctl", anchor) } {
        Some(f) => {
            own_io.push("ioctl");
            f
        }
        None => libc::ioctl as IoctlFn,
    };
    let domain = if own_io.contains(&"ioctl") {
        static LOADED: AtomicU32 = AtomicU32::new(0);
        MemDomain::Library(LOADED.fetch_add(1, Ordering::Relaxed))
    } else {
        MemDomain::Kernel
    };
    // SAFETY: `PollFn` is the prototype of `poll` in <poll.h>.
    let poll = match unsafe { own_symbol::<PollFn>(&lib, "poll", anchor) } {
        Some(f) => {
            own_io.push("poll");
            f
        }
        None => libc::poll as PollFn,
    };

    Ok(LibNetmap {
        path: name.to_string_lossy().into_owned(),
        symbols,
        missing_optional,
        own_io,
        domain,
        nmport_close,
        nmport_prepare,
        nmport_open_desc,
        nmport_undo_prepare,
        nmport_inject,
        nmport_extmem,
        nmport_offset,
        nmctx_get,
        ioctl,
        poll,
        _lib: lib,
    })
}

/// Looks up `name` in `lib` and copies its address out as an `F`; `None` if
/// the symbol is absent or resolves to null.
///
/// # Safety
/// `F` must be an `unsafe extern "C" fn(..)` pointer type whose signature
/// matches the C prototype of `name`, and the returned pointer may only be
/// called while `lib` stays loaded.
unsafe fn symbol<F: Copy>(lib: &Library, name: &str) -> Option<F> {
    let cname = nul_terminated(name);
    // SAFETY: `F` is a fn pointer type (caller's contract), so `Option<F>` is
    // one pointer wide with `None` as null: reading the symbol's address as
    // `Option<F>` turns a null address into `None` instead of an invalid fn
    // pointer, and a non-null one into a pointer of the right signature.
    let sym = unsafe { lib.get::<Option<F>>(&cname) }.ok()?;
    *sym
}

/// Whether `lib` (or a library it depends on) exports `name` at a non-null
/// address.
fn exports(lib: &Library, name: &str) -> bool {
    // SAFETY: the symbol's address is only read as a data pointer and
    // compared with null, never dereferenced or called.
    unsafe { lib.get::<*mut c_void>(&nul_terminated(name)) }.is_ok_and(|s| !s.is_null())
}

/// `name` as the library's own definition: found through `lib` and lying in
/// the same loaded object as `anchor` (an entry point of the library). `None`
/// when `lib` only reaches `name` through a library it depends on.
///
/// # Safety
/// As for [`symbol`].
unsafe fn own_symbol<F: Copy>(lib: &Library, name: &str, anchor: *const c_void) -> Option<F> {
    let cname = nul_terminated(name);
    // SAFETY: only the address is read, as a data pointer.
    let addr: *mut c_void = *unsafe { lib.get::<*mut c_void>(&cname) }.ok()?;
    if addr.is_null() || object_base(addr)? != object_base(anchor)? {
        return None;
    }
    // SAFETY: the caller's contract on `F`; the address is non-null.
    unsafe { symbol::<F>(lib, name) }
}

/// The base address of the loaded object that holds `addr`, per `dladdr`.
fn object_base(addr: *const c_void) -> Option<usize> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: `dladdr` only inspects the address and writes one `Dl_info`
    // into the buffer it is given, which is large enough and writable.
    let found = unsafe { libc::dladdr(addr, info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: `dladdr` succeeded, so it filled `info` (and it was zeroed
    // beforehand in any case).
    let base = unsafe { info.assume_init() }.dli_fbase as usize;
    (base != 0).then_some(base)
}

/// `name` followed by a NUL byte, for `dlsym`.
fn nul_terminated(name: &str) -> Vec<u8> {
    let mut cname = Vec::with_capacity(name.len() + 1);
    cname.extend_from_slice(name.as_bytes());
    cname.push(0);
    cname
}

/// Refuses what `dlopen` must not be given: anything but a regular file
/// (after symlinks), which it would open and read (a FIFO with no writer
/// blocks it forever, a device may do anything), and an ELF file that the
/// dynamic loader would map past its end: one whose program headers, or a
/// loadable or dynamic segment, run beyond the end of the file (a library
/// cut short by an interrupted copy). glibc's loader does not check this;
/// it maps the segment and dies of `SIGBUS` when it touches the missing
/// pages, taking the process with it. A path that does not exist or cannot
/// be read, or a regular file that is not ELF, is left to `dlopen`, which
/// refuses it cleanly.
fn check_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let not_regular = |m: &std::fs::Metadata| {
        let t = m.file_type();
        (!t.is_file()).then(|| format!("not a regular file (it is {})", file_kind(&t)))
    };
    // `stat` first, so that a FIFO or a device is never opened.
    if let Some(why) = std::fs::metadata(path).ok().as_ref().and_then(not_regular) {
        return Err(why);
    }
    // O_NONBLOCK: should the path have become a FIFO since, the open does
    // not wait for a writer (and the `fstat` below refuses it).
    let Ok(file) = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    else {
        return Ok(());
    };
    let Ok(meta) = file.metadata() else {
        return Ok(());
    };
    if let Some(why) = not_regular(&meta) {
        return Err(why);
    }
    let len = meta.len();
    let mut ident = [0u8; 64];
    let got = file.read_at(&mut ident, 0).unwrap_or(0);
    if got < 16 || ident[..4] != *b"\x7fELF" {
        return Ok(());
    }
    let wide = ident[4] == 2; // ELFCLASS64, else ELFCLASS32
    let big = ident[5] == 2; // ELFDATA2MSB, else ELFDATA2LSB
    let cut = |what: String| {
        Err(format!(
            "{what} runs past the end of the file ({len} bytes): a truncated library"
        ))
    };
    let header = if wide { 64 } else { 52 };
    if (got as u64) < header {
        return cut("the ELF header".into());
    }
    let uint = |b: &[u8]| -> u64 {
        let fold = |acc: u64, &x: &u8| (acc << 8) | u64::from(x);
        if big {
            b.iter().fold(0, fold)
        } else {
            b.iter().rev().fold(0, fold)
        }
    };
    // e_phoff, e_phentsize, e_phnum.
    let (phoff, phentsize, phnum) = if wide {
        (uint(&ident[32..40]), uint(&ident[54..56]), uint(&ident[56..58]))
    } else {
        (uint(&ident[28..32]), uint(&ident[42..44]), uint(&ident[44..46]))
    };
    let min_entry = if wide { 56 } else { 32 };
    if phnum == 0 || phentsize < min_entry {
        return Ok(());
    }
    let table_len = phentsize * phnum;
    if phoff.checked_add(table_len).is_none_or(|end| end > len) {
        return cut("the program header table".into());
    }
    let mut table = vec![0u8; table_len as usize];
    if file.read_exact_at(&mut table, phoff).is_err() {
        return cut("the program header table".into());
    }
    for entry in table.chunks_exact(phentsize as usize) {
        // p_type, p_offset, p_filesz.
        let (kind, offset, filesz) = if wide {
            (uint(&entry[0..4]), uint(&entry[8..16]), uint(&entry[32..40]))
        } else {
            (uint(&entry[0..4]), uint(&entry[4..8]), uint(&entry[16..20]))
        };
        const PT_LOAD: u64 = 1;
        const PT_DYNAMIC: u64 = 2;
        if (kind == PT_LOAD || kind == PT_DYNAMIC) && offset.checked_add(filesz).is_none_or(|end| end > len) {
            return cut(format!("a segment at offset {offset} of {filesz} bytes"));
        }
    }
    Ok(())
}

/// What kind of file `t` is, in words, for a refusal.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "of an unknown kind"
    }
}

/// Sorts a `dlopen` failure into "absent" and "present but refused", keeping
/// the loader's message (without the name it usually starts with).
fn classify_open_error(name: &OsStr, msg: &str) -> Why {
    let msg = msg
        .strip_prefix(&*name.to_string_lossy())
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(msg);
    let absent = if name.as_bytes().contains(&b'/') {
        // A path: absent exactly when nothing is there.
        !Path::new(name).exists()
    } else {
        // A bare name searched by the loader: only its message tells.
        let m = msg.to_ascii_lowercase();
        m.contains("no such file") || m.contains("not found") || m.contains("cannot open")
    };
    if absent {
        Why::NotFound(msg.to_owned())
    } else {
        Why::NotLoadable(msg.to_owned())
    }
}

// ---------------------------------------------------------------------------
// Calls into the library: one lock, and the messages of each call
// ---------------------------------------------------------------------------

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
fn errno() -> c_int {
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
struct Call {
    /// Contexts whose callback was replaced, with the callback and verbosity
    /// they had.
    saved: Vec<(*mut nmctx, ffi::nmctx_error_cb, c_int)>,
    _guard: MutexGuard<'static, ()>,
}

impl Call {
    /// Takes the lock and starts recording messages (of the default
    /// context, when the library says which it is).
    fn begin(lib: &LibNetmap) -> Call {
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
    unsafe fn capture(&mut self, ctx: *mut nmctx) {
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
    fn messages(&self) -> String {
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

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// A registered libnetmap port: the `nmport_d` and what must outlive it.
///
/// Shared (as an `Arc`) by the port's [`LibFd`] and its [`Mapping`], so the
/// region stays mapped until both are gone; then `nmport_close` runs.
struct Descriptor {
    d: NonNull<nmport_d>,
    /// The descriptor's context, for capturing what `nmport_close` says.
    ctx: *mut nmctx,
    fd: RawFd,
    name: String,
    /// External memory this crate mapped for the port: fields drop after
    /// `drop` has run `nmport_close`, so it is unmapped after the close.
    _extmem: Option<ExtmemFile>,
    lib: Arc<LibNetmap>,
}

// SAFETY: the descriptor is owned by this struct alone; libnetmap state
// behind it is only touched by calls made under `LOCK` (`nmport_close`,
// `nmport_inject`), and the fields read without the lock (`fd`) are constant
// after `nmport_open_desc`. So it may move to, and be shared with, any thread.
unsafe impl Send for Descriptor {}
// SAFETY: as above: every access through `&Descriptor` that reaches libnetmap
// state takes `LOCK` first.
unsafe impl Sync for Descriptor {}

impl fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Descriptor")
            .field("name", &self.name)
            .field("fd", &self.fd)
            .field("library", &self.lib.path)
            .finish_non_exhaustive()
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        let mut call = Call::begin(&self.lib);
        // SAFETY: `ctx` came from the open descriptor and lives as long as
        // the library, which `self.lib` keeps loaded.
        unsafe { call.capture(self.ctx) };
        // SAFETY: `d` was returned by `nmport_prepare`, opened by
        // `nmport_open_desc` and is closed exactly once, here; no ring handle
        // or mapping of it is left (both hold this `Arc`).
        unsafe { (self.lib.nmport_close)(self.d.as_ptr()) };
    }
}

/// A file mapped as a port's external memory.
#[derive(Debug)]
struct ExtmemFile {
    base: NonNull<c_void>,
    len: usize,
}

// SAFETY: a plain address range owned by this value; nothing in it is read
// through the value itself.
unsafe impl Send for ExtmemFile {}
// SAFETY: as above; `&ExtmemFile` gives no access to the memory.
unsafe impl Sync for ExtmemFile {}

impl ExtmemFile {
    /// Maps all of `path`, shared and writable, as `nmport_extmem_from_file`
    /// would.
    fn map(path: &str, port: &str) -> Result<ExtmemFile> {
        let what = |e: io::Error| Error::io(format!("mapping the extmem file {path} for {port}"), e);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(what)?;
        let len = file.metadata().map_err(what)?.len();
        let len = usize::try_from(len).ok().filter(|&l| l > 0).ok_or_else(|| {
            what(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty or oversized file",
            ))
        })?;
        // SAFETY: a fresh shared mapping of the whole file at an address the
        // kernel picks; it aliases no Rust object.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(what(io::Error::last_os_error()));
        }
        let base = NonNull::new(p).ok_or_else(|| what(io::Error::from(io::ErrorKind::InvalidData)))?;
        Ok(ExtmemFile { base, len })
    }
}

impl Drop for ExtmemFile {
    fn drop(&mut self) {
        // SAFETY: `base..base+len` was mapped by `map` and is unmapped only
        // here; the port that used it was closed before this runs.
        unsafe {
            libc::munmap(self.base.as_ptr(), self.len);
        }
    }
}

/// The handle of a libnetmap port: syncs and polls its fd through the
/// library's `ioctl` and `poll`.
#[derive(Debug)]
struct LibFd {
    desc: Arc<Descriptor>,
}

impl LibFd {
    /// `ioctl(fd, req, arg)` through the library's namespace, retried on
    /// `EINTR`.
    ///
    /// # Safety
    /// `arg` must be what request `req` expects (null for the sync
    /// requests).
    unsafe fn ioctl(&self, req: u64, arg: *mut c_void) -> io::Result<()> {
        sys::retry(|| {
            // SAFETY: `ioctl` is callable while the library is loaded (the
            // descriptor holds it); the fd is open until the descriptor
            // closes; the caller vouches for `arg`.
            sys::cvt(unsafe { (self.desc.lib.ioctl)(self.desc.fd, req as IoctlReq, arg) })
        })
        .map(drop)
    }
}

impl KernelFd for LibFd {
    unsafe fn ctrl(&mut self, hdr: &mut nmreq_header) -> io::Result<()> {
        // SAFETY: NIOCCTRL takes a `struct nmreq_header *`; the caller
        // guarantees its body and options.
        unsafe { self.ioctl(ffi::NIOCCTRL, ptr::from_mut(hdr).cast()) }
    }

    fn mmap(&mut self, _len: usize) -> io::Result<Mapping> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a libnetmap port is mapped by the library, once, at open",
        ))
    }

    fn sync(&self, dir: SyncDir) -> io::Result<()> {
        let req = match dir {
            SyncDir::Tx => ffi::NIOCTXSYNC,
            SyncDir::Rx => ffi::NIOCRXSYNC,
        };
        // SAFETY: the sync requests take no argument.
        unsafe { self.ioctl(req, ptr::null_mut()) }
    }

    fn poll(&self, events: i16, deadline: Deadline) -> io::Result<i16> {
        // SAFETY: the library's `poll` is `poll(2)` or its own equivalent,
        // callable while the library is loaded (the descriptor holds it);
        // the fd is open until the descriptor closes.
        unsafe { sys::poll_with(self.desc.lib.poll, self.desc.fd, events, deadline) }
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd belongs to the descriptor, which `self` keeps open
        // for at least the borrow's lifetime.
        unsafe { BorrowedFd::borrow_raw(self.desc.fd) }
    }

    fn inject(&self, packet: &[u8]) -> Option<bool> {
        let desc = &*self.desc;
        let mut call = Call::begin(&desc.lib);
        // SAFETY: the context lives as long as the library.
        unsafe { call.capture(desc.ctx) };
        // SAFETY: `d` is an open descriptor; `packet` is readable for its
        // length; the library only reads it. The caller (`Netmap::inject`)
        // made sure no TX ring handle is alive, so the library's writes to
        // the TX rings race with nothing of ours.
        let n = unsafe { (desc.lib.nmport_inject)(desc.d.as_ptr(), packet.as_ptr().cast(), packet.len()) };
        Some(n > 0 || packet.is_empty())
    }
}

/// What the descriptor holds once registered: a snapshot taken under the
/// lock.
struct Opened {
    fd: RawFd,
    nifp: *mut netmap_if,
    mem: *mut nmem_d,
    ctx: *mut nmctx,
    reg: nmreq_register,
    tx: (u16, u16),
    rx: (u16, u16),
}

/// Opens `spec` through libnetmap: `nmport_prepare`, the builder's settings,
/// `nmport_open_desc`.
pub(crate) fn open(lib: &Arc<LibNetmap>, spec: &PortSpec, extras: RegisterExtras) -> Result<KernelPort> {
    let name = CString::new(spec.text.as_str()).map_err(|e| Error::InvalidPortSpec {
        spec: spec.text.clone(),
        position: e.nul_position(),
        expected: "a name without NUL bytes".into(),
    })?;
    // What the name alone asks for; the builder's calls are the difference.
    let named = spec::parse(&spec.text).unwrap_or_else(|_| spec.clone());
    let offset = spec.offset.as_ref().filter(|_| spec.offset != named.offset);
    let extmem = spec.extmem.as_ref().filter(|_| spec.extmem != named.extmem);
    let nmport_offset = match offset {
        Some(_) => Some(
            lib.nmport_offset
                .ok_or_else(|| missing(lib, "nmport_offset", "buffer offsets"))?,
        ),
        None => None,
    };
    let extmem = match extmem {
        Some(x) => {
            let f = lib
                .nmport_extmem
                .ok_or_else(|| missing(lib, "nmport_extmem", "external memory"))?;
            Some((f, ExtmemFile::map(&x.file, &spec.text)?))
        }
        None => None,
    };

    let mut call = Call::begin(lib);
    // SAFETY: `name` is NUL-terminated and outlives the call.
    let d = unsafe { (lib.nmport_prepare)(name.as_ptr()) };
    let Some(d) = NonNull::new(d) else {
        return Err(library_error(lib, spec, "nmport_prepare", errno(), &call, None));
    };
    let d_ptr = d.as_ptr();
    // SAFETY: `d` is a live descriptor fresh from `nmport_prepare`; its
    // `ctx` is one of the library's contexts.
    unsafe { call.capture(ptr::addr_of!((*d_ptr).ctx).read()) };
    // SAFETY: as above; `reg` is plain data owned by the descriptor, which
    // nothing else touches before `nmport_open_desc`.
    let asked = unsafe {
        let reg = ptr::addr_of_mut!((*d_ptr).reg);
        let asked = builder_settings(reg.read(), spec, &named, extras);
        reg.write(asked);
        asked
    };
    // From here on, a failure must undo the prepare.
    let fail = |call: &Call, step: &str, code: c_int| {
        let e = library_error(lib, spec, step, code, call, Some(&asked));
        // SAFETY: `d` came from `nmport_prepare` and was not opened.
        unsafe { (lib.nmport_undo_prepare)(d.as_ptr()) };
        e
    };
    if let (Some(f), Some(o)) = (nmport_offset, offset) {
        // SAFETY: `f` is `nmport_offset`, `d` a prepared descriptor.
        if unsafe { f(d_ptr, o.initial, o.maxoff, o.bits, o.mingap) } < 0 {
            return Err(fail(&call, "nmport_offset", errno()));
        }
    }
    if let Some((f, x)) = &extmem {
        // SAFETY: `f` is `nmport_extmem`, `d` a prepared descriptor; the
        // memory stays mapped until after `nmport_close` (it moves into the
        // `Descriptor`, which unmaps it after closing).
        if unsafe { f(d_ptr, x.base.as_ptr(), x.len) } < 0 {
            return Err(fail(&call, "nmport_extmem", errno()));
        }
    }
    // SAFETY: `d` is a prepared descriptor.
    if unsafe { (lib.nmport_open_desc)(d_ptr) } < 0 {
        return Err(fail(&call, "nmport_open_desc", errno()));
    }
    // SAFETY: `d` is now an open descriptor; its fields are plain data,
    // read through the raw pointer.
    let o = unsafe {
        Opened {
            fd: ptr::addr_of!((*d_ptr).fd).read(),
            nifp: ptr::addr_of!((*d_ptr).nifp).read(),
            mem: ptr::addr_of!((*d_ptr).mem).read(),
            ctx: ptr::addr_of!((*d_ptr).ctx).read(),
            reg: ptr::addr_of!((*d_ptr).reg).read(),
            tx: (
                ptr::addr_of!((*d_ptr).first_tx_ring).read(),
                ptr::addr_of!((*d_ptr).last_tx_ring).read(),
            ),
            rx: (
                ptr::addr_of!((*d_ptr).first_rx_ring).read(),
                ptr::addr_of!((*d_ptr).last_rx_ring).read(),
            ),
        }
    };
    // The `nmem_d` is the library's; read it while its list is ours alone.
    // SAFETY: a non-null `mem` of an open descriptor points at its region
    // descriptor.
    let region = NonNull::new(o.mem).map(|m| unsafe {
        (
            ptr::addr_of!((*m.as_ptr()).mem).read(),
            ptr::addr_of!((*m.as_ptr()).size).read(),
        )
    });
    drop(call);

    let desc = Arc::new(Descriptor {
        d,
        ctx: o.ctx,
        fd: o.fd,
        name: spec.text.clone(),
        _extmem: extmem.map(|(_, x)| x),
        lib: Arc::clone(lib),
    });
    // Any error below drops `desc`, which closes the port.
    let corrupt = |what: String| Error::Library {
        path: lib.path.clone(),
        symbol: Some("nmport_open_desc".into()),
        reason: format!("opening `{}` returned an unusable descriptor: {what}", spec.text),
    };
    if o.fd < 0 {
        return Err(corrupt(format!("fd {}", o.fd)));
    }
    let (base, len) = match region {
        Some((base, len)) if len > 0 => (NonNull::new(base.cast::<u8>()), len),
        _ => (None, 0),
    };
    let base = base.ok_or_else(|| corrupt("no memory region".into()))?;
    let owner: Arc<dyn Send + Sync> = Arc::clone(&desc) as _;
    // SAFETY: libnetmap keeps `base..base+len` mapped (or, for extmem, the
    // descriptor keeps our mapping) until `nmport_close`, which runs only
    // when the last `Arc` of the descriptor, `owner` included, drops.
    let map = unsafe { Mapping::shared(base, len, owner) };
    let nifp = NonNull::new(o.nifp).ok_or_else(|| corrupt("no netmap_if".into()))?;
    let table = IfTable::read(&map, nifp, &o.reg)?;
    let (tx, rx) = ring_ids(&table, o.tx, o.rx).map_err(corrupt)?;
    Ok(KernelPort {
        map,
        fd: Box::new(LibFd { desc }),
        nifp,
        table,
        reg: o.reg,
        tx,
        rx,
    })
}

/// The register request libnetmap parsed from the name, with what the
/// builder set on top of the name (`named` is the name alone), and
/// `NR_EXCLUSIVE` unless the builder shares the rings.
fn builder_settings(
    mut reg: nmreq_register,
    spec: &PortSpec,
    named: &PortSpec,
    extras: RegisterExtras,
) -> nmreq_register {
    if spec.rings != named.rings {
        reg.nr_mode = spec.rings.nr_mode();
        reg.nr_ringid = spec.rings.nr_ringid();
    }
    let (c, n) = (&spec.conf, &named.conf);
    macro_rules! conf {
        ($($field:ident => $reg:ident),*) => {$(
            if c.$field != n.$field {
                if let Some(v) = c.$field {
                    reg.$reg = v;
                }
            }
        )*};
    }
    conf!(
        tx_rings => nr_tx_rings,
        rx_rings => nr_rx_rings,
        host_tx_rings => nr_host_tx_rings,
        host_rx_rings => nr_host_rx_rings,
        tx_slots => nr_tx_slots,
        rx_slots => nr_rx_slots
    );
    reg.nr_flags |= extras.added_flags() | (spec.flags & !named.flags);
    reg
}

/// The error for a builder option whose entry point this library lacks.
fn missing(lib: &LibNetmap, symbol: &str, what: &str) -> Error {
    Error::Library {
        path: lib.path.clone(),
        symbol: Some(symbol.into()),
        reason: format!(
            "{what} need `{symbol}`, which this libnetmap does not export; \
             drop the option or use a newer libnetmap"
        ),
    }
}

/// The error for a failed `step` of opening `spec`, from `errno` (`code`)
/// and what the library said during `call`; `asked` is the register request
/// in the descriptor, once there is one.
fn library_error(
    lib: &LibNetmap,
    spec: &PortSpec,
    step: &str,
    code: c_int,
    call: &Call,
    asked: Option<&nmreq_register>,
) -> Error {
    let said = call.messages();
    let os = io::Error::from_raw_os_error(code);
    let said = if said.is_empty() {
        if code != 0 {
            os.to_string()
        } else {
            "no reason given".into()
        }
    } else {
        said
    };
    let name = spec.text.clone();
    let about_device = said.starts_with(ffi::NETMAP_DEVICE_NAME);
    // Only registration failures say something about the port itself;
    // prepare and the options fail on the name or the library.
    let registering = step == "nmport_open_desc";
    if let (libc::EBUSY, true, Some(asked)) = (code, registering, asked) {
        // The kernel's answer to rings bound elsewhere, as on every backend.
        return kernel::busy(spec, asked);
    }
    match code {
        libc::EACCES | libc::EPERM => Error::PermissionDenied {
            what: format!("opening {name} through {} ({said})", lib.path),
        },
        libc::ENOENT | libc::ENXIO | libc::ENODEV if about_device => Error::Unavailable {
            port: name,
            reasons: Refusals(vec![Refusal {
                backend: BackendKind::Libnetmap,
                reason: format!("{} loaded, but it says: {said}", lib.path),
            }]),
        },
        libc::ENOENT | libc::ENXIO | libc::ENODEV if registering => Error::InterfaceNotFound { name },
        _ => Error::Library {
            path: lib.path.clone(),
            symbol: None,
            reason: format!("opening `{name}` failed in {step}: {said}"),
        },
    }
}

/// The bound TX and RX ring ids from libnetmap's first/last pairs, checked
/// against the `netmap_if`'s table (read once at open).
fn ring_ids(table: &IfTable, tx: (u16, u16), rx: (u16, u16)) -> Result<(Range<u16>, Range<u16>), String> {
    // With no ring bound in a direction, libnetmap leaves `last` one below
    // `first` (`first` being the ring count, so 0xffff for none of zero
    // rings); that is reported as `0..0`, as the kernel path does.
    let range = |(first, last): (u16, u16), count: usize, dir: &str| {
        let stop = last.wrapping_add(1);
        if stop <= first {
            return Ok(0..0);
        }
        if stop as usize > count {
            return Err(format!("{dir} rings {first}..={last} of {count}"));
        }
        Ok(first..stop)
    };
    Ok((
        range(tx, table.tx().len(), "TX")?,
        range(rx, table.rx().len(), "RX")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A path in the temp dir unique to this process and `tag`.
    fn scratch(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("netmap-rs-libnetmap-{}-{tag}", std::process::id()))
    }

    /// Loads the library at `path`, bypassing the cache.
    fn load_from(path: impl AsRef<OsStr>) -> Result<LibNetmap, LoadFailure> {
        let path = path.as_ref();
        open_one(path).map_err(|why| LoadFailure {
            from_env: false,
            attempts: vec![Attempt {
                name: path.to_string_lossy().into_owned(),
                why,
            }],
        })
    }

    fn expect_err(r: Result<LibNetmap, LoadFailure>) -> LoadFailure {
        match r {
            Ok(lib) => panic!("unexpectedly loaded {}", lib.path),
            Err(e) => e,
        }
    }

    #[test]
    fn missing_path_is_not_found_and_named() {
        let path = "/nonexistent/netmap-rs/libnetmap.so";
        let e = expect_err(load_from(path));
        assert_eq!(e.attempts.len(), 1);
        assert_eq!(e.attempts[0].name, path);
        assert!(matches!(e.attempts[0].why, Why::NotFound(_)), "{e:?}");
        assert!(e.all_not_found());
        assert!(e.to_string().contains(path));
        match Error::from(&e) {
            Error::Library { path: p, symbol, .. } => {
                assert_eq!(p, path);
                assert_eq!(symbol, None);
            }
            other => panic!("wrong error {other:?}"),
        }
    }

    #[test]
    fn missing_bare_name_is_not_found() {
        let e = expect_err(load_from("libnetmap-rs-no-such-library.so"));
        assert!(matches!(e.attempts[0].why, Why::NotFound(_)), "{e:?}");
    }

    #[test]
    fn executable_is_refused_without_crashing() {
        let e = expect_err(load_from("/bin/ls"));
        // Current loaders refuse executables outright; an older glibc may
        // load a PIE, which then lacks the symbols.
        assert!(
            matches!(
                e.attempts[0].why,
                Why::NotLoadable(_) | Why::MissingSymbol("nmport_open")
            ),
            "{e:?}"
        );
        assert!(Error::from(e).to_string().contains("/bin/ls"));
    }

    #[test]
    fn junk_files_and_directories_are_refused() {
        let empty = scratch("empty.so");
        let text = scratch("text.so");
        let dir = scratch("dir.so");
        std::fs::write(&empty, b"").unwrap();
        std::fs::write(&text, b"this is not a shared library\n").unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let results: Vec<_> = [&empty, &text, &dir]
            .iter()
            .map(|p| (p.to_path_buf(), load_from(p.as_os_str())))
            .collect();
        std::fs::remove_file(&empty).ok();
        std::fs::remove_file(&text).ok();
        std::fs::remove_dir(&dir).ok();
        for (path, r) in results {
            let e = expect_err(r);
            assert!(
                matches!(e.attempts[0].why, Why::NotLoadable(_)),
                "{}: {e:?}",
                path.display()
            );
            assert!(!e.all_not_found());
            assert!(Error::from(&e).to_string().contains(&*path.to_string_lossy()));
        }
    }

    #[test]
    fn only_regular_files_are_given_to_the_loader() {
        let fifo = scratch("fifo.so");
        let link = scratch("fifo-link.so");
        let _ = std::fs::remove_file(&fifo);
        let _ = std::fs::remove_file(&link);
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path; mkfifo only reads it.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        // Each returns at once: nothing opens the FIFO, which has no writer.
        let results: Vec<_> = [&fifo, &link, &PathBuf::from("/dev/null")]
            .iter()
            .map(|p| (p.to_path_buf(), load_from(p.as_os_str())))
            .collect();
        std::fs::remove_file(&link).ok();
        std::fs::remove_file(&fifo).ok();
        for (path, r) in results {
            match expect_err(r).attempts[0].why {
                Why::NotLoadable(ref msg) => assert!(msg.contains("not a regular file"), "{msg}"),
                ref other => panic!("{}: {other:?}", path.display()),
            }
        }
    }

    #[test]
    fn a_truncated_library_is_refused_before_the_loader_sees_it() {
        // The C library this process runs on, cut short.
        let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
        // SAFETY: `dladdr` inspects the address and fills the buffer given.
        let found = unsafe { libc::dladdr(libc::malloc as *const c_void, info.as_mut_ptr()) };
        assert_ne!(found, 0);
        // SAFETY: filled by `dladdr`; `dli_fname` is its NUL-terminated path.
        let libc_path = unsafe { CStr::from_ptr(info.assume_init().dli_fname) };
        let whole = std::fs::read(OsStr::from_bytes(libc_path.to_bytes())).unwrap();
        assert!(check_file(Path::new(OsStr::from_bytes(libc_path.to_bytes()))).is_ok());
        let cut = scratch("truncated.so");
        std::fs::write(&cut, &whole[..4096.min(whole.len() / 2)]).unwrap();
        let r = load_from(cut.as_os_str());
        std::fs::remove_file(&cut).ok();
        match expect_err(r).attempts[0].why {
            Why::NotLoadable(ref msg) => assert!(msg.contains("truncated"), "{msg}"),
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn real_library_without_the_symbols_names_nmport_open() {
        let e = expect_err(load_from("libm.so.6"));
        if let Why::NotFound(msg) = &e.attempts[0].why {
            eprintln!("skipped: no libm.so.6 on this host ({msg})");
            return;
        }
        assert_eq!(e.attempts[0].why, Why::MissingSymbol("nmport_open"));
        assert_eq!(e.missing_symbol(), Some("nmport_open"));
        match Error::from(&e) {
            Error::Library { path, symbol, .. } => {
                assert_eq!(path, "libm.so.6");
                assert_eq!(symbol.as_deref(), Some("nmport_open"));
            }
            other => panic!("wrong error {other:?}"),
        }
    }

    #[test]
    fn search_moves_past_absent_names_and_stops_at_a_missing_symbol() {
        let names: Vec<OsString> = ["/nonexistent/libnetmap.so", "libm.so.6", "libc.so.6"]
            .iter()
            .map(OsString::from)
            .collect();
        let e = expect_err(search_names(&names, false));
        if matches!(e.attempts[1].why, Why::NotFound(_)) {
            eprintln!("skipped: no libm.so.6 on this host");
            return;
        }
        assert_eq!(e.attempts.len(), 2, "{e}");
        assert!(matches!(e.attempts[0].why, Why::NotFound(_)));
        assert_eq!(e.attempts[1].why, Why::MissingSymbol("nmport_open"));
        assert!(Error::from(&e).to_string().contains("libm.so.6"));
    }

    #[test]
    fn env_var_is_the_only_name_tried() {
        let e = expect_err(search(Some(OsString::from("/nonexistent/custom/libnetmap.so"))));
        assert!(e.from_env);
        assert_eq!(e.attempts.len(), 1);
        let text = e.to_string();
        assert!(text.contains(ENV_VAR), "{text}");
        assert!(text.contains("/nonexistent/custom/libnetmap.so"), "{text}");
    }

    #[test]
    fn empty_env_var_means_the_default_names() {
        match search(Some(OsString::new())) {
            Ok(lib) => assert!(DEFAULT_NAMES.contains(&lib.path.as_str())),
            Err(e) => {
                assert!(!e.from_env);
                assert_eq!(e.attempts[0].name, DEFAULT_NAMES[0]);
            }
        }
    }

    #[test]
    fn load_is_cached_and_does_not_panic() {
        let a = load();
        let b = load();
        assert!(std::ptr::eq(a, b));
        if let Err(e) = a {
            // Whatever happened, it converts into a message that says what to do.
            assert!(Error::from(e).to_string().contains("NETMAP_LIBRARY"));
        }
    }

    #[test]
    fn failure_is_clone_and_send() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<LoadFailure>();
        fn shared<T: Send + Sync>() {}
        shared::<Arc<LibNetmap>>();
    }

    #[test]
    fn builder_settings_change_only_what_the_builder_set() {
        use crate::ffi::{NR_EXCLUSIVE, NR_NO_TX_POLL, NR_REG_ALL_NIC, NR_REG_ONE_NIC, NR_TX_RINGS_ONLY};
        use crate::spec::RingSelect;
        let named = spec::parse("netmap:p{1-1/T@conf:rings=2").unwrap();
        // What a libnetmap parsed from that name (its own grammar decides).
        let parsed = nmreq_register {
            nr_mode: NR_REG_ONE_NIC,
            nr_ringid: 1,
            nr_tx_rings: 2,
            nr_rx_rings: 2,
            nr_flags: NR_TX_RINGS_ONLY,
            ..Default::default()
        };
        let shared = RegisterExtras {
            share_rings: true,
            ..Default::default()
        };
        assert_eq!(builder_settings(parsed, &named, &named, shared), parsed);
        // Unshared, the request is exclusive whatever the name says.
        let r = builder_settings(parsed, &named, &named, RegisterExtras::default());
        assert_eq!(r.nr_flags, NR_TX_RINGS_ONLY | NR_EXCLUSIVE);

        let mut built = named.clone();
        built.rings = RingSelect::AllNic;
        built.conf.tx_slots = Some(256);
        built.conf.rx_rings = Some(2); // as named: left alone
        let extras = RegisterExtras {
            flags: NR_NO_TX_POLL,
            share_rings: true,
        };
        let r = builder_settings(parsed, &built, &named, extras);
        assert_eq!((r.nr_mode, r.nr_ringid), (NR_REG_ALL_NIC, 0));
        assert_eq!((r.nr_tx_slots, r.nr_rx_slots), (256, 0));
        assert_eq!((r.nr_tx_rings, r.nr_rx_rings), (2, 2));
        assert_eq!(r.nr_flags, NR_TX_RINGS_ONLY | NR_NO_TX_POLL);
    }

    #[test]
    fn ring_ids_follow_libnetmaps_first_last_convention() {
        // A region holding a netmap_if of 2 TX and 2 RX rings, and its
        // ring offset table.
        let mut words = vec![0u64; 64];
        // SAFETY: the buffer is 512 bytes, 8-aligned, larger than a
        // netmap_if; the fields are written through a raw pointer.
        unsafe {
            let nif = words.as_mut_ptr().cast::<netmap_if>();
            ptr::addr_of_mut!((*nif).ni_tx_rings).write(2);
            ptr::addr_of_mut!((*nif).ni_rx_rings).write(2);
        }
        let reg = nmreq_register {
            nr_tx_rings: 2,
            nr_rx_rings: 2,
            ..Default::default()
        };
        let owner = Arc::new(words);
        let base = NonNull::new(owner.as_ptr().cast_mut().cast::<u8>()).unwrap();
        // SAFETY: the 512 bytes at `base` live as long as `owner`, which
        // the mapping holds; `IfTable::read` only reads them.
        let map = unsafe { Mapping::shared(base, 512, owner as Arc<dyn Send + Sync>) };
        let table = IfTable::read(&map, base.cast(), &reg).unwrap();
        let ids = |tx, rx| ring_ids(&table, tx, rx);
        assert_eq!(ids((0, 1), (0, 1)), Ok((0..2, 0..2)));
        assert_eq!(ids((1, 1), (0, 0)), Ok((1..2, 0..1)));
        // Nothing bound: `first` is the count, `last` one below it.
        assert_eq!(ids((2, 1), (0, 1)), Ok((0..0, 0..2)));
        assert_eq!(ids((0, 0xffff), (0, 1)), Ok((0..0, 0..2)));
        // Rings the netmap_if does not have.
        assert!(ids((0, 2), (0, 1)).is_err());
        assert!(ids((0, 1), (1, 5)).is_err());
    }
}
