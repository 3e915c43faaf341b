//! `NetmapBuilder` and `Netmap`: opening a port and handing out its rings.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::fork::{Owner, Privatize};
use crate::backend::kernel::{KernelPort, RegisterExtras};
use crate::backend::select::{self, Fallback, How, XdpMode};
use crate::backend::sys::Deadline;
use crate::backend::{MemDomain, SyncDir};
use crate::error::{BackendKind, Error, Name, Refusal, Result};
use crate::extra::ExtraPool;
use crate::ffi::{self, NETMAP_MAX_FRAGS};
use crate::info::{PoolsInfo, PortInfo};
use crate::ring::{RingCore, RingTable, RxRing, Scratch, TxRing};
use crate::spec::{self, PortSpec, RingSelect};

/// Identifies a memory region: buffers can be swapped between two ports only
/// when their keys are equal. Packed into one word (the domain's tag, a
/// library's number, the `nr_mem_id`), since every frame carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RegionKey(u64);

impl RegionKey {
    fn new(domain: MemDomain, mem_id: u16) -> RegionKey {
        let (tag, n) = match domain {
            MemDomain::Kernel => (0u64, 0u32),
            MemDomain::Emulated => (1, 0),
            MemDomain::AfPacket => (2, 0),
            MemDomain::AfXdp => (4, 0),
            MemDomain::Library(n) => (3, n),
        };
        RegionKey(tag << 48 | u64::from(n) << 16 | u64::from(mem_id))
    }

    fn mem_id(self) -> u16 {
        self.0 as u16
    }
}

/// What [`TxRing::forward`](crate::TxRing::forward) checks of a frame, in
/// one word, so that its fast path takes one compare: the key of the
/// frame's region, with [`FrameKey::OFFSETS`] set if the frame's ring has
/// offsets and [`FrameKey::MULTI`] if the frame spans more than one slot.
/// Region keys stay below bit 50.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameKey(u64);

impl FrameKey {
    const OFFSETS: u64 = 1 << 63;
    const MULTI: u64 = 1 << 62;

    /// A key no frame has: every region key is below [`FrameKey::MULTI`].
    pub(crate) const NONE: FrameKey = FrameKey(u64::MAX);

    /// The key of a one-slot frame of a ring in `region`.
    pub(crate) fn new(region: RegionKey, offsets: bool) -> FrameKey {
        FrameKey(region.0 | if offsets { Self::OFFSETS } else { 0 })
    }

    /// This key, for a frame of `nslots` slots.
    #[inline]
    pub(crate) fn spanning(self, nslots: u16) -> FrameKey {
        FrameKey(self.0 | if nslots == 1 { 0 } else { Self::MULTI })
    }

    pub(crate) fn region(self) -> RegionKey {
        RegionKey(self.0 & !(Self::OFFSETS | Self::MULTI))
    }

    /// Whether the frame's ring has offsets.
    pub(crate) fn offsets(self) -> bool {
        self.0 & Self::OFFSETS != 0
    }
}

impl fmt::Display for RegionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (id, n) = (self.mem_id(), (self.0 >> 16) as u32);
        match self.0 >> 48 {
            0 => write!(f, "kernel memory region {id}"),
            1 => write!(f, "embedded memory region {id}"),
            2 => write!(
                f,
                "the AF_PACKET rings of one port (id {id}; their frames cannot move to another port)"
            ),
            4 => write!(
                f,
                "AF_XDP memory {id} (frames move only between ports named with one memory id, `afxdp:IF@N`)"
            ),
            _ => write!(
                f,
                "memory region {id} of the netmap inside libnetmap #{n} (it brings its own ioctl)"
            ),
        }
    }
}

