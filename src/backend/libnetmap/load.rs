//! Finding, checking and loading `libnetmap.so`, and its table of entry points.

use std::ffi::{c_int, c_void, OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};

use super::elf::check_file;
use crate::backend::sys::PollFn;
use crate::backend::MemDomain;
use crate::error::{Error, Result};
use crate::ffi;

/// The environment variable that names the library to load.
pub(super) const ENV_VAR: &str = "NETMAP_LIBRARY";

/// Names tried, in order, when `NETMAP_LIBRARY` is not set.
///
/// netmap's own build makes only a static archive, so on Linux a shared
/// libnetmap is a local build, usually installed as `libnetmap.so` (or with a
/// versioned soname, `libnetmap.so.1`). FreeBSD's base system builds libnetmap
/// with the default major version of its system libraries, 5.
pub(super) const DEFAULT_NAMES: &[&str] = &["libnetmap.so", "libnetmap.so.1", "libnetmap.so.5"];

/// The request type of the C library's `ioctl`: `int` on musl, `unsigned
/// long` on glibc and the BSDs.
#[cfg(all(target_os = "linux", target_env = "musl"))]
pub(super) type IoctlReq = libc::c_int;
/// The request type of the C library's `ioctl`: `int` on musl, `unsigned
/// long` on glibc and the BSDs.
#[cfg(not(all(target_os = "linux", target_env = "musl")))]
pub(super) type IoctlReq = libc::c_ulong;

