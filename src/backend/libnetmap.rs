//! `libnetmap.so`, loaded at run time.
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
//! namespace.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};

use crate::error::Error;
use crate::ffi;

/// The environment variable that names the library to load.
pub(crate) const ENV_VAR: &str = "NETMAP_LIBRARY";

/// Names tried, in order, when `NETMAP_LIBRARY` is not set.
///
/// netmap's own build makes only a static archive, so on Linux a shared
/// libnetmap is a local build, usually installed as `libnetmap.so` (or with a
/// versioned soname, `libnetmap.so.1`). FreeBSD's base system builds libnetmap
/// with the default major version of its system libraries, 5.
pub(crate) const DEFAULT_NAMES: &[&str] = &["libnetmap.so", "libnetmap.so.1", "libnetmap.so.5"];

/// libnetmap's entry points, resolved from one loaded copy of the library.
///
/// The function pointers stay valid as long as `_lib` is alive; `_lib` is only
/// dropped with the whole struct, and the struct is shared as an
/// `Arc<LibNetmap>`, so holding the `Arc` keeps every pointer callable.
#[derive(Debug)]
// The entry points are called by the libnetmap port backend; until every one
// of them has a caller, some are only resolved.
#[allow(dead_code)]
pub(crate) struct LibNetmap {
    /// The name or path the library was opened by.
    pub(crate) path: String,
    /// Optional entry points this copy of libnetmap does not export.
    pub(crate) missing_optional: Vec<&'static str>,

    /// `nmport_open`.
    pub(crate) nmport_open: ffi::nmport_open_t,
    /// `nmport_close`.
    pub(crate) nmport_close: ffi::nmport_close_t,
    /// `nmport_prepare`.
    pub(crate) nmport_prepare: ffi::nmport_prepare_t,
    /// `nmport_open_desc`.
    pub(crate) nmport_open_desc: ffi::nmport_open_desc_t,
    /// `nmport_undo_prepare`.
    pub(crate) nmport_undo_prepare: ffi::nmport_undo_prepare_t,
    /// `nmport_inject`.
    pub(crate) nmport_inject: ffi::nmport_inject_t,

    /// `nmport_clone`, if exported.
    pub(crate) nmport_clone: Option<ffi::nmport_clone_t>,
    /// `nmport_extmem`, if exported.
    pub(crate) nmport_extmem: Option<ffi::nmport_extmem_t>,
    /// `nmport_offset`, if exported.
    pub(crate) nmport_offset: Option<ffi::nmport_offset_t>,
    /// `nmport_enable_option`, if exported.
    pub(crate) nmport_enable_option: Option<ffi::nmport_enable_option_t>,
    /// `nmport_disable_option`, if exported.
    pub(crate) nmport_disable_option: Option<ffi::nmport_disable_option_t>,
    /// `nmctx_get`, if exported.
    pub(crate) nmctx_get: Option<ffi::nmctx_get_t>,
    /// `nmctx_set_threadsafe`, if exported.
    pub(crate) nmctx_set_threadsafe: Option<ffi::nmctx_set_threadsafe_t>,
    /// `nmport_extmem_from_file`, if exported.
    pub(crate) nmport_extmem_from_file: Option<ffi::nmport_extmem_from_file_t>,

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

