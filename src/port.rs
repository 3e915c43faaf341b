//! `NetmapBuilder` and `Netmap`: opening a port and handing out its rings.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use crate::backend::devnetmap::DevNetmap;
use crate::backend::kernel::{self, KernelPort, RegisterExtras};
use crate::backend::{emu, Kernel, MemDomain, SyncDir};
use crate::error::{BackendKind, Error, Refusal, Refusals, Result};
use crate::ffi;
use crate::ring::{RingCore, RxRing, TxRing};
use crate::spec::{self, PortKind, PortSpec, RingSelect};

/// Identifies a memory region: buffers can be swapped between two ports only
/// when their keys are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RegionKey {
    domain: MemDomain,
    mem_id: u16,
}

impl fmt::Display for RegionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.domain {
            MemDomain::Kernel => write!(f, "kernel memory region {}", self.mem_id),
            MemDomain::Emulated => write!(f, "embedded memory region {}", self.mem_id),
        }
    }
}

/// Opens a netmap port.
///
/// The name follows libnetmap's port-name grammar (see [`spec`](crate::spec)):
/// `netmap:eth0`, `eth0` (the `netmap:` prefix is added), `eth0^` (host
/// rings), `eth0-2` (one ring pair), `vale0:p1`, pipes `eth0{1` / `eth0}1`,
/// and `emu:NAME{ID` / `emu:NAME}ID` for pipes of the embedded kernel.
///
/// ```
/// use netmap_rs::NetmapBuilder;
///
/// # fn main() -> Result<(), netmap_rs::Error> {
/// let port = NetmapBuilder::new("emu:builder{1")
///     .num_tx_rings(1)
///     .num_rx_rings(1)
///     .num_slots(256)
///     .build()?;
/// assert_eq!(port.num_tx_rings(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct NetmapBuilder {
    spec: Result<PortSpec, Error>,
    extras: RegisterExtras,
    backend: Option<BackendKind>,
}

impl NetmapBuilder {
    /// Starts opening the port `name`. A malformed name is reported by
    /// [`build`](NetmapBuilder::build).
    pub fn new(name: &str) -> Self {
        NetmapBuilder {
            spec: spec::parse(name),
            extras: RegisterExtras::default(),
            backend: None,
        }
    }

    fn conf(mut self, f: impl FnOnce(&mut spec::Conf)) -> Self {
        if let Ok(spec) = &mut self.spec {
            f(&mut spec.conf);
        }
        self
    }

    /// Asks for `n` TX rings where the port is created by this open (VALE
    /// ports, pipes); hardware ports keep their own count.
    pub fn num_tx_rings(self, n: usize) -> Self {
        let n = u16::try_from(n).unwrap_or(u16::MAX);
        self.conf(|c| c.tx_rings = Some(n))
    }

    /// Asks for `n` RX rings where the port is created by this open.
    pub fn num_rx_rings(self, n: usize) -> Self {
        let n = u16::try_from(n).unwrap_or(u16::MAX);
        self.conf(|c| c.rx_rings = Some(n))
    }

    /// Asks for `n` slots per ring where the port is created by this open.
    pub fn num_slots(self, n: u32) -> Self {
        self.conf(|c| {
            c.tx_slots = Some(n);
            c.rx_slots = Some(n);
        })
    }

    /// Selects the rings to bind, as the name's suffix would (`-N`, `^`, `*`).
    pub fn rings(mut self, rings: RingSelect) -> Self {
        if let Ok(spec) = &mut self.spec {
            spec.rings = rings;
        }
        self
    }

    /// Adds `NR_*` register flags, such as
    /// [`NR_NO_TX_POLL`](crate::ffi::NR_NO_TX_POLL) or
    /// [`NR_EXCLUSIVE`](crate::ffi::NR_EXCLUSIVE).
    pub fn flags(mut self, flags: u64) -> Self {
        self.extras.flags |= flags;
        self
    }

    /// Forces a backend instead of choosing one.
    pub fn backend(mut self, backend: BackendKind) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Opens the port.
    ///
    /// Errors: [`Error::InvalidPortSpec`] for a malformed name,
    /// [`Error::Unavailable`] when no backend can serve it (with each one's
    /// reason), [`Error::InterfaceNotFound`], [`Error::PermissionDenied`],
    /// [`Error::Busy`], [`Error::ApiVersionMismatch`], [`Error::Io`].
    pub fn build(self) -> Result<Netmap> {
        let spec = self.spec?;
        open_spec(spec, self.extras, self.backend)
    }

