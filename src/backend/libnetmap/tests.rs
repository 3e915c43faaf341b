//! Unit tests of loading libnetmap and of opening ports through it.

use std::ffi::{c_void, CStr, CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use super::elf::check_file;
use super::load::{
    load, open_one, search, search_names, Attempt, LibNetmap, LoadFailure, Why, DEFAULT_NAMES, ENV_VAR,
};
use super::open::{builder_settings, ring_ids};
use crate::backend::kernel::RegisterExtras;
use crate::backend::Mapping;
use crate::error::Error;
use crate::ffi::{netmap_if, nmreq_register};
use crate::ring::IfTable;
use crate::spec;

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
        extra_bufs: 16,
    };
    let r = builder_settings(parsed, &built, &named, extras);
    assert_eq!(r.nr_extra_bufs, 16);
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
    // SAFETY: the 512 bytes at `base` live as long as `owner`, which the
    // mapping holds; `IfTable::read` only reads them.
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