/// Opens a netmap port.
///
/// `NetmapBuilder` is `Send` and `Sync`: it is plain configuration (the
/// parsed name and the options) and opens nothing until
/// [`build`](NetmapBuilder::build).
///
/// The name follows libnetmap's port-name grammar (see [`spec`](crate::spec)):
/// `netmap:eth0`, `eth0` (the `netmap:` prefix is added), `eth0^` (host
/// rings), `eth0-2` (one ring pair), `vale0:p1`, pipes `eth0{1` / `eth0}1`,
/// `emu:NAME{ID` / `emu:NAME}ID` for pipes of the embedded kernel, and
/// `afpacket:eth0` for an interface through Linux `AF_PACKET` sockets
/// (always; [`fallback`](NetmapBuilder::fallback) allows them for netmap
/// names when netmap is unavailable).
///
/// # Exclusive rings
///
/// Every port binds its rings exclusively: the register request carries
/// `NR_EXCLUSIVE`, so while it is open no other port, in this process or
/// another, can bind any of those rings, and such an open fails with
/// [`Error::Busy`]. Without it the netmap kernel lets any number of
/// descriptors bind one ring, and two ports would each hand out a ring
/// handle over the same slots and buffers: two `&mut [u8]` over one buffer,
/// from safe code. Ports that select different rings do not collide:
/// `eth0-0` and `eth0-1` (one ring pair each), or `eth0/T` (TX rings only)
/// and `eth0/R` (RX rings only). Binding the same rings twice is an opt-in,
/// with the unsafe [`share_rings`](NetmapBuilder::share_rings).
///
/// ```
/// use netmap_rs::{Error, NetmapBuilder};
///
/// let first = NetmapBuilder::new("emu:excl{1").build()?;
/// assert!(matches!(NetmapBuilder::new("emu:excl{1").build(), Err(Error::Busy { .. })));
/// // Other rings of the same end are free.
/// let tx_only = NetmapBuilder::new("emu:excl2{1/T").build()?;
/// let rx_only = NetmapBuilder::new("emu:excl2{1/R").build()?;
/// # drop((first, tx_only, rx_only));
/// # Ok::<(), Error>(())
/// ```
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
///
/// # Conditional set-up
///
/// Every setter takes the builder by value and hands it back, so a chain
/// reads as above. Settings that come from configuration, present or not,
/// go to the setters that take an `Option` too
/// ([`num_tx_rings`](NetmapBuilder::num_tx_rings),
/// [`num_rx_rings`](NetmapBuilder::num_rx_rings),
/// [`num_slots`](NetmapBuilder::num_slots),
/// [`backend`](NetmapBuilder::backend)): `None` leaves the setting as it
/// was. Any other setting is made conditional by rebinding the builder;
/// and a builder is `Clone`, so one template can open several ports.
///
/// ```
/// use netmap_rs::{BackendKind, NetmapBuilder};
///
/// # fn main() -> Result<(), netmap_rs::Error> {
/// struct Config {
///     slots: Option<u32>,
///     backend: Option<BackendKind>,
///     promiscuous: bool,
///     offset: Option<u64>,
/// }
/// let config = Config { slots: Some(512), backend: None, promiscuous: false, offset: None };
///
/// let mut template = NetmapBuilder::new("emu:conditional{1")
///     .num_slots(config.slots) // `None` would keep the default
///     .backend(config.backend)
///     .promiscuous(config.promiscuous);
/// if let Some(initial) = config.offset {
///     template = template.offsets(initial, initial, 0, 0);
/// }
/// let first = template.clone().build()?;
/// assert_eq!(first.num_slots(), (512, 512));
/// // The same settings for another port: a clone with one change.
/// let other = template.rings(netmap_rs::spec::RingSelect::OneNic(0));
/// # drop((first, other));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct NetmapBuilder {
    /// The parsed name, or why it does not parse (reported by `build`).
    spec: Result<PortSpec, spec::Invalid>,
    extras: RegisterExtras,
    backend: Option<BackendKind>,
    how: How,
}

impl NetmapBuilder {
    /// Starts opening the port `name`. A malformed name is reported by
    /// [`build`](NetmapBuilder::build).
    pub fn new(name: &str) -> Self {
        NetmapBuilder {
            spec: spec::parse_name(name),
            extras: RegisterExtras::default(),
            backend: None,
            how: How::default(),
        }
    }

    fn conf(mut self, f: impl FnOnce(&mut spec::Conf)) -> Self {
        if let Ok(spec) = &mut self.spec {
            f(&mut spec.conf);
        }
        self
    }

    /// Asks for `n` TX rings where the port is created by this open (VALE
    /// ports, pipes); hardware ports keep their own count. `None` leaves
    /// the count as it was (the name's `@conf:`, else the port's default).
    pub fn num_tx_rings(self, n: impl Into<Option<usize>>) -> Self {
        match n.into() {
            Some(n) => self.conf(|c| c.tx_rings = Some(ring_count(n))),
            None => self,
        }
    }

    /// Asks for `n` RX rings where the port is created by this open. `None`
    /// leaves the count as it was.
    pub fn num_rx_rings(self, n: impl Into<Option<usize>>) -> Self {
        match n.into() {
            Some(n) => self.conf(|c| c.rx_rings = Some(ring_count(n))),
            None => self,
        }
    }

    /// Asks for `n` slots per ring where the port is created by this open.
    /// `None` leaves the counts as they were.
    pub fn num_slots(self, n: impl Into<Option<u32>>) -> Self {
        match n.into() {
            Some(n) => self.conf(|c| {
                c.tx_slots = Some(n);
                c.rx_slots = Some(n);
            }),
            None => self,
        }
    }

    /// Selects the rings to bind, as the name's suffix would (`-N`, `^`, `*`).
    pub fn rings(mut self, rings: RingSelect) -> Self {
        if let Ok(spec) = &mut self.spec {
            spec.rings = rings;
        }
        self
    }