    /// Opens one port per ring (of the rings the name selects), for
    /// thread-per-ring designs: each [`Netmap`] is `Send` and binds a single
    /// TX/RX ring pair, so each thread syncs only its own rings.
    ///
    /// ```
    /// # use netmap_rs::prelude::*;
    /// # fn main() -> Result<(), Error> {
    /// let ports = NetmapBuilder::new("emu:per{1").num_tx_rings(2).num_rx_rings(2).build_per_ring()?;
    /// assert_eq!(ports.len(), 2);
    /// let handles: Vec<_> = ports
    ///     .into_iter()
    ///     .map(|p| std::thread::spawn(move || p.tx_ring(0).map(|r| r.id())))
    ///     .collect();
    /// for h in handles {
    ///     h.join().unwrap()?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn build_per_ring(self) -> Result<Vec<Netmap>> {
        let spec = self.spec?;
        let (nic, host) = {
            let all = open_spec(spec.clone(), self.extras, self.backend)?;
            let nic = all.port.reg.nr_tx_rings.max(all.port.reg.nr_rx_rings);
            // SAFETY: `nifp` points at the port's live netmap_if; the
            // count is constant after registration.
            let host = unsafe { std::ptr::addr_of!((*all.port.nifp.as_ptr()).ni_host_tx_rings).read() };
            (nic, host as u16)
        };
        let selects: Vec<RingSelect> = match spec.rings {
            RingSelect::AllNic => (0..nic).map(RingSelect::OneNic).collect(),
            RingSelect::Host => (0..host).map(RingSelect::OneHost).collect(),
            RingSelect::NicAndHost => (0..nic)
                .map(RingSelect::OneNic)
                .chain((0..host).map(RingSelect::OneHost))
                .collect(),
            one @ (RingSelect::OneNic(_) | RingSelect::OneHost(_)) => vec![one],
        };
        selects
            .into_iter()
            .map(|rings| {
                let mut s = spec.clone();
                s.rings = rings;
                open_spec(s, self.extras, self.backend)
            })
            .collect()
    }
}

/// Picks the backend for `spec` and opens it.
fn open_spec(spec: PortSpec, extras: RegisterExtras, forced: Option<BackendKind>) -> Result<Netmap> {
    let choice = choose(&spec, forced).0?;
    let port = kernel::open(choice.kernel, &spec, extras)?;
    Netmap::new(port, spec, choice.backend, choice.kernel.domain())
}

pub(crate) struct Choice {
    kernel: &'static dyn Kernel,
    pub(crate) backend: BackendKind,
}

static DEV_NETMAP: std::sync::LazyLock<DevNetmap> = std::sync::LazyLock::new(DevNetmap::system);

/// Which backend `build()` would use for `spec` (or why none can), and why
/// each backend it passed over was refused.
pub(crate) fn choose(spec: &PortSpec, forced: Option<BackendKind>) -> (Result<Choice>, Vec<Refusal>) {
    let refusal = |backend, reason: &str| Refusal {
        backend,
        reason: reason.into(),
    };
    let mut refused = Vec::new();
    match (&spec.kind, forced) {
        (PortKind::Emu, None | Some(BackendKind::Emulated)) => {
            let choice = Choice {
                kernel: emu::emu(),
                backend: BackendKind::Emulated,
            };
            return (Ok(choice), refused);
        }
        (PortKind::Emu, Some(other)) => {
            refused.push(refusal(other, "`emu:` names exist only in the embedded kernel"));
            return (Err(unavailable(spec, &refused)), refused);
        }
        (PortKind::AfPacket, _) | (_, Some(BackendKind::AfPacket)) => {
            let e = Error::Unsupported {
                backend: BackendKind::AfPacket,
                what: format!("opening {}", spec.text),
                hint: "this version has no AF_PACKET backend yet; use a netmap port".into(),
            };
            refused.push(refusal(BackendKind::AfPacket, "not built in this version"));
            return (Err(e), refused);
        }
        _ => {}
    }
    refused.push(refusal(BackendKind::Emulated, "it serves only `emu:` names"));
    if forced == Some(BackendKind::Emulated) {
        return (Err(unavailable(spec, &refused)), refused);
    }
    if forced.is_none() || forced == Some(BackendKind::Libnetmap) {
        let reason = match crate::backend::libnetmap::load() {
            Ok(lib) => format!(
                "{} loaded, but this version opens ports through /dev/netmap",
                lib.path
            ),
            Err(e) => e.to_string(),
        };
        refused.push(refusal(BackendKind::Libnetmap, &reason));
        if forced == Some(BackendKind::Libnetmap) {
            return (Err(unavailable(spec, &refused)), refused);
        }
    }
    match kernel_status() {
        Ok(()) => {
            let choice = Choice {
                kernel: &*DEV_NETMAP,
                backend: BackendKind::Kernel,
            };
            (Ok(choice), refused)
        }
        Err(e) => {
            refused.push(refusal(BackendKind::Kernel, &kernel_refusal(&e)));
            let err = if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) {
                Error::PermissionDenied {
                    what: format!("opening {} ({e})", ffi::NETMAP_DEVICE_NAME),
                }
            } else {
                unavailable(spec, &refused)
            };
            (Err(err), refused)
        }
    }
}

