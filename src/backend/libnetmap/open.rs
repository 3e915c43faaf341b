//! Opening a port through libnetmap: `nmport_prepare`, the builder's settings, `nmport_open_desc`.

use std::ffi::{c_int, c_void, CStr, CString};
use std::io;
use std::ops::Range;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use super::call::{errno, Call};
use super::port::{map_extmem, Descriptor, LibFd};
use super::LibNetmap;
use crate::backend::kernel::{self, KernelPort, RegisterExtras};
use crate::backend::sys::OwnedMap;
use crate::backend::Mapping;
use crate::error::{BackendKind, Error, Name, Refusal, Refusals, Result};
use crate::ffi::{self, netmap_if, nmctx, nmem_d, nmport_d, nmreq_register};
use crate::ring::IfTable;
use crate::spec::{self, OffsetOpt, PortSpec};

/// Opens `spec` through libnetmap: `nmport_prepare`, the builder's settings,
/// `nmport_open_desc`.
pub(crate) fn open(lib: &Arc<LibNetmap>, spec: &PortSpec, extras: RegisterExtras) -> Result<KernelPort> {
    let name = c_name(spec)?;
    let opening = Opening {
        lib,
        spec,
        named: spec::parse(&spec.text).unwrap_or_else(|_| spec.clone()),
    };
    let options = opening.options()?;
    let mut call = Call::begin(lib);
    let (d, asked) = opening.prepare(&name, extras, &mut call)?;
    let opened = opening.register(d, &asked, &options, &call)?;
    drop(call);
    opening.into_port(d, opened, options.extmem.map(|(_, x)| x))
}

/// The port's name as `nmport_prepare` takes it.
fn c_name(spec: &PortSpec) -> Result<CString> {
    CString::new(spec.text.as_str()).map_err(|e| Error::InvalidPortSpec {
        spec: spec.text.clone(),
        position: e.nul_position(),
        expected: "a name without NUL bytes".into(),
    })
}

/// One port being opened.
struct Opening<'a> {
    lib: &'a Arc<LibNetmap>,
    spec: &'a PortSpec,
    /// What the name alone asks for; the builder's calls are the difference.
    named: PortSpec,
}

/// The builder's settings that libnetmap takes through entry points of
/// their own, each with its entry point, resolved before the first call.
struct Options<'a> {
    offset: Option<(ffi::nmport_offset_t, &'a OffsetOpt)>,
    /// The memory is mapped here, before the library sees the port.
    extmem: Option<(ffi::nmport_extmem_t, OwnedMap)>,
}

/// What the descriptor holds once registered: a snapshot taken under the
/// lock.
struct Opened {
    fd: RawFd,
    nifp: *mut netmap_if,
    ctx: *mut nmctx,
    reg: nmreq_register,
    tx: (u16, u16),
    rx: (u16, u16),
    /// The base and size of the memory region, from the descriptor's
    /// `nmem_d`, if it has one.
    region: Option<(*mut c_void, usize)>,
}

impl<'a> Opening<'a> {
    /// The options the builder set beyond the name; refused if this library
    /// lacks their entry points.
    fn options(&self) -> Result<Options<'a>> {
        let (lib, spec, named) = (self.lib, self.spec, &self.named);
        let offset = match spec.offset.as_ref().filter(|_| spec.offset != named.offset) {
            Some(o) => Some((
                lib.nmport_offset
                    .ok_or_else(|| missing(lib, "nmport_offset", "buffer offsets"))?,
                o,
            )),
            None => None,
        };
        let extmem = match spec.extmem.as_ref().filter(|_| spec.extmem != named.extmem) {
            Some(x) => {
                let f = lib
                    .nmport_extmem
                    .ok_or_else(|| missing(lib, "nmport_extmem", "external memory"))?;
                Some((f, map_extmem(&x.file, &spec.text)?))
            }
            None => None,
        };
        Ok(Options { offset, extmem })
    }

    /// `nmport_prepare` of `name`, with the builder's settings written into
    /// the descriptor's register request: the descriptor, and that request.
    fn prepare(
        &self,
        name: &CStr,
        extras: RegisterExtras,
        call: &mut Call,
    ) -> Result<(NonNull<nmport_d>, nmreq_register)> {
        let lib = self.lib;
        // SAFETY: `name` is NUL-terminated and outlives the call.
        let d = unsafe { (lib.nmport_prepare)(name.as_ptr()) };
        let Some(d) = NonNull::new(d) else {
            return Err(library_error(
                lib,
                self.spec,
                "nmport_prepare",
                errno(),
                call,
                None,
            ));
        };
        let d_ptr = d.as_ptr();
        // SAFETY: `d` is a live descriptor fresh from `nmport_prepare`; its
        // `ctx` is one of the library's contexts.
        unsafe { call.capture(ptr::addr_of!((*d_ptr).ctx).read()) };
        // SAFETY: as above; `reg` is plain data owned by the descriptor, which
        // nothing else touches before `nmport_open_desc`.
        let asked = unsafe {
            let reg = ptr::addr_of_mut!((*d_ptr).reg);
            let asked = builder_settings(reg.read(), self.spec, &self.named, extras);
            reg.write(asked);
            asked
        };
        Ok((d, asked))
    }

    /// Gives the prepared `d` the `options` and registers it, under `call`;
    /// a failure undoes the prepare.
    fn register(
        &self,
        d: NonNull<nmport_d>,
        asked: &nmreq_register,
        options: &Options<'_>,
        call: &Call,
    ) -> Result<Opened> {
        let lib = self.lib;
        // SAFETY: `d` is fresh from `nmport_prepare`, and `options` hold
        // this library's entry points.
        if let Err((step, code)) = unsafe { open_desc(lib, d.as_ptr(), options) } {
            let e = library_error(lib, self.spec, step, code, call, Some(asked));
            // SAFETY: `d` came from `nmport_prepare` and was not opened.
            unsafe { (lib.nmport_undo_prepare)(d.as_ptr()) };
            return Err(e);
        }
        // SAFETY: `d` is now an open descriptor, and `call` holds the lock.
        Ok(unsafe { Opened::read(d.as_ptr()) })
    }

    /// The port over the open `d`, checked: its descriptor (which closes it
    /// again, should a check fail), mapping, ring table and ring ids.
    fn into_port(self, d: NonNull<nmport_d>, o: Opened, extmem: Option<OwnedMap>) -> Result<KernelPort> {
        let (lib, spec) = (self.lib, self.spec);
        // SAFETY: `d` is a descriptor of `lib` that `nmport_open_desc`
        // opened, handed to nothing else; `o` was read from it, and `extmem`
        // is the memory it was given.
        let desc = unsafe { Descriptor::new(d, o.ctx, o.fd, spec.text.clone(), extmem, Arc::clone(lib)) };
        let desc = Arc::new(desc);
        // Any error below drops `desc`, which closes the port.
        let corrupt = |what: String| Error::Library {
            path: lib.path.clone(),
            symbol: Some("nmport_open_desc".into()),
            reason: format!(
                "opening `{}` returned an unusable descriptor: {what}",
                Name(&spec.text)
            ),
        };
        if o.fd < 0 {
            return Err(corrupt(format!("fd {}", o.fd)));
        }
        let (base, len) = match o.region {
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
            map: Arc::new(map),
            fd: Box::new(LibFd::new(desc)),
            nifp,
            table,
            reg: o.reg,
            tx,
            rx,
        })
    }
}