    /// Adds `NR_*` register flags, such as
    /// [`NR_NO_TX_POLL`](crate::ffi::NR_NO_TX_POLL). Flags are only ever
    /// added, to the name's and to `NR_EXCLUSIVE`, which every port has
    /// unless it is opened with [`share_rings`](NetmapBuilder::share_rings).
    pub fn flags(mut self, flags: u64) -> Self {
        self.extras.flags |= flags;
        self
    }

    /// Asks for `n` extra buffers (`nr_extra_bufs`): buffers the port owns
    /// beside its rings' slots, in which [`RxRing::keep`] keeps packets
    /// past a sync, as [`KeptFrame`](crate::KeptFrame)s. The kernel may
    /// grant fewer, and AF_PACKET and AF_XDP none:
    /// [`Netmap::extra_buffers`] says how many the port got.
    pub fn extra_buffers(mut self, n: u32) -> Self {
        self.extras.extra_bufs = n;
        self
    }

    /// Lets this port bind rings that other ports bind too: the register
    /// request goes without `NR_EXCLUSIVE`, which every port has otherwise
    /// (see [Exclusive rings](NetmapBuilder#exclusive-rings)). The kernel
    /// then accepts the port beside other ports that share these rings; it
    /// still refuses it ([`Error::Busy`]) while a port binds them
    /// exclusively, and refuses an exclusive port while this one binds
    /// them. A `/x` in the name, or
    /// [`NR_EXCLUSIVE`](crate::ffi::NR_EXCLUSIVE) given to
    /// [`flags`](NetmapBuilder::flags), still asks for exclusive rings.
    ///
    /// Ports that bind different rings need no sharing at all: one process
    /// may open `eth0/T` (the TX rings only) and another `eth0/R` (the RX
    /// rings only), or one `eth0-0` and another `eth0-1`. Sharing is for
    /// ports that do select the same rings, such as a program that hands a
    /// port over to its restarted self, which opens the port before the
    /// old one has stopped using it and closed it.
    ///
    /// On the AF_PACKET backend every port has sockets, and so rings, of
    /// its own: two ports never alias memory, and a shared port sees the
    /// interface's packets beside the others (a second exclusive port of
    /// the same interface rings in this process is [`Error::Busy`], as
    /// netmap would answer; other processes cannot see this process's
    /// ports).
    ///
    /// # Safety
    ///
    /// While this port is open, no other port that binds the same rings, in
    /// this process or in any other, may use them at the same time: of all
    /// the handles bound to a ring, only one may move its `head` and `cur`
    /// and touch its slots and buffers (through ring handles,
    /// [`Netmap::inject`], syncs and polls, or the C API); the others must
    /// leave that ring alone until it is done with it. Two ports using one
    /// ring at once hand out two mutable views of the same buffers.
    ///
    /// ```
    /// use netmap_rs::NetmapBuilder;
    ///
    /// # fn main() -> Result<(), netmap_rs::Error> {
    /// // SAFETY: `old` is not used while `new` is open.
    /// let old = unsafe { NetmapBuilder::new("emu:handover{1").share_rings() }.build()?;
    /// // SAFETY: as above.
    /// let new = unsafe { NetmapBuilder::new("emu:handover{1").share_rings() }.build()?;
    /// drop(old);
    /// # drop(new);
    /// # Ok(())
    /// # }
    /// ```
    pub unsafe fn share_rings(mut self) -> Self {
        self.extras.share_rings = true;
        self
    }

    /// Forces a backend instead of choosing one. `None` leaves the choice
    /// as it was (by default, automatic).
    ///
    /// [`BackendKind::AfPacket`] opens a real interface through AF_PACKET
    /// even where netmap is available. [`BackendKind::Kernel`] drives
    /// `/dev/netmap` directly even where libnetmap is loaded.
    ///
    /// Unforced, a netmap name opens through `libnetmap.so` when it loaded
    /// with every required entry point (`NETMAP_LIBRARY` names a custom
    /// one; [`probe()`](crate::probe()) says which loaded, or why none),
    /// else through `/dev/netmap`. An error from libnetmap (no such port,
    /// busy, refused option) is returned, not retried on `/dev/netmap`; its
    /// message, which libnetmap would print on stderr, is in the error's
    /// text. libnetmap's context is process-global: this crate serializes
    /// every call it makes into the library with a lock of its own, so ports
    /// may be opened and closed from many threads at once.
    pub fn backend(mut self, backend: impl Into<Option<BackendKind>>) -> Self {
        if let Some(b) = backend.into() {
            self.backend = Some(b);
        }
        self
    }

