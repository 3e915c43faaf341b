//! Opening a port through libnetmap: `nmport_prepare`, the builder's settings, `nmport_open_desc`.

use std::ffi::{c_int, CString};
use std::io;
use std::ops::Range;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use super::call::{errno, Call};
use super::port::{Descriptor, ExtmemFile, LibFd};
use super::LibNetmap;
use crate::backend::kernel::{self, KernelPort, RegisterExtras};
use crate::backend::Mapping;
use crate::error::{BackendKind, Error, Refusal, Refusals, Result};
use crate::ffi::{self, netmap_if, nmctx, nmem_d, nmreq_register};
use crate::ring::IfTable;
use crate::spec::{self, PortSpec};

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
    // SAFETY: the mapping is live; `read` checks `nifp` against it.
    let table = unsafe { IfTable::read(map.base().as_ptr(), map.len(), nifp, &o.reg)? };
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
pub(super) fn builder_settings(
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
pub(super) fn ring_ids(
    table: &IfTable,
    tx: (u16, u16),
    rx: (u16, u16),
) -> Result<(Range<u16>, Range<u16>), String> {
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