/// Gives the prepared `d` the `options` (`nmport_offset`, `nmport_extmem`)
/// and registers it (`nmport_open_desc`); on failure, the step that failed
/// and its `errno`.
///
/// # Safety
/// `d` must be a descriptor of `lib` fresh from `nmport_prepare`, and the
/// entry points in `options` those of `lib`.
unsafe fn open_desc(
    lib: &LibNetmap,
    d: *mut nmport_d,
    options: &Options<'_>,
) -> Result<(), (&'static str, c_int)> {
    if let Some((f, o)) = options.offset {
        // SAFETY: `f` is `nmport_offset`, `d` a prepared descriptor.
        if unsafe { f(d, o.initial, o.maxoff, o.bits, o.mingap) } < 0 {
            return Err(("nmport_offset", errno()));
        }
    }
    if let Some((f, x)) = &options.extmem {
        // SAFETY: `f` is `nmport_extmem`, `d` a prepared descriptor; the
        // memory stays mapped until after `nmport_close` (it moves into the
        // `Descriptor`, which unmaps it after closing).
        if unsafe { f(d, x.base().as_ptr().cast(), x.len()) } < 0 {
            return Err(("nmport_extmem", errno()));
        }
    }
    // SAFETY: `d` is a prepared descriptor.
    if unsafe { (lib.nmport_open_desc)(d) } < 0 {
        return Err(("nmport_open_desc", errno()));
    }
    Ok(())
}

impl Opened {
    /// Reads what the open descriptor `d` holds.
    ///
    /// # Safety
    /// `d` must be an open descriptor, and the call lock held: its `nmem_d`
    /// is the library's, on a list that only calls under the lock change.
    unsafe fn read(d: *mut nmport_d) -> Opened {
        // SAFETY: `d` is an open descriptor (caller); its fields are plain
        // data, read through the raw pointer.
        let mem: *mut nmem_d = unsafe { ptr::addr_of!((*d).mem).read() };
        // The `nmem_d` is the library's; read it while its list is ours alone.
        // SAFETY: a non-null `mem` of an open descriptor points at its region
        // descriptor.
        let region = NonNull::new(mem).map(|m| unsafe {
            (
                ptr::addr_of!((*m.as_ptr()).mem).read(),
                ptr::addr_of!((*m.as_ptr()).size).read(),
            )
        });
        // SAFETY: as for `mem`.
        unsafe {
            Opened {
                fd: ptr::addr_of!((*d).fd).read(),
                nifp: ptr::addr_of!((*d).nifp).read(),
                ctx: ptr::addr_of!((*d).ctx).read(),
                reg: ptr::addr_of!((*d).reg).read(),
                tx: (
                    ptr::addr_of!((*d).first_tx_ring).read(),
                    ptr::addr_of!((*d).last_tx_ring).read(),
                ),
                rx: (
                    ptr::addr_of!((*d).first_rx_ring).read(),
                    ptr::addr_of!((*d).last_rx_ring).read(),
                ),
                region,
            }
        }
    }
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
    if extras.extra_bufs > 0 {
        reg.nr_extra_bufs = extras.extra_bufs;
    }
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
    let name = Name(&spec.text);
    let said = if said.is_empty() {
        if code != 0 {
            os.to_string()
        } else {
            "no reason given".into()
        }
    } else {
        // The library's words may quote the name whole.
        name.scrub(&said)
    };
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
            port: spec.text.clone(),
            reasons: Refusals::from(vec![Refusal::new(
                BackendKind::Libnetmap,
                format!("{} loaded, but it says: {said}", lib.path),
            )]),
        },
        libc::ENOENT | libc::ENXIO | libc::ENODEV if registering => Error::InterfaceNotFound {
            name: spec.text.clone(),
        },
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