fn unavailable(spec: &PortSpec, refused: &[Refusal]) -> Error {
    Error::Unavailable {
        port: spec.text.clone(),
        reasons: Refusals(refused.to_vec()),
    }
}

/// Whether `/dev/netmap` can be opened.
pub(crate) fn kernel_status() -> io::Result<()> {
    DEV_NETMAP.open().map(drop)
}

/// Why `/dev/netmap` cannot be used, in words.
pub(crate) fn kernel_refusal(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => format!(
            "{} does not exist (the netmap kernel module is not loaded)",
            ffi::NETMAP_DEVICE_NAME
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => format!("{}: permission denied", ffi::NETMAP_DEVICE_NAME),
        _ => format!("{}: {e}", ffi::NETMAP_DEVICE_NAME),
    }
}

/// An open netmap port: a file descriptor bound to some of an interface's
/// rings, and the shared memory that holds them.
///
/// Get rings with [`tx_ring`](Netmap::tx_ring) and [`rx_ring`](Netmap::rx_ring);
/// each ring can have one live handle at a time. A sync on the port's
/// descriptor touches every ring bound to it, so a port and its rings stay on
/// one thread: `Netmap` is `Send` but not `Sync`. For one thread per ring,
/// open one port per ring ([`NetmapBuilder::build_per_ring`]).
pub struct Netmap {
    port: KernelPort,
    spec: PortSpec,
    backend: BackendKind,
    region: RegionKey,
    live_tx: Box<[Cell<bool>]>,
    live_rx: Box<[Cell<bool>]>,
    /// Not `Sync`: two threads syncing one descriptor would race on its rings.
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: a `Netmap` owns its descriptor and mapping outright; the raw
// `netmap_if` pointer in it refers into that mapping, which moves with it.
// It is not `Sync` (the `Cell`s), so its rings are only ever driven from the
// one thread that holds it.
unsafe impl Send for Netmap {}

impl fmt::Debug for Netmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netmap")
            .field("name", &self.spec.text)
            .field("backend", &self.backend)
            .field("tx_rings", &self.port.tx)
            .field("rx_rings", &self.port.rx)
            .field("region", &self.region)
            .finish()
    }
}

impl Netmap {
    fn new(port: KernelPort, spec: PortSpec, backend: BackendKind, domain: MemDomain) -> Result<Self> {
        let region = RegionKey {
            domain,
            mem_id: port.reg.nr_mem_id,
        };
        let cells = |r: &Range<u16>| (0..r.len()).map(|_| Cell::new(false)).collect();
        Ok(Netmap {
            live_tx: cells(&port.tx),
            live_rx: cells(&port.rx),
            port,
            spec,
            backend,
            region,
            _not_sync: PhantomData,
        })
    }

    /// How many TX rings this port binds.
    pub fn num_tx_rings(&self) -> usize {
        self.port.tx.len()
    }

    /// How many RX rings this port binds.
    pub fn num_rx_rings(&self) -> usize {
        self.port.rx.len()
    }

    /// Whether this port binds the host stack's rings only (`eth0^`).
    pub fn is_host_if(&self) -> bool {
        self.spec.is_host()
    }

    /// The backend that opened this port.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// The port's name, as parsed.
    pub fn name(&self) -> &str {
        &self.spec.text
    }

    /// The parsed port name.
    pub fn spec(&self) -> &PortSpec {
        &self.spec
    }

    /// The kernel's id of the port's memory region (`nr_mem_id`).
    pub fn mem_id(&self) -> u16 {
        self.region.mem_id
    }

    /// Ids of the TX rings bound to this port.
    pub fn tx_ring_ids(&self) -> Range<u16> {
        self.port.tx.clone()
    }

    /// Ids of the RX rings bound to this port.
    pub fn rx_ring_ids(&self) -> Range<u16> {
        self.port.rx.clone()
    }

    /// Slots per TX ring and per RX ring.
    pub fn num_slots(&self) -> (u32, u32) {
        (self.port.reg.nr_tx_slots, self.port.reg.nr_rx_slots)
    }

    /// The port's `netmap_if`, for handing to C code that speaks netmap.
    /// Reading or writing through it is `unsafe` and must respect the ring
    /// ownership rules; it is valid while `self` lives.
    pub fn raw_if(&self) -> std::ptr::NonNull<ffi::netmap_if> {
        self.port.nifp
    }

