//! The libnetmap backend, through a stub `libnetmap.so`.
//!
//! The workspace member `stub-libnetmap` is a cdylib that exports libnetmap's
//! entry points (C signatures, `nmport_d` layout) over its own copy of the
//! embedded kernel, plus the `ioctl` and `poll` its ports are synced and
//! polled with. This suite builds it (once per test process, with Cargo, into
//! its own target directory) in three variants: complete, without the
//! optional `nmport_offset`, and without the required `nmport_open_desc`.
//!
//! The stub is not published: in the packaged crate (from crates.io or
//! `cargo package`) its directory is absent and the tests that need it say
//! so and skip; in CI they fail instead (`netmap_test_support::skip`).
//!
//! netmap-rs loads libnetmap once per process, so each scenario runs in a
//! child process: this test binary again, running only the `child` test, with
//! `NETMAP_LIBRARY` (or `LD_LIBRARY_PATH`) pointing at a variant and
//! `SCENARIO` naming what to check. The parent asserts that the child passed.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A directory for the files these tests write: cargo's per-target scratch
/// directory where it exists (a checkout, a packaged crate), else the
/// system's, for a test binary run on another machine than it was built on.
fn scratch_dir() -> PathBuf {
    let cargo = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if cargo.is_dir() {
        cargo.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

use netmap_rs::prelude::*;
use netmap_rs::probe::{self, LibraryStatus};
use netmap_rs::Error;
use netmap_test_support::skip::skip;

/// Names the scenario a child runs.
const SCENARIO: &str = "NETMAP_RS_LIBNETMAP_SCENARIO";

// ---------------------------------------------------------------------------
// The parent: building the stub, running children
// ---------------------------------------------------------------------------

/// The stub's variants, built once per test process.
struct Stubs {
    full: PathBuf,
    no_offset: PathBuf,
    no_open_desc: PathBuf,
    /// A directory holding the complete stub as `libnetmap.so`, for the
    /// search by name.
    soname_dir: PathBuf,
}

/// The stub's variants, built on first use; `None` (after saying why) where
/// the stub's source is absent.
fn stubs(test: &str) -> Option<&'static Stubs> {
    static STUBS: OnceLock<Stubs> = OnceLock::new();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("stub-libnetmap");
    if !source.is_dir() {
        skip(
            test,
            &format!(
                "it needs the stub libnetmap, whose source ({}) is not in the packaged crate; \
                 run `cargo test --test libnetmap` in a checkout of the repository, \
                 https://github.com/meshackbahati/netmap-rs",
                source.display()
            ),
        );
        return None;
    }
    Some(STUBS.get_or_init(|| {
        let tmp = scratch_dir();
        // A target directory of its own: the outer `cargo test` may hold the
        // lock of the main one.
        let target = tmp.join("stub-libnetmap-target");
        let out = tmp.join("stub-libnetmap");
        let soname_dir = out.join("by-name");
        std::fs::create_dir_all(&soname_dir).unwrap();
        // One target directory for every variant: netmap-rs is built once,
        // and each variant only rebuilds the small stub crate.
        let build = |features: &str, name: &str| -> PathBuf {
            let mut cmd = Command::new(env!("CARGO"));
            cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["build", "--quiet", "-p", "stub-libnetmap", "--target-dir"])
                .arg(&target);
            if !features.is_empty() {
                cmd.args(["--features", features]);
            }
            let started = Instant::now();
            let result = cmd.output().expect("running cargo to build the stub libnetmap");
            assert!(
                result.status.success(),
                "building stub-libnetmap (features: {features:?}) failed:\n{}",
                String::from_utf8_lossy(&result.stderr)
            );
            eprintln!("built stub-libnetmap [{features}] in {:.1?}", started.elapsed());
            let dst = out.join(name);
            copy_atomically(&target.join("debug/libstub_libnetmap.so"), &dst);
            dst
        };
        let full = build("", "libstub-full.so");
        let no_offset = build("no-offset", "libstub-no-offset.so");
        let no_open_desc = build("no-open-desc", "libstub-no-open-desc.so");
        copy_atomically(&full, &soname_dir.join("libnetmap.so"));
        Stubs {
            full,
            no_offset,
            no_open_desc,
            soname_dir,
        }
    }))
}