    /// Allows (with [`Fallback::AfXdp`], [`Fallback::AfPacket`] or
    /// [`Fallback::Any`]) or forbids (with [`Fallback::None`], the default)
    /// a fallback when no netmap backend can serve the port: a real
    /// interface's port then opens through Linux `AF_XDP` or `AF_PACKET`
    /// sockets (with `Any`, AF_XDP first, AF_PACKET if AF_XDP cannot open
    /// it). [`Netmap::backend`] says which and [`Netmap::refusals`] why the
    /// others were passed over. A forced [`backend`](NetmapBuilder::backend) is never
    /// replaced by a fallback.
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.how.fallback = fallback;
        self
    }

    /// How an AF_XDP port should move packets ([`XdpMode::Auto`], the
    /// default: the best the interface offers). A mode the interface's
    /// driver does not offer fails the build with [`Error::Unsupported`];
    /// other backends ignore the setting. [`Netmap::xdp_mode`] says what a
    /// port got.
    pub fn xdp_mode(mut self, mode: XdpMode) -> Self {
        self.how.xdp = mode;
        self
    }

    /// Puts the interface in promiscuous mode while the port is open
    /// (AF_PACKET ports only; off by default). netmap ports leave the
    /// interface's mode alone: set it with `ip link set IF promisc on`.
    pub fn promiscuous(mut self, on: bool) -> Self {
        self.how.promisc = on;
        self
    }

    /// Asks for per-slot buffer offsets (`NETMAP_REQ_OPT_OFFSETS`): every
    /// slot starts with offset `initial`, user code keeps offsets at most
    /// `maxoff`, they are stored in the low `bits` bits of the slot's `ptr`,
    /// and `mingap` bytes stay free after each packet. The same request as an
    /// `@offset:` option in the name, with every field settable.
    ///
    /// Ports open with offsets only through libnetmap, whose `nmport_offset`
    /// makes the request: a libnetmap that does not export it gives
    /// [`Error::Library`] naming `nmport_offset`; the `/dev/netmap` and
    /// embedded backends give [`Error::Unsupported`].
    pub fn offsets(mut self, initial: u64, maxoff: u64, bits: u64, mingap: u64) -> Self {
        if let Ok(spec) = &mut self.spec {
            spec.offset = Some(spec::OffsetOpt::new(initial, maxoff, bits, mingap));
        }
        self
    }

    /// Backs the port with external memory: the file at `path` (typically on
    /// hugetlbfs), mapped whole, shared and writable, for as long as the
    /// port is open, as an `@extmem:` option in the name would.
    ///
    /// Ports open with external memory only through libnetmap, whose
    /// `nmport_extmem` receives the mapping: a libnetmap that does not
    /// export it gives [`Error::Library`] naming `nmport_extmem`; the
    /// `/dev/netmap` and embedded backends give [`Error::Unsupported`].
    pub fn extmem(mut self, path: impl AsRef<std::path::Path>) -> Self {
        if let Ok(spec) = &mut self.spec {
            spec.extmem = Some(spec::ExtmemOpt::new(path.as_ref().to_string_lossy()));
        }
        self
    }

    /// Opens the port.
    ///
    /// Errors: [`Error::InvalidPortSpec`] for a malformed name,
    /// [`Error::Unavailable`] when no backend can serve it (with each one's
    /// reason), [`Error::InterfaceNotFound`], [`Error::PermissionDenied`],
    /// [`Error::Busy`], [`Error::ApiVersionMismatch`], [`Error::Io`].
    ///
    /// On the AF_PACKET backend: [`Error::InterfaceNotFound`],
    /// [`Error::InterfaceDown`], and [`Error::PermissionDenied`] naming
    /// `CAP_NET_RAW`.
    pub fn build(self) -> Result<Netmap> {
        let spec = self.spec.map_err(Error::from)?;
        open_spec(spec, self.extras, self.backend, self.how)
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
        let spec = self.spec.map_err(Error::from)?;
        let (nic, host) = {
            let all = open_spec(spec.clone(), self.extras, self.backend, self.how)?;
            let reg = &all.port.reg;
            (
                reg.nr_tx_rings.max(reg.nr_rx_rings),
                reg.nr_host_tx_rings.max(reg.nr_host_rx_rings),
            )
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
                open_spec(s, self.extras, self.backend, self.how)
            })
            .collect()
    }
}