    /// `NIOCTXSYNC`: syncs every TX ring of the port. Ring handles learn the
    /// result at their own next sync; most programs call [`TxRing::sync`].
    pub fn txsync(&self) -> Result<()> {
        self.sync(SyncDir::Tx)
    }

    /// `NIOCRXSYNC`: syncs every RX ring of the port. Ring handles learn the
    /// result at their own next sync; most programs call [`RxRing::sync`].
    pub fn rxsync(&self) -> Result<()> {
        self.sync(SyncDir::Rx)
    }

    pub(crate) fn region_key(&self) -> RegionKey {
        self.region
    }

    /// The `index`th TX ring of this port (0-based among the bound rings).
    ///
    /// Errors: [`Error::RingIndexOutOfRange`], or [`Error::RingInUse`] while
    /// another handle to the same ring is alive.
    pub fn tx_ring(&self, index: usize) -> Result<TxRing<'_>> {
        let core = self.ring_core(SyncDir::Tx, index)?;
        Ok(TxRing::new(core, self, index))
    }

    /// The `index`th RX ring of this port (0-based among the bound rings).
    ///
    /// Errors: as for [`tx_ring`](Netmap::tx_ring).
    pub fn rx_ring(&self, index: usize) -> Result<RxRing<'_>> {
        let core = self.ring_core(SyncDir::Rx, index)?;
        Ok(RxRing::new(core, self, index))
    }

    fn ring_core(&self, dir: SyncDir, index: usize) -> Result<RingCore> {
        let (live, ids, name) = match dir {
            SyncDir::Tx => (&self.live_tx, &self.port.tx, "TX"),
            SyncDir::Rx => (&self.live_rx, &self.port.rx, "RX"),
        };
        let Some(cell) = live.get(index) else {
            return Err(Error::RingIndexOutOfRange {
                index,
                count: live.len(),
                dir: name,
            });
        };
        if cell.get() {
            return Err(Error::RingInUse { index, dir: name });
        }
        let id = ids.start as usize + index;
        let nifp = self.port.nifp.as_ptr();
        // SAFETY: `nifp` points at this port's netmap_if, whose ring offset
        // table was bounds-checked at open for every bound ring; `id` is one.
        let ring = unsafe {
            match dir {
                SyncDir::Tx => ffi::NETMAP_TXRING(nifp, id),
                SyncDir::Rx => ffi::NETMAP_RXRING(nifp, id),
            }
        };
        let ring = std::ptr::NonNull::new(ring).ok_or(Error::RingCorrupt {
            ring: id as u16,
            what: "null ring".into(),
        })?;
        // SAFETY: the mapping lives as long as `self`, which every ring
        // handle borrows; `RingCore::new` checks that the ring lies inside it.
        let core = unsafe { RingCore::new(ring, self.port.map.base().as_ptr(), self.port.map.len())? };
        cell.set(true);
        Ok(core)
    }

    pub(crate) fn release_ring(&self, dir: SyncDir, index: usize) {
        let live = match dir {
            SyncDir::Tx => &self.live_tx,
            SyncDir::Rx => &self.live_rx,
        };
        if let Some(c) = live.get(index) {
            c.set(false);
        }
    }

    pub(crate) fn sync(&self, dir: SyncDir) -> Result<()> {
        self.port.fd.sync(dir).map_err(|e| {
            let op = match dir {
                SyncDir::Tx => "NIOCTXSYNC",
                SyncDir::Rx => "NIOCRXSYNC",
            };
            Error::io(format!("{op} on {}", self.spec.text), e)
        })
    }

    /// Waits until an RX ring of the port has packets, or `timeout` passes
    /// (`None`: forever). Like `poll(2)` on a netmap descriptor, it syncs the
    /// port's rings; call each ring's `sync` afterwards to see the packets.
    /// Returns whether packets are ready.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.wait(libc::POLLIN, timeout)
    }

    /// Waits until a TX ring of the port has room, or `timeout` passes.
    pub fn poll_writable(&self, timeout: Option<Duration>) -> Result<bool> {
        self.wait(libc::POLLOUT, timeout)
    }

    fn wait(&self, events: i16, timeout: Option<Duration>) -> Result<bool> {
        let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
        let revents = self
            .port
            .fd
            .poll(events, ms)
            .map_err(|e| Error::io(format!("poll on {}", self.spec.text), e))?;
        if revents & libc::POLLERR != 0 {
            return Err(Error::io(
                format!("poll on {}", self.spec.text),
                io::Error::other("the port reported an error (POLLERR)"),
            ));
        }
        Ok(revents & events != 0)
    }
}

impl AsFd for Netmap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.port.fd.as_fd()
    }
}

impl AsRawFd for Netmap {
    fn as_raw_fd(&self) -> RawFd {
        self.port.fd.as_fd().as_raw_fd()
    }
}