/// Copies `from` to `to` through a temporary name, so that a reader never
/// sees half a library.
fn copy_atomically(from: &Path, to: &Path) {
    let tmp = to.with_extension(format!("tmp{}", std::process::id()));
    std::fs::copy(from, &tmp).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
    std::fs::rename(&tmp, to).unwrap();
}

/// What a child printed.
struct Child {
    stdout: String,
    stderr: String,
}

/// Runs `scenario` in a child with `env` set (a `None` value removes the
/// variable) and asserts that it passed.
fn run(scenario: &str, env: &[(&str, Option<OsString>)]) -> Child {
    run_within(scenario, env, Duration::from_secs(120))
}

/// [`run`], failing if the child has not finished within `limit`.
fn run_within(scenario: &str, env: &[(&str, Option<OsString>)], limit: Duration) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .env_remove("NETMAP_LIBRARY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd.spawn().unwrap();
    // Drain both pipes on threads so a chatty child cannot block.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).ok();
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("scenario {scenario} hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let child = Child {
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    assert!(
        status.success(),
        "scenario {scenario} failed ({status}):\n--- stdout\n{}\n--- stderr\n{}",
        child.stdout,
        child.stderr
    );
    assert!(
        child.stdout.contains(&format!("scenario {scenario} passed")),
        "scenario {scenario} did not run:\n{}",
        child.stdout
    );
    child
}

fn lib(path: &Path) -> Vec<(&'static str, Option<OsString>)> {
    vec![("NETMAP_LIBRARY", Some(path.as_os_str().to_owned()))]
}

#[test]
fn env_var_library_opens_ports_that_carry_packets() {
    let Some(stubs) = stubs("env_var_library_opens_ports_that_carry_packets") else {
        return;
    };
    run("packets", &lib(&stubs.full));
}

#[test]
fn library_is_found_by_name_on_the_loader_path() {
    let Some(stubs) = stubs("library_is_found_by_name_on_the_loader_path") else {
        return;
    };
    let dir = stubs.soname_dir.as_os_str().to_owned();
    let mut path = dir;
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|p| !p.is_empty()) {
        path.push(":");
        path.push(old);
    }
    run(
        "by-name",
        &[("NETMAP_LIBRARY", None), ("LD_LIBRARY_PATH", Some(path))],
    );
}

#[test]
fn missing_required_symbol_is_named_and_the_kernel_path_is_used() {
    let Some(stubs) = stubs("missing_required_symbol_is_named_and_the_kernel_path_is_used") else {
        return;
    };
    run("missing-required", &lib(&stubs.no_open_desc));
}

#[test]
fn missing_optional_symbol_disables_only_its_option() {
    let Some(stubs) = stubs("missing_optional_symbol_disables_only_its_option") else {
        return;
    };
    run("missing-optional", &lib(&stubs.no_offset));
}

#[test]
fn a_file_that_is_not_a_shared_library_is_refused_without_a_crash() {
    let junk = scratch_dir().join("not-a-library.so");
    std::fs::write(&junk, b"this is not a shared library\n").unwrap();
    run("not-a-library", &lib(&junk));
    // A library cut short: an ELF header, and garbage where the rest was.
    let Some(stubs) =
        stubs("a_file_that_is_not_a_shared_library_is_refused_without_a_crash, its library cut short")
    else {
        return;
    };
    let stub = std::fs::read(&stubs.full).unwrap();
    let truncated = junk.with_file_name("truncated-library.so");
    std::fs::write(&truncated, &stub[..4096]).unwrap();
    run("not-a-library", &lib(&truncated));
}