/// `ioctl`, declared as the C library declares it (variadic).
///
/// A library's own `ioctl` may be defined with a fixed third argument (as the
/// test stub's is, Rust cannot define variadic functions); calling it through
/// this type is ABI-compatible on the targets this crate supports (x86-64 and
/// AArch64 Linux, x86-64 FreeBSD), where variadic arguments travel in the
/// same registers as fixed ones.
pub(super) type IoctlFn = unsafe extern "C" fn(c_int, IoctlReq, ...) -> c_int;

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
    pub(super) nmport_close: ffi::nmport_close_t,
    /// `nmport_prepare`.
    pub(super) nmport_prepare: ffi::nmport_prepare_t,
    /// `nmport_open_desc`.
    pub(super) nmport_open_desc: ffi::nmport_open_desc_t,
    /// `nmport_undo_prepare`.
    pub(super) nmport_undo_prepare: ffi::nmport_undo_prepare_t,
    /// `nmport_inject`.
    pub(super) nmport_inject: ffi::nmport_inject_t,

    /// `nmport_extmem`, if exported.
    pub(super) nmport_extmem: Option<ffi::nmport_extmem_t>,
    /// `nmport_offset`, if exported.
    pub(super) nmport_offset: Option<ffi::nmport_offset_t>,
    /// `nmctx_get`, if exported.
    pub(super) nmctx_get: Option<ffi::nmctx_get_t>,

    /// The `ioctl` its ports are synced with (see the module docs).
    pub(super) ioctl: IoctlFn,
    /// The `poll` its ports are waited on with.
    pub(super) poll: PollFn,

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

    /// Whether every name tried was simply absent.
    pub(super) fn all_not_found(&self) -> bool {
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
pub(super) fn search(env: Option<OsString>) -> Result<LibNetmap, LoadFailure> {
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
pub(super) fn search_names(names: &[OsString], from_env: bool) -> Result<LibNetmap, LoadFailure> {
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
pub(super) fn open_one(name: &OsStr) -> Result<LibNetmap, Why> {
    let lib = open_library(name)?;
    let mut found = Found::default();
    found.uncalled(&lib)?;
    // Each use pairs a symbol with its `ffi::<symbol>_t` type, which is
    // declared from that symbol's prototype in libnetmap.h.
    macro_rules! required {
        ($name:ident: $ty:ty) => {
            // SAFETY: `$ty` is the `unsafe extern "C" fn` type declared for
            // this very symbol (see the pairing note above).
            unsafe { found.required::<$ty>(&lib, stringify!($name)) }?
        };
    }
    macro_rules! optional {
        ($name:ident: $ty:ty) => {
            // SAFETY: as for `required!`: `$ty` is the fn pointer type
            // declared for this symbol.
            unsafe { found.optional::<$ty>(&lib, stringify!($name)) }
        };
    }
    let nmport_close = required!(nmport_close: ffi::nmport_close_t);
    let nmport_prepare = required!(nmport_prepare: ffi::nmport_prepare_t);
    let nmport_open_desc = required!(nmport_open_desc: ffi::nmport_open_desc_t);
    let nmport_undo_prepare = required!(nmport_undo_prepare: ffi::nmport_undo_prepare_t);
    let nmport_inject = required!(nmport_inject: ffi::nmport_inject_t);
    let nmport_extmem = optional!(nmport_extmem: ffi::nmport_extmem_t);
    let nmport_offset = optional!(nmport_offset: ffi::nmport_offset_t);
    let nmctx_get = optional!(nmctx_get: ffi::nmctx_get_t);
    found.reported(&lib);
    // Where the library's own code lies: any of its required entry points.
    let io = PortIo::find(&lib, nmport_prepare as *const c_void);

    Ok(LibNetmap {
        path: name.to_string_lossy().into_owned(),
        symbols: found.symbols,
        missing_optional: found.missing_optional,
        own_io: io.own,
        domain: io.domain,
        nmport_close,
        nmport_prepare,
        nmport_open_desc,
        nmport_undo_prepare,
        nmport_inject,
        nmport_extmem,
        nmport_offset,
        nmctx_get,
        ioctl: io.ioctl,
        poll: io.poll,
        _lib: lib,
    })
}

/// Opens `name` with `RTLD_NOW | RTLD_LOCAL`, after checking the file when
/// `name` is a path.
fn open_library(name: &OsStr) -> Result<Library, Why> {
    if name.as_bytes().contains(&b'/') {
        check_file(Path::new(name)).map_err(Why::NotLoadable)?;
    }
    // SAFETY: opening a library runs its initialisers (and, on unload, its
    // finalisers). We accept that for the library the user named through
    // NETMAP_LIBRARY or installed as libnetmap: loading it is the whole point,
    // and libnetmap's own initialiser only sets up its default context.
    unsafe { Library::open(Some(name), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| classify_open_error(name, &e.to_string()))
}

/// The entry points a library exports, as they are looked up: those found
/// (required ones first) and the optional ones missing.
#[derive(Default)]
struct Found {
    symbols: Vec<&'static str>,
    missing_optional: Vec<&'static str>,
}

impl Found {
    /// Checks for the required entry points that are never called.
    fn uncalled(&mut self, lib: &Library) -> Result<(), Why> {
        for &sym in REQUIRED_UNCALLED {
            if !exports(lib, sym) {
                return Err(Why::MissingSymbol(sym));
            }
            self.symbols.push(sym);
        }
        Ok(())
    }

    /// The required entry point `name`, or the refusal that names it.
    ///
    /// # Safety
    /// As for [`symbol`].
    unsafe fn required<F: Copy>(&mut self, lib: &Library, name: &'static str) -> Result<F, Why> {
        // SAFETY: the caller's contract is `symbol`'s.
        let f = unsafe { symbol::<F>(lib, name) }.ok_or(Why::MissingSymbol(name))?;
        self.symbols.push(name);
        Ok(f)
    }

    /// The optional entry point `name`, if exported.
    ///
    /// # Safety
    /// As for [`symbol`].
    unsafe fn optional<F: Copy>(&mut self, lib: &Library, name: &'static str) -> Option<F> {
        // SAFETY: the caller's contract is `symbol`'s.
        let f = unsafe { symbol::<F>(lib, name) };
        self.note_optional(name, f.is_some());
        f
    }

    /// Notes which of the optional entry points that are only reported the
    /// library exports.
    fn reported(&mut self, lib: &Library) {
        for &sym in OPTIONAL_REPORTED {
            self.note_optional(sym, exports(lib, sym));
        }
    }

    /// Notes the optional entry point `name` as found or missing.
    fn note_optional(&mut self, name: &'static str, exported: bool) {
        if exported {
            self.symbols.push(name);
        } else {
            self.missing_optional.push(name);
        }
    }
}

/// The `ioctl` and `poll` a library's ports are synced and polled with
/// (see the module docs), and whose memory its ports' regions are.
struct PortIo {
    ioctl: IoctlFn,
    poll: PollFn,
    /// Which of the two the library defines itself.
    own: Vec<&'static str>,
    domain: MemDomain,
}

impl PortIo {
    /// The library's own `ioctl` and `poll` where it defines them (its code
    /// lying where `anchor`, one of its entry points, does), else the C
    /// library's.
    fn find(lib: &Library, anchor: *const c_void) -> PortIo {
        let mut own = Vec::new();
        // SAFETY: `IoctlFn` is the prototype of `ioctl` in <sys/ioctl.h>.
        let ioctl = unsafe { own_or(lib, "ioctl", anchor, libc::ioctl as IoctlFn, &mut own) };
        let domain = if own.contains(&"ioctl") {
            static LOADED: AtomicU32 = AtomicU32::new(0);
            MemDomain::Library(LOADED.fetch_add(1, Ordering::Relaxed))
        } else {
            MemDomain::Kernel
        };
        // SAFETY: `PollFn` is the prototype of `poll` in <poll.h>.
        let poll = unsafe { own_or(lib, "poll", anchor, libc::poll as PollFn, &mut own) };
        PortIo {
            ioctl,
            poll,
            own,
            domain,
        }
    }
}

/// `name` as the library's own definition (see [`own_symbol`]), noted in
/// `own`; else `fallback`.
///
/// # Safety
/// As for [`symbol`]; `fallback` has the same signature.
unsafe fn own_or<F: Copy>(
    lib: &Library,
    name: &'static str,
    anchor: *const c_void,
    fallback: F,
    own: &mut Vec<&'static str>,
) -> F {
    // SAFETY: the caller's contract is `own_symbol`'s.
    match unsafe { own_symbol::<F>(lib, name, anchor) } {
        Some(f) => {
            own.push(name);
            f
        }
        None => fallback,
    }
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