/// A ring count as the register request holds it: at most `u16::MAX`.
fn ring_count(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Opens `spec` on the backend [`select`] picks.
fn open_spec(
    spec: PortSpec,
    extras: RegisterExtras,
    forced: Option<BackendKind>,
    how: How,
) -> Result<Netmap> {
    let opened = select::open(&spec, extras, forced, how)?;
    Netmap::new(opened.port, spec, opened.backend, opened.domain, opened.refused)
}

/// An open netmap port: a file descriptor bound to some of an interface's
/// rings, and the shared memory that holds them.
///
/// Get rings with [`tx_ring`](Netmap::tx_ring) and [`rx_ring`](Netmap::rx_ring);
/// each ring can have one live handle at a time.
///
/// `Netmap` is `Send` but not `Sync`: it owns its descriptor and its
/// mapping, so it may move to another thread, but a sync on the descriptor
/// touches every ring bound to it, so a port and its rings stay on one
/// thread at a time. For one thread per ring, open one port per ring
/// ([`NetmapBuilder::build_per_ring`]).
pub struct Netmap {
    /// Released by `Drop`, unless the process is a fork of the opener.
    port: ManuallyDrop<KernelPort>,
    /// The bound rings, read and checked once at open.
    rings: RingTable,
    /// The receive path's cold state (multi-slot assembly room, corrupt
    /// slots not yet reported), one per RX ring, lent to its handle.
    scratch: Box<[Cell<Scratch>]>,
    spec: PortSpec,
    backend: BackendKind,
    /// Whose memory the region is: who answers [`Netmap::pools_info`].
    domain: MemDomain,
    region: RegionKey,
    /// Why the backends before `backend` were passed over.
    refused: Vec<Refusal>,
    /// The longest packet the TX rings take (see [`Netmap::max_packet`]).
    max_packet: usize,
    /// How an AF_XDP port moves packets.
    xdp_mode: Option<XdpMode>,
    live_tx: Box<[Cell<bool>]>,
    live_rx: Box<[Cell<bool>]>,
    /// The process that opened the port.
    owner: Owner,
    /// Keeps a shared region out of forked children.
    private: Option<Privatize>,
    /// The extra buffers, if the port was granted any.
    extra: Option<Arc<ExtraPool>>,
    /// Not `Sync`: two threads syncing one descriptor would race on its rings.
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: a `Netmap` owns its descriptor and mapping outright; the raw
// pointers in it (the `netmap_if`, the rings of its table) refer into that
// mapping, which moves with it. It is not `Sync` (the `Cell`s), so its rings
// are only ever driven from the one thread that holds it.
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

impl Drop for Netmap {
    fn drop(&mut self) {
        if !self.owner.is_current() {
            // A forked child: the descriptor and the region are the
            // parent's registration. Closing them could wait on locks that
            // the parent's other threads held at the fork; they close when
            // the child exits or execs.
            return;
        }
        if let Some(extra) = &self.extra {
            // SAFETY: the port's `netmap_if`, still mapped.
            unsafe { extra.write_back(self.port.nifp) };
        }
        // Out of the fork list before the region is unmapped.
        self.private.take();
        // SAFETY: dropped once, here; nothing uses `port` afterwards. The
        // ring handles borrow `self`, so none is alive.
        unsafe { ManuallyDrop::drop(&mut self.port) };
    }
}

impl Netmap {
    pub(crate) fn new(
        port: KernelPort,
        spec: PortSpec,
        backend: BackendKind,
        domain: MemDomain,
        refused: Vec<Refusal>,
    ) -> Result<Self> {
        let region = RegionKey::new(domain, port.reg.nr_mem_id);
        // SAFETY: the mapping is the port's and lives as long as the
        // `Netmap`, which owns both it and the table; every ring handle
        // borrows the `Netmap`.
        let rings = unsafe {
            RingTable::read(
                &port.map,
                port.nifp,
                &port.table,
                &port.reg,
                port.tx.clone(),
                port.rx.clone(),
            )?
        };
        let cells = |n: usize| (0..n).map(|_| Cell::new(false)).collect();
        // One region has one buffer size, so every TX ring has the first's.
        let by_buffers = rings
            .tx
            .first()
            .map_or(0, |r| r.slot_cap() * NETMAP_MAX_FRAGS as usize);
        let max_packet = by_buffers.min(port.fd.max_packet().unwrap_or(usize::MAX));
        let xdp_mode = port.fd.xdp_mode();
        let area = rings.tx.first().or(rings.rx.first()).cloned();
        let extra = match (port.reg.nr_extra_bufs, area) {
            (0, _) | (_, None) => None,
            // SAFETY: `nifp` is the port's `netmap_if` in its mapping, and
            // `area` one of the port's rings.
            (n, Some(area)) => Some(Arc::new(unsafe {
                ExtraPool::read(Arc::clone(&port.map), port.nifp, area, region, n)?
            })),
        };
        Ok(Netmap {
            max_packet,
            xdp_mode,
            live_tx: cells(rings.tx.len()),
            live_rx: cells(rings.rx.len()),
            scratch: (0..rings.rx.len()).map(|_| Cell::default()).collect(),
            owner: Owner::current(),
            // The embedded kernel's regions are private mappings already.
            extra,
            private: (domain != MemDomain::Emulated)
                .then(|| Privatize::new(port.map.base().as_ptr(), port.map.len())),
            rings,
            port: ManuallyDrop::new(port),
            spec,
            backend,
            domain,
            region,
            refused,
            _not_sync: PhantomData,
        })
    }

    /// How many extra buffers the port has
    /// ([`NetmapBuilder::extra_buffers`]), kept packets included.
    pub fn extra_buffers(&self) -> usize {
        self.extra.as_ref().map_or(0, |p| p.granted())
    }

    /// How many of its extra buffers are free, not holding a
    /// [`KeptFrame`](crate::KeptFrame).
    pub fn free_extra_buffers(&self) -> usize {
        self.extra.as_ref().map_or(0, |p| p.free())
    }

    /// The extra buffers, if any.
    pub(crate) fn extra_pool(&self) -> Option<&Arc<ExtraPool>> {
        self.extra.as_ref()
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

    /// Why each backend tried before [`backend`](Netmap::backend) was passed
    /// over. For a port that fell back to AF_PACKET this says why netmap
    /// could not serve it (for example that `/dev/netmap` does not exist).
    pub fn refusals(&self) -> &[Refusal] {
        &self.refused
    }

    /// Whether this port runs on a fallback (AF_XDP or AF_PACKET, see
    /// [`Fallback`]) because netmap could not serve its netmap name; `false`
    /// for `afxdp:` and `afpacket:` names and forced backends, which asked
    /// for them.
    pub fn is_fallback(&self) -> bool {
        matches!(self.backend, BackendKind::AfPacket | BackendKind::AfXdp)
            && !self.spec.kind.is_socket()
            && self.refused.iter().any(|r| r.backend == BackendKind::Kernel)
    }

    /// How this AF_XDP port moves packets: [`XdpMode::Native`],
    /// [`XdpMode::Generic`] or [`XdpMode::ZeroCopy`] (never
    /// [`XdpMode::Auto`]); `None` on every other backend.
    pub fn xdp_mode(&self) -> Option<XdpMode> {
        self.xdp_mode
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
        self.region.mem_id()
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

    /// The port's shape and memory, as
    /// [`info::port_info`](crate::info::port_info) would answer for its
    /// name: the kernel's reply to this port's REGISTER, which has the
    /// fields of a PORT_INFO_GET reply. No request is made; it works on
    /// every backend.
    ///
    /// ```
    /// # fn main() -> netmap_rs::Result<()> {
    /// let port = netmap_rs::NetmapBuilder::new("emu:pinfo{1").num_slots(128).build()?;
    /// let info = port.port_info();
    /// assert_eq!((info.tx_slots, info.tx_rings), (128, 1));
    /// assert_eq!(info.mem_id, port.mem_id());
    /// # Ok(())
    /// # }
    /// ```
    pub fn port_info(&self) -> PortInfo {
        crate::info::of_register(&self.port.reg, self.backend)
    }

    /// The layout of this port's memory region: POOLS_INFO_GET of its
    /// name, in its region, on a fresh handle of the kernel that holds
    /// the region (`/dev/netmap` for ports opened through libnetmap too;
    /// the library's descriptor is not used).
    ///
    /// # Errors
    /// [`Error::Unsupported`] on AF_PACKET and on a libnetmap with its own
    /// `ioctl`, whose regions are not netmap's; otherwise those of
    /// [`info::pools_info`](crate::info::pools_info).
    pub fn pools_info(&self) -> Result<PoolsInfo> {
        crate::info::of_open_port(&self.spec, self.domain, self.mem_id(), self.backend)
    }

    /// The longest packet this port sends, in bytes: [`TxRing::send`] and
    /// [`inject`](Netmap::inject) refuse longer ones, as
    /// [`TxBatch::push`](crate::TxBatch::push) does for one slot, with
    /// [`Error::PacketTooLarge`]. Every TX ring of the port has this
    /// [`max_packet`](TxRing::max_packet); 0 for a port without TX rings.
    /// What limits it depends on the backend:
    ///
    /// * **netmap** (`/dev/netmap`, libnetmap, the embedded kernel): the
    ///   buffers. A packet spans at most `NETMAP_MAX_FRAGS` (64) slots
    ///   (`NS_MOREFRAG`), each carrying at most `min(buf_size, 65535)`
    ///   bytes. netmap knows nothing of the interface's MTU: a NIC drops
    ///   frames longer than it takes.
    /// * **AF_PACKET**: one frame, since frames cannot chain, and the
    ///   interface's MTU as of the open, plus an Ethernet header and one
    ///   VLAN tag: the most the kernel hands on to the interface (1518
    ///   bytes for an MTU of 1500). A longer frame would be dropped without
    ///   a word, so it is refused at `send` instead.
    ///
    /// Frames moved by [`TxRing::forward`] and
    /// [`forward_from`](TxRing::forward_from) keep their length unchecked.
    ///
    /// ```
    /// # use netmap_rs::prelude::*;
    /// # fn main() -> Result<(), Error> {
    /// let port = NetmapBuilder::new("emu:maxpkt{1").build()?;
    /// let mut tx = port.tx_ring(0)?;
    /// assert_eq!(port.max_packet(), tx.max_packet());
    /// let too_long = vec![0; port.max_packet() + 1];
    /// assert!(matches!(tx.send(&too_long), Err(Error::PacketTooLarge { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_packet(&self) -> usize {
        self.max_packet
    }

    /// The port's `netmap_if`, for handing to C code that speaks netmap.
    /// Reading or writing through it is `unsafe` and must respect the ring
    /// ownership rules; it is valid while `self` lives.
    pub fn raw_if(&self) -> std::ptr::NonNull<ffi::netmap_if> {
        self.port.nifp
    }

    /// The port's mapped memory region (the `mem` and `nr_memsize` that C
    /// code given [`raw_if`](Netmap::raw_if) may also need): the
    /// `netmap_if`, the rings and the buffers lie inside it. The same rules
    /// as for `raw_if` apply; it is valid while `self` lives.
    pub fn raw_region(&self) -> std::ptr::NonNull<[u8]> {
        std::ptr::NonNull::slice_from_raw_parts(self.port.map.base(), self.port.map.len())
    }

    /// Copies one packet into the first TX ring with room, as libnetmap's
    /// `nmport_inject` does (on ports opened through libnetmap it *is*
    /// `nmport_inject`): a convenience for occasional packets, such as a
    /// control frame on a port whose rings are driven elsewhere. It does not
    /// sync; the packet leaves at the port's next TX sync (or poll).
    ///
    /// Rings with a live [`TxRing`] handle are skipped; on a libnetmap port,
    /// where the library picks the ring, no TX ring handle may be alive.
    ///
    /// Errors: [`Error::RingFull`] when no ring has room (sync and retry),
    /// [`Error::RingInUse`] when a handle is in the way,
    /// [`Error::PacketTooLarge`], [`Error::RingIndexOutOfRange`] for a port
    /// without TX rings.
    ///
    /// ```
    /// # use netmap_rs::prelude::*;
    /// # fn main() -> Result<(), Error> {
    /// let a = NetmapBuilder::new("emu:inject{1").build()?;
    /// let b = NetmapBuilder::new("emu:inject}1").build()?;
    /// a.inject(b"hello")?;
    /// a.txsync()?;
    /// let mut rx = b.rx_ring(0)?;
    /// rx.sync()?;
    /// assert_eq!(rx.recv().map(|f| f.payload().to_vec()), Some(b"hello".to_vec()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn inject(&self, packet: &[u8]) -> Result<()> {
        self.check_owner()?;
        let full = Error::RingFull {
            ring: self.port.tx.start,
        };
        if self.live_tx.is_empty() {
            return Err(Error::RingIndexOutOfRange {
                index: 0,
                count: 0,
                dir: "TX",
            });
        }
        if packet.len() > self.max_packet {
            return Err(Error::PacketTooLarge {
                len: packet.len(),
                max: self.max_packet,
            });
        }
        if self.backend == BackendKind::Libnetmap {
            if let Some(index) = self.live_tx.iter().position(Cell::get) {
                return Err(Error::RingInUse { index, dir: "TX" });
            }
        }
        match self.port.fd.inject(packet) {
            Some(true) => return Ok(()),
            Some(false) => return Err(full),
            None => {}
        }
        let mut in_use = None;
        for index in 0..self.live_tx.len() {
            let mut ring = match self.tx_ring(index) {
                Err(e @ Error::RingInUse { .. }) => {
                    in_use = Some(e);
                    continue;
                }
                other => other?,
            };
            match ring.send(packet) {
                Err(Error::RingFull { .. }) => continue,
                other => return other,
            }
        }
        match in_use {
            Some(e) if self.live_tx.iter().all(Cell::get) => Err(e),
            _ => Err(full),
        }
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
        self.check_owner()?;
        let (live, rings, name) = match dir {
            SyncDir::Tx => (&self.live_tx, &self.rings.tx, "TX"),
            SyncDir::Rx => (&self.live_rx, &self.rings.rx, "RX"),
        };
        let (Some(cell), Some(ring)) = (live.get(index), rings.get(index)) else {
            return Err(Error::RingIndexOutOfRange {
                index,
                count: live.len(),
                dir: name,
            });
        };
        if cell.get() {
            return Err(Error::RingInUse { index, dir: name });
        }
        let core = ring.attach()?;
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

    /// Lends RX ring `index`'s assembly room to its (one) live handle.
    pub(crate) fn take_scratch(&self, index: usize) -> Scratch {
        self.scratch.get(index).map(Cell::take).unwrap_or_default()
    }

    /// Takes back what [`take_scratch`](Netmap::take_scratch) lent.
    pub(crate) fn put_scratch(&self, index: usize, scratch: Scratch) {
        if let Some(c) = self.scratch.get(index) {
            c.set(scratch);
        }
    }

    /// [`Error::Forked`] in a process forked from the one that opened the port.
    #[inline]
    fn check_owner(&self) -> Result<()> {
        if self.owner.is_current() {
            Ok(())
        } else {
            Err(self.forked())
        }
    }

    #[cold]
    fn forked(&self) -> Error {
        Error::Forked {
            name: self.spec.text.clone(),
        }
    }

    pub(crate) fn sync(&self, dir: SyncDir) -> Result<()> {
        self.check_owner()?;
        self.port.fd.sync(dir).map_err(|e| {
            let op = match dir {
                SyncDir::Tx => "NIOCTXSYNC",
                SyncDir::Rx => "NIOCRXSYNC",
            };
            Error::io(format!("{op} on {}", Name(&self.spec.text)), e)
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
        self.check_owner()?;
        let revents = self
            .port
            .fd
            .poll(events, Deadline::after(timeout))
            .map_err(|e| Error::io(format!("poll on {}", Name(&self.spec.text)), e))?;
        if revents & libc::POLLERR != 0 {
            return Err(Error::io(
                format!("poll on {}", Name(&self.spec.text)),
                io::Error::other("the port reported an error (POLLERR)"),
            ));
        }
        Ok(revents & events != 0)
    }
}

/// The port's descriptor, for event loops and `poll(2)`: it is readable
/// when an RX ring has packets and writable when a TX ring has room. Which
/// descriptor it is depends on the backend:
///
/// | backend | descriptor |
/// |---|---|
/// | `/dev/netmap` | the `/dev/netmap` descriptor the rings are registered on |
/// | libnetmap | the descriptor of the library's `nmport_d` (the same kind) |
/// | embedded (`emu:`) | an eventfd that the embedded kernel signals as the real one would |
/// | AF_PACKET | the socket of a one-ring-pair port; for several ring pairs an epoll set of the sockets (then readable on any ring's progress: see the backend's notes) |
///
/// It stays owned by the port: do not close it, read or write it, or
/// change its flags. Polling it is the caller's business and comes with
/// netmap's rules: on the netmap kernel a poll syncs the port's rings in
/// the polling thread, so only the thread that drives the rings may poll
/// it (see [`LocalPort`](crate::LocalPort), which makes the compiler hold a
/// mio user to that); on the embedded kernel and AF_PACKET a wake-up syncs
/// nothing, so sync the rings after it. [`Netmap::poll`] and
/// [`Netmap::poll_writable`] wait without these concerns.
impl AsFd for Netmap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.port.fd.as_fd()
    }
}

/// The descriptor of [`AsFd`](#impl-AsFd-for-Netmap), as a number.
impl AsRawFd for Netmap {
    fn as_raw_fd(&self) -> RawFd {
        self.port.fd.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloned_builder_opens_the_same_port() {
        let template = NetmapBuilder::new("emu:clone{1").num_tx_rings(2).num_slots(128);
        let first = template.clone().build().unwrap();
        drop(first);
        let again = template.build().unwrap();
        assert_eq!((again.num_tx_rings(), again.num_slots()), (2, (128, 128)));
    }

    #[test]
    fn a_cloned_builder_keeps_the_name_error() {
        let bad = NetmapBuilder::new("netmap:eth0-x").num_slots(64);
        for b in [bad.clone(), bad] {
            match b.build() {
                Err(Error::InvalidPortSpec { spec, position, .. }) => {
                    assert_eq!((spec.as_str(), position), ("netmap:eth0-x", 12));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn max_packet_is_the_buffers_on_netmap_ports() {
        let port = NetmapBuilder::new("emu:maxp{1").build().unwrap();
        let tx = port.tx_ring(0).unwrap();
        assert_eq!(port.max_packet(), tx.buf_size() * NETMAP_MAX_FRAGS as usize);
        assert_eq!(tx.max_packet(), port.max_packet());
        let rx_only = NetmapBuilder::new("emu:maxp{2/R").build().unwrap();
        assert_eq!(rx_only.max_packet(), 0, "no TX rings");
        assert!(matches!(
            rx_only.inject(b"x"),
            Err(Error::RingIndexOutOfRange { .. })
        ));
        assert!(matches!(
            port.inject(&vec![0; port.max_packet() + 1]),
            Err(Error::PacketTooLarge { .. })
        ));
    }

    #[test]
    fn none_leaves_a_setting_as_it_was() {
        let slots: Option<u32> = None;
        let port = NetmapBuilder::new("emu:noneset{1@conf:rings=3")
            .num_slots(256)
            .num_slots(slots)
            .num_tx_rings(None)
            .num_rx_rings(None)
            .backend(None)
            .build()
            .unwrap();
        assert_eq!(port.num_slots(), (256, 256));
        assert_eq!(
            (port.num_tx_rings(), port.num_rx_rings()),
            (3, 3),
            "the name's counts"
        );
        assert_eq!(port.backend(), BackendKind::Emulated);
    }
}