/// A FIFO would block the loader (and the check before it) forever on its
/// open or read: it is refused at once, unopened.
#[test]
fn a_fifo_is_refused_without_opening_it() {
    let fifo = scratch_dir().join(format!("fifo-library-{}.so", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path; mkfifo only reads it.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let started = Instant::now();
    run_within("not-a-file", &lib(&fifo), Duration::from_secs(30));
    std::fs::remove_file(&fifo).ok();
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn errors_raised_inside_the_library_reach_the_callers_error() {
    let Some(stubs) = stubs("errors_raised_inside_the_library_reach_the_callers_error") else {
        return;
    };
    let child = run("errors", &lib(&stubs.full));
    // Captured, not printed: the library's messages never reached stderr.
    assert!(
        !child.stderr.contains("option offsets"),
        "the library printed its message:\n{}",
        child.stderr
    );
}

/// Ports of a library with its own `ioctl` live in the library's memory:
/// buffers swap between them, never with the embedded kernel's (or the
/// real kernel's) ports.
#[test]
fn a_library_with_its_own_ioctl_has_memory_of_its_own() {
    let Some(stubs) = stubs("a_library_with_its_own_ioctl_has_memory_of_its_own") else {
        return;
    };
    run("domains", &lib(&stubs.full));
}

#[test]
fn concurrent_opens_from_many_threads() {
    let Some(stubs) = stubs("concurrent_opens_from_many_threads") else {
        return;
    };
    run("threads", &lib(&stubs.full));
}

#[test]
fn both_backends_give_the_same_rings_for_the_same_names() {
    let Some(stubs) = stubs("both_backends_give_the_same_rings_for_the_same_names") else {
        return;
    };
    run("compare", &lib(&stubs.full));
}

/// Without libnetmap (this process never loads it: `emu:` names do not
/// ask), inject copies through the rings and the libnetmap-only options are
/// refused with a hint.
#[test]
fn inject_and_options_on_the_embedded_kernel() {
    let a = NetmapBuilder::new("emu:inj{1").num_slots(8).build().unwrap();
    let b = NetmapBuilder::new("emu:inj}1").build().unwrap();
    // One slot always stays with the kernel: 7 fit before a sync.
    for i in 0..7u8 {
        a.inject(&[i; 60]).unwrap();
    }
    assert!(matches!(a.inject(&[9; 60]), Err(Error::RingFull { .. })));
    {
        let _tx = a.tx_ring(0).unwrap();
        assert!(matches!(a.inject(&[9; 60]), Err(Error::RingInUse { .. })));
    }
    a.txsync().unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    rx.sync().unwrap();
    let got: Vec<u8> = std::iter::from_fn(|| rx.recv().map(|f| f.payload()[0])).collect();
    assert_eq!(got, (0..7).collect::<Vec<u8>>());
    assert!(matches!(
        a.inject(&vec![0; 1 << 20]),
        Err(Error::PacketTooLarge { .. })
    ));

    for b in [
        NetmapBuilder::new("emu:opt{1").offsets(64, 64, 8, 0),
        NetmapBuilder::new("emu:opt{1").extmem("/nonexistent/extmem"),
    ] {
        match b.build() {
            Err(e @ Error::Unsupported { .. }) => assert!(e.to_string().contains("libnetmap"), "{e}"),
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// The child
// ---------------------------------------------------------------------------

/// Runs the scenario named in the environment; does nothing in the parent.
#[test]
fn child() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    match scenario.as_str() {
        "packets" => packets(),
        "by-name" => by_name(),
        "missing-required" => missing_required(),
        "missing-optional" => missing_optional(),
        "not-a-library" => not_a_library(),
        "not-a-file" => not_a_file(),
        "errors" => errors(),
        "threads" => threads(),
        "domains" => domains(),
        "compare" => compare(),
        other => panic!("unknown scenario {other}"),
    }
    println!("scenario {scenario} passed");
}

/// Whether this host has a netmap kernel module to fall back to.
fn have_dev_netmap() -> bool {
    Path::new("/dev/netmap").exists()
}

fn env_library() -> String {
    std::env::var("NETMAP_LIBRARY").unwrap()
}

/// Sends `count` numbered packets from `a` to `b` in bursts, checking each
/// arrives in order and intact.
fn pump(a: &Netmap, b: &Netmap, count: u32) {
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    let (mut sent, mut got) = (0u32, 0u32);
    let deadline = Instant::now() + Duration::from_secs(20);
    while got < count {
        assert!(Instant::now() < deadline, "stuck at {got} of {count}");
        while sent < count && tx.space() > 0 {
            let mut pkt = vec![0u8; 60 + (sent % 7) as usize];
            pkt[..4].copy_from_slice(&sent.to_le_bytes());
            tx.send(&pkt).unwrap();
            sent += 1;
        }
        tx.sync().unwrap();
        rx.sync().unwrap();
        while let Some(frame) = rx.recv() {
            let p = frame.payload();
            assert_eq!(p.len(), 60 + (got % 7) as usize);
            assert_eq!(u32::from_le_bytes(p[..4].try_into().unwrap()), got);
            got += 1;
        }
    }
}

fn packets() {
    let path = env_library();
    let report = probe::probe_port("netmap:probe{1");
    match &report.library {
        LibraryStatus::Loaded {
            path: p,
            symbols,
            missing_optional,
            own_io,
        } => {
            assert_eq!(p, &path);
            for sym in ["nmport_open_desc", "nmport_offset", "nmport_extmem", "nmctx_get"] {
                assert!(symbols.iter().any(|s| s == sym), "{sym} not in {symbols:?}");
            }
            assert!(!missing_optional.iter().any(|s| s == "nmport_offset"));
            assert_eq!(own_io, &["ioctl", "poll"]);
        }
        other => panic!("not loaded: {other:?}"),
    }
    let port = report.port.as_ref().unwrap();
    assert_eq!(port.backend, Ok(BackendKind::Libnetmap));
    let text = report.to_string();
    assert!(text.contains("would open with libnetmap"), "{text}");
    assert!(text.contains("exports: nmport_open,"), "{text}");
    print!("{text}");

    // A pipe; the slave end by its plain name (`netmap:` is implied).
    let a = NetmapBuilder::new("netmap:lnm{1").num_slots(64).build().unwrap();
    let b = NetmapBuilder::new("lnm}1").build().unwrap();
    assert_eq!(a.backend(), BackendKind::Libnetmap);
    assert_eq!(b.backend(), BackendKind::Libnetmap);
    assert_eq!(b.name(), "netmap:lnm}1");
    assert_eq!(a.num_slots(), (64, 64));
    assert!(a.as_raw_fd() >= 0 && a.as_raw_fd() != b.as_raw_fd());

    // Many laps of the 64-slot rings, both ways.
    pump(&a, &b, 1000);
    pump(&b, &a, 300);

    // poll: nothing yet, then a packet from another thread wakes it.
    assert!(!b.poll(Some(Duration::from_millis(10))).unwrap());
    assert!(a.poll_writable(Some(Duration::from_millis(10))).unwrap());
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let mut tx = a.tx_ring(0).unwrap();
        tx.send(b"wake up").unwrap();
        tx.sync().unwrap();
        drop(tx);
        a
    });
    assert!(b.poll(Some(Duration::from_secs(10))).unwrap());
    let a = sender.join().unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    rx.sync().unwrap();
    assert_eq!(rx.recv().unwrap().payload(), b"wake up");

    // nmport_inject, then a sync sends it.
    a.inject(b"injected").unwrap();
    a.txsync().unwrap();
    rx.sync().unwrap();
    assert_eq!(rx.recv().unwrap().payload(), b"injected");
    {
        // The library picks the ring, so no TX handle may be alive.
        let _tx = a.tx_ring(0).unwrap();
        assert!(matches!(a.inject(b"x"), Err(Error::RingInUse { .. })));
    }
    drop(rx);

    // One port per ring, through the library.
    let ports = NetmapBuilder::new("netmap:per{1")
        .num_tx_rings(2)
        .num_rx_rings(2)
        .build_per_ring()
        .unwrap();
    assert_eq!(ports.len(), 2);
    for (i, p) in ports.iter().enumerate() {
        assert_eq!(p.backend(), BackendKind::Libnetmap);
        assert_eq!(p.tx_ring_ids(), i as u16..i as u16 + 1);
        assert_eq!(p.rx_ring_ids(), i as u16..i as u16 + 1);
    }

    // The raw kernel path can still be forced while libnetmap is loaded.
    match NetmapBuilder::new("netmap:lnm{2")
        .backend(BackendKind::Kernel)
        .build()
    {
        Ok(p) => assert_eq!(p.backend(), BackendKind::Kernel),
        Err(e) => {
            assert!(!have_dev_netmap(), "{e}");
            let text = e.to_string();
            assert!(text.contains("/dev/netmap"), "{text}");
            assert!(!text.contains(&path), "{text}");
        }
    }
    // And `emu:` names stay with the embedded kernel of this process.
    let e = NetmapBuilder::new("emu:local{1").build().unwrap();
    assert_eq!(e.backend(), BackendKind::Emulated);
}

fn by_name() {
    match probe::probe().library {
        LibraryStatus::Loaded { path, .. } => assert_eq!(path, "libnetmap.so"),
        other => panic!("not loaded by name: {other:?}"),
    }
    let a = NetmapBuilder::new("netmap:named{1").build().unwrap();
    let b = NetmapBuilder::new("netmap:named}1").build().unwrap();
    assert_eq!(a.backend(), BackendKind::Libnetmap);
    pump(&a, &b, 10);
}

fn missing_required() {
    let path = env_library();
    match probe::probe().library {
        LibraryStatus::Unusable(why) => {
            assert!(why.contains("nmport_open_desc"), "{why}");
            assert!(why.contains(&path), "{why}");
        }
        other => panic!("loaded without nmport_open_desc: {other:?}"),
    }
    let report = probe::probe_port("netmap:x{1");
    let port = report.port.as_ref().unwrap();
    let refusal = port
        .refused
        .iter()
        .find(|r| r.backend == BackendKind::Libnetmap)
        .expect("libnetmap was refused");
    assert!(refusal.reason.contains("nmport_open_desc"), "{}", refusal.reason);
    println!("{report}");

    // The kernel path is used instead: where /dev/netmap exists it gets the
    // port, elsewhere the error carries both reasons.
    match NetmapBuilder::new("netmap:x{1").build() {
        Ok(p) => {
            assert!(have_dev_netmap());
            assert_eq!(p.backend(), BackendKind::Kernel);
        }
        Err(e) => {
            assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
            let text = e.to_string();
            assert!(text.contains("nmport_open_desc"), "{text}");
            assert!(text.contains("/dev/netmap"), "{text}");
        }
    }
    if !have_dev_netmap() {
        assert_eq!(
            port.backend
                .as_ref()
                .err()
                .map(|e| e.contains("nmport_open_desc")),
            Some(true)
        );
    }
    // Forcing libnetmap names the symbol.
    match NetmapBuilder::new("netmap:x{1")
        .backend(BackendKind::Libnetmap)
        .build()
    {
        Err(Error::Library { path: p, symbol, .. }) => {
            assert_eq!(p, path);
            assert_eq!(symbol.as_deref(), Some("nmport_open_desc"));
        }
        other => panic!("expected a library error, got {other:?}"),
    }
    // The embedded kernel is unaffected.
    NetmapBuilder::new("emu:still{1").build().unwrap();
}

fn missing_optional() {
    match probe::probe().library {
        LibraryStatus::Loaded {
            symbols,
            missing_optional,
            ..
        } => {
            assert!(missing_optional.iter().any(|s| s == "nmport_offset"));
            assert!(!symbols.iter().any(|s| s == "nmport_offset"));
        }
        other => panic!("not loaded: {other:?}"),
    }
    // Ports open as usual...
    let a = NetmapBuilder::new("netmap:opt{1").build().unwrap();
    let b = NetmapBuilder::new("netmap:opt}1").build().unwrap();
    assert_eq!(a.backend(), BackendKind::Libnetmap);
    pump(&a, &b, 10);
    // ...but offsets, which need nmport_offset, are refused, naming it.
    match NetmapBuilder::new("netmap:opt{2").offsets(64, 64, 8, 0).build() {
        Err(e @ Error::Library { .. }) => {
            let Error::Library { symbol, .. } = &e else {
                unreachable!()
            };
            assert_eq!(symbol.as_deref(), Some("nmport_offset"));
            assert!(e.to_string().contains("nmport_offset"), "{e}");
        }
        other => panic!("expected a library error, got {other:?}"),
    }
    // External memory, whose nmport_extmem is there, still reaches the
    // library (which, over the embedded kernel, refuses the option).
    let file = scratch_dir().join(format!("extmem-{}", std::process::id()));
    std::fs::write(&file, vec![0u8; 1 << 20]).unwrap();
    let r = NetmapBuilder::new("netmap:opt{3").extmem(&file).build();
    std::fs::remove_file(&file).ok();
    match r {
        Err(Error::Library {
            symbol: None, reason, ..
        }) => {
            assert!(reason.contains("option extmem"), "{reason}")
        }
        other => panic!("expected the library's refusal, got {other:?}"),
    }
}

fn not_a_library() {
    let path = env_library();
    match probe::probe().library {
        LibraryStatus::Unusable(why) => assert!(why.contains(&path), "{why}"),
        other => panic!("loaded {path}: {other:?}"),
    }
    match NetmapBuilder::new("netmap:x{1").build() {
        Ok(p) => assert_eq!(p.backend(), BackendKind::Kernel),
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains(&path), "{text}");
            assert!(text.contains("/dev/netmap"), "{text}");
        }
    }
    match NetmapBuilder::new("netmap:x{1")
        .backend(BackendKind::Libnetmap)
        .build()
    {
        Err(Error::Library { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected a library error, got {other:?}"),
    }
}

fn not_a_file() {
    not_a_library();
    match probe::probe().library {
        LibraryStatus::Unusable(why) => assert!(why.contains("not a regular file (it is a FIFO)"), "{why}"),
        other => panic!("loaded a FIFO: {other:?}"),
    }
    match NetmapBuilder::new("netmap:x{1")
        .backend(BackendKind::Libnetmap)
        .build()
    {
        Err(e @ Error::Library { .. }) => assert!(e.to_string().contains("not a regular file"), "{e}"),
        other => panic!("expected a library error, got {other:?}"),
    }
}

fn errors() {
    // The slave end of a pipe whose master is not open makes the pair, as
    // the module does.
    drop(NetmapBuilder::new("netmap:nomaster}9").build().unwrap());
    // Rings already bound: the library's EBUSY is the error every backend
    // gives, naming the rings asked for.
    let _held = NetmapBuilder::new("netmap:held{1").build().unwrap();
    match NetmapBuilder::new("netmap:held{1").build() {
        Err(e @ Error::Busy { .. }) => {
            println!("{e}");
            let Error::Busy { name, rings, .. } = e else {
                unreachable!()
            };
            assert_eq!(name, "netmap:held{1");
            assert_eq!(rings, "hardware TX rings and RX rings");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // Ports that share their rings open side by side through the library,
    // and keep exclusive ones out.
    // SAFETY: neither port uses its rings.
    let shared = unsafe { NetmapBuilder::new("netmap:shared{1").share_rings() };
    let a = shared.build().unwrap();
    assert_eq!(a.backend(), BackendKind::Libnetmap);
    // SAFETY: as above.
    let shared = unsafe { NetmapBuilder::new("netmap:shared{1").share_rings() };
    let b = shared.build().unwrap();
    assert_eq!(a.tx_ring_ids(), b.tx_ring_ids());
    match NetmapBuilder::new("netmap:shared{1-0/R").build() {
        Err(Error::Busy { rings, .. }) => assert_eq!(rings, "RX rings 0..1"),
        other => panic!("expected Busy, got {other:?}"),
    }
    drop((a, b));
    let _exclusive = NetmapBuilder::new("netmap:shared{1").build().unwrap();
    // An option the implementation refuses: the message that the library
    // gave its error callback is the error's text.
    match NetmapBuilder::new("netmap:opt{1").offsets(64, 64, 8, 0).build() {
        Err(e @ Error::Library { symbol: None, .. }) => {
            let text = e.to_string();
            println!("{text}");
            assert!(text.contains("netmap:opt{1: option offsets: "), "{text}");
            assert!(text.contains("nmport_open_desc"), "{text}");
        }
        other => panic!("expected the library's refusal, got {other:?}"),
    }
    // Host rings, which the implementation under the library lacks.
    match NetmapBuilder::new("netmap:hostless^").build() {
        Err(e @ Error::Library { .. }) => {
            println!("{e}");
            assert!(e.to_string().contains("netmap:hostless^: "), "{e}");
        }
        other => panic!("expected the library's refusal, got {other:?}"),
    }
    // The failed opens left nothing behind: the names open now.
    NetmapBuilder::new("netmap:opt{1").build().unwrap();
    NetmapBuilder::new("netmap:nomaster{9").build().unwrap();
}

fn domains() {
    let a = NetmapBuilder::new("netmap:dom{1").build().unwrap();
    let b = NetmapBuilder::new("netmap:dom}1").build().unwrap();
    let e = NetmapBuilder::new("emu:dom{1").build().unwrap();
    let _e_peer = NetmapBuilder::new("emu:dom}1").build().unwrap();
    assert_eq!(a.backend(), BackendKind::Libnetmap);
    let mut atx = a.tx_ring(0).unwrap();
    for p in [b"one", b"two"] {
        atx.send(p).unwrap();
    }
    atx.sync().unwrap();
    drop(atx);
    let mut rx = b.rx_ring(0).unwrap();
    rx.sync().unwrap();
    // To the embedded kernel: refused, naming the library's region.
    let mut etx = e.tx_ring(0).unwrap();
    match etx.forward(rx.recv().unwrap()) {
        Err(Error::MemoryMismatch { a: from, b: to }) => {
            assert!(from.contains("libnetmap"), "{from}");
            assert!(!from.contains("kernel memory"), "{from}");
            assert!(to.contains("embedded"), "{to}");
        }
        other => panic!("expected MemoryMismatch, got {other:?}"),
    }
    // Within the library's memory (the two ends of its pipe): swapped.
    let mut btx = b.tx_ring(0).unwrap();
    btx.forward(rx.recv().unwrap()).unwrap();
    btx.sync().unwrap();
    drop((btx, rx));
    let mut arx = a.rx_ring(0).unwrap();
    arx.sync().unwrap();
    assert_eq!(arx.recv().unwrap().payload(), b"two");
}

fn threads() {
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for i in 0..25 {
                    let a = NetmapBuilder::new(&format!("netmap:t{t}x{i}{{1"))
                        .build()
                        .unwrap();
                    let b = NetmapBuilder::new(&format!("netmap:t{t}x{i}}}1"))
                        .build()
                        .unwrap();
                    pump(&a, &b, 3);
                    // Each thread's failure carries its own message.
                    let name = format!("netmap:t{t}y{i}{{1");
                    match NetmapBuilder::new(&name).offsets(1, 1, 1, 0).build() {
                        Err(Error::Library { reason, .. }) => {
                            assert!(reason.contains(&format!("{name}: option offsets")), "{reason}");
                            assert!(!reason.contains("; "), "another thread's message: {reason}");
                        }
                        other => panic!("expected a library error, got {other:?}"),
                    }
                }
            });
        }
    });
}