    /// Whether every name tried was simply absent (the usual case on a host
    /// without libnetmap, as opposed to a broken or wrong library).
    #[allow(dead_code)]
    pub(crate) fn all_not_found(&self) -> bool {
        self.attempts.iter().all(|a| matches!(a.why, Why::NotFound(_)))
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

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from_env {
            write!(f, "{ENV_VAR} is set, so only it was tried: ")?;
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

/// Whether libnetmap is loaded (loading it on first use).
#[allow(dead_code)]
pub(crate) fn is_available() -> bool {
    load().is_ok()
}

/// Loads the library at `path` (a path, or a bare name searched the way
/// `dlopen` searches), bypassing the cache. For tests and probing.
#[allow(dead_code)]
pub(crate) fn load_from(path: impl AsRef<OsStr>) -> Result<LibNetmap, LoadFailure> {
    let path = path.as_ref();
    open_one(path).map_err(|why| LoadFailure {
        from_env: false,
        attempts: vec![Attempt {
            name: path.to_string_lossy().into_owned(),
            why,
        }],
    })
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
    // SAFETY: opening a library runs its initialisers (and, on unload, its
    // finalisers). We accept that for the library the user named through
    // NETMAP_LIBRARY or installed as libnetmap: loading it is the whole point,
    // and libnetmap's own initialiser only sets up its default context.
    let lib = unsafe { Library::open(Some(name), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| classify_open_error(name, &e.to_string()))?;

    // Each use pairs a symbol with its `ffi::<symbol>_t` type, which is
    // declared from that symbol's prototype in libnetmap.h.
    macro_rules! required {
        ($name:ident: $ty:ty) => {
            // SAFETY: `$ty` is the `unsafe extern "C" fn` type declared for
            // this very symbol (see the pairing note above).
            match unsafe { symbol::<$ty>(&lib, stringify!($name)) } {
                Some(f) => f,
                None => return Err(Why::MissingSymbol(stringify!($name))),
            }
        };
    }
    let mut missing_optional = Vec::new();
    macro_rules! optional {
        ($name:ident: $ty:ty) => {{
            // SAFETY: as for `required!`: `$ty` is the fn pointer type
            // declared for this symbol.
            let f = unsafe { symbol::<$ty>(&lib, stringify!($name)) };
            if f.is_none() {
                missing_optional.push(stringify!($name));
            }
            f
        }};
    }

    Ok(LibNetmap {
        path: name.to_string_lossy().into_owned(),
        nmport_open: required!(nmport_open: ffi::nmport_open_t),
        nmport_close: required!(nmport_close: ffi::nmport_close_t),
        nmport_prepare: required!(nmport_prepare: ffi::nmport_prepare_t),
        nmport_open_desc: required!(nmport_open_desc: ffi::nmport_open_desc_t),
        nmport_undo_prepare: required!(nmport_undo_prepare: ffi::nmport_undo_prepare_t),
        nmport_inject: required!(nmport_inject: ffi::nmport_inject_t),
        nmport_clone: optional!(nmport_clone: ffi::nmport_clone_t),
        nmport_extmem: optional!(nmport_extmem: ffi::nmport_extmem_t),
        nmport_offset: optional!(nmport_offset: ffi::nmport_offset_t),
        nmport_enable_option: optional!(nmport_enable_option: ffi::nmport_enable_option_t),
        nmport_disable_option: optional!(nmport_disable_option: ffi::nmport_disable_option_t),
        nmctx_get: optional!(nmctx_get: ffi::nmctx_get_t),
        nmctx_set_threadsafe: optional!(nmctx_set_threadsafe: ffi::nmctx_set_threadsafe_t),
        nmport_extmem_from_file: optional!(
            nmport_extmem_from_file: ffi::nmport_extmem_from_file_t
        ),
        missing_optional,
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
    let mut cname = Vec::with_capacity(name.len() + 1);
    cname.extend_from_slice(name.as_bytes());
    cname.push(0);
    // SAFETY: `F` is a fn pointer type (caller's contract), so `Option<F>` is
    // one pointer wide with `None` as null: reading the symbol's address as
    // `Option<F>` turns a null address into `None` instead of an invalid fn
    // pointer, and a non-null one into a pointer of the right signature.
    let sym = unsafe { lib.get::<Option<F>>(&cname) }.ok()?;
    *sym
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A path in the temp dir unique to this process and `tag`.
    fn scratch(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("netmap-rs-libnetmap-{}-{tag}", std::process::id()))
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
        assert_eq!(is_available(), a.is_ok());
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
}