fn compare() {
    type Shape = (
        usize,
        usize,
        std::ops::Range<u16>,
        std::ops::Range<u16>,
        bool,
        (u32, u32),
    );
    fn shape(p: &Netmap) -> Shape {
        (
            p.num_tx_rings(),
            p.num_rx_rings(),
            p.tx_ring_ids(),
            p.rx_ring_ids(),
            p.is_host_if(),
            p.num_slots(),
        )
    }
    // Each name with the builder settings to open it with; the ports stay
    // open, so later slave ends find their masters.
    let cases: Vec<(&str, Option<usize>)> = vec![
        ("cmp{1", None),
        ("cmp}1", None),
        ("cmp3{1", Some(3)),
        ("cmp3}1", None),
        ("cmp3{2", Some(3)),
        ("cmp3}2-1", None),
        ("cmp3}2-2/T", None),
        ("cmp4{1/R", Some(2)),
        ("cmp4}1/T", None),
        ("loop", None),
        ("loop4@conf:rings=4", None),
        ("slots{1@conf:slots=128", None),
    ];
    let mut keep = Vec::new();
    for (name, rings) in cases {
        let open = |prefix: &str| {
            let mut b = NetmapBuilder::new(&format!("{prefix}{name}"));
            if let Some(n) = rings {
                b = b.num_tx_rings(n).num_rx_rings(n);
            }
            b.build()
        };
        let lib = open("netmap:").unwrap_or_else(|e| panic!("netmap:{name}: {e}"));
        let emu = open("emu:").unwrap_or_else(|e| panic!("emu:{name}: {e}"));
        assert_eq!(lib.backend(), BackendKind::Libnetmap);
        assert_eq!(emu.backend(), BackendKind::Emulated);
        assert_eq!(shape(&lib), shape(&emu), "{name}");
        println!("{name}: {:?}", shape(&lib));
        keep.push((lib, emu));
    }
    // A name neither implementation serves fails on both.
    assert!(NetmapBuilder::new("netmap:cmp^").build().is_err());
    assert!(NetmapBuilder::new("emu:cmp^").build().is_err());
}
