//! Hand-written declarations of the netmap C ABI.
//!
//! This crate describes, in Rust, the data that user space and the netmap
//! kernel module exchange: the shared-memory structures (`netmap_if`,
//! `netmap_ring`, `netmap_slot`), the control requests passed to `NIOCCTRL`
//! (`nmreq_header` and its bodies and options), the legacy `nmreq`, the ioctl
//! numbers, the index helpers of `netmap_user.h`, and the types of
//! libnetmap's entry points (`nmport_*`, `nmctx_*`) for callers that load
//! `libnetmap.so` at run time.
//!
//! Nothing here links to netmap and nothing here does I/O. Names follow the C
//! headers exactly so that netmap's own documentation applies; the layouts are
//! checked at compile time against the values the C headers give on LP64
//! targets (x86_64, aarch64, ...).
//!
//! Memory shared with the kernel is written by the kernel while user space
//! reads it, so the helpers below take raw pointers and read fields through
//! them; they never form `&netmap_ring` or `&netmap_if` references.
#![no_std]
#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

use core::ffi::{c_char, c_int, c_void};
use core::marker::{PhantomData, PhantomPinned};
use core::ptr::addr_of;

// ---------------------------------------------------------------------------
// Versions and sizes
// ---------------------------------------------------------------------------

/// The netmap API version these declarations describe (goes in `nr_version`).
pub const NETMAP_API: u16 = 14;
/// The oldest API version a netmap kernel of this generation accepts.
pub const NETMAP_MIN_API: u16 = 14;
/// The newest API version a netmap kernel of this generation accepts.
pub const NETMAP_MAX_API: u16 = 15;
/// Alignment, in bytes, of the cache-line-separated parts of shared structures.
pub const NM_CACHE_ALIGN: usize = 128;
/// Length of an interface name buffer, terminating NUL included.
pub const IFNAMSIZ: usize = 16;
/// Length of `nmreq_header::nr_name`, terminating NUL included.
pub const NETMAP_REQ_IFNAMSIZ: usize = 64;
/// Upper bound on the size of a request body or option accepted by the kernel.
pub const NETMAP_REQ_MAXSIZE: usize = 4096;
/// Path of the netmap control device.
pub const NETMAP_DEVICE_NAME: &str = "/dev/netmap";
/// Name prefix of VALE switch ports.
pub const NM_BDG_NAME: &str = "vale";

// ---------------------------------------------------------------------------
// Slots
// ---------------------------------------------------------------------------

/// One slot of a ring: which buffer it holds and how many bytes of it are used.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct netmap_slot {
    /// Index of the buffer in the memory region's buffer pool.
    pub buf_idx: u32,
    /// Number of valid bytes in the buffer.
    pub len: u16,
    /// `NS_*` flags.
    pub flags: u16,
    /// Address of a user buffer (`NS_INDIRECT`), or offset bits when offsets are enabled.
    pub ptr: u64,
}

/// Slot flag: user space replaced `buf_idx`; the kernel must reload the buffer address.
pub const NS_BUF_CHANGED: u16 = 0x0001;
/// Slot flag: ask for a completion report on this slot.
pub const NS_REPORT: u16 = 0x0002;
/// Slot flag: pass the packet on to the other side (host stack or NIC) on RX.
pub const NS_FORWARD: u16 = 0x0004;
/// Slot flag: a VALE switch should not learn the source address of this packet.
pub const NS_NO_LEARN: u16 = 0x0008;
/// Slot flag: the data lives at the user address in `ptr`, not in the slot's buffer.
pub const NS_INDIRECT: u16 = 0x0010;
/// Slot flag: the packet continues in the next slot.
pub const NS_MOREFRAG: u16 = 0x0020;
/// Slot flag: set by TX monitors on packets copied from a TX ring.
pub const NS_TXMON: u16 = 0x0040;
/// Shift of the VALE port/fragment field within slot flags.
pub const NS_PORT_SHIFT: u16 = 8;
/// Mask of the VALE port/fragment field within slot flags.
pub const NS_PORT_MASK: u16 = 0xff << NS_PORT_SHIFT;
/// The largest number of slots one packet may span.
pub const NETMAP_MAX_FRAGS: u32 = 64;

// ---------------------------------------------------------------------------
// Rings
// ---------------------------------------------------------------------------

/// `struct timeval` with the LP64 layout (both fields 64 bits wide).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct timeval {
    /// Seconds.
    pub tv_sec: i64,
    /// Microseconds.
    pub tv_usec: i64,
}

/// The 128-byte scratch area of a ring, aligned to [`NM_CACHE_ALIGN`].
///
/// The alignment makes `netmap_ring::slot` start at byte 256, as in C.
#[repr(C, align(128))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct netmap_ring_sem(pub [u8; 128]);

impl Default for netmap_ring_sem {
    fn default() -> Self {
        netmap_ring_sem([0; 128])
    }
}

/// The header of a ring in shared memory; `num_slots` slots follow it.
///
/// Slots in `[head, tail)` belong to user space, the others to the kernel.
/// The kernel writes `tail` (and `ts`) during syncs and reads `head`/`cur`;
/// access it through raw pointers only.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct netmap_ring {
    /// Offset of buffer 0 from the start of this ring, in bytes.
    pub buf_ofs: i64,
    /// Number of slots in the ring.
    pub num_slots: u32,
    /// Size of each buffer in bytes.
    pub nr_buf_size: u32,
    /// Index of this ring among the port's rings of its direction.
    pub ringid: u16,
    /// Direction: 0 for TX, 1 for RX.
    pub dir: u16,
    /// First slot owned by user space (written by user space).
    pub head: u32,
    /// Wake-up point for `poll` (written by user space).
    pub cur: u32,
    /// First slot owned by the kernel (written by the kernel).
    pub tail: u32,
    /// `NR_*` ring flags.
    pub flags: u32,
    /// Time of the last sync, when `NR_TIMESTAMP` is set.
    pub ts: timeval,
    /// Mask selecting the offset bits in `netmap_slot::ptr`.
    pub offset_mask: u64,
    /// Alignment the kernel requires for buffer offsets.
    pub buf_align: u64,
    /// Scratch area used by some kernel configurations.
    pub sem: netmap_ring_sem,
    /// The slots (a flexible array: `num_slots` entries in memory).
    pub slot: [netmap_slot; 0],
}

/// Ring flag: update `ts` on every sync.
pub const NR_TIMESTAMP: u32 = 0x0002;
/// Ring flag: honour `NS_FORWARD` on this ring's slots.
pub const NR_FORWARD: u32 = 0x0004;

// ---------------------------------------------------------------------------
// Interface
// ---------------------------------------------------------------------------

/// The per-open descriptor in shared memory: ring counts and ring offsets.
///
/// `ring_ofs` holds one signed offset (relative to this struct) per ring: the
/// TX rings, then the host TX rings, then the RX rings, then the host RX rings.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct netmap_if {
    /// Name of the interface, NUL-terminated.
    pub ni_name: [c_char; IFNAMSIZ],
    /// API version (not used by current kernels).
    pub ni_version: u32,
    /// `NI_*` flags.
    pub ni_flags: u32,
    /// Number of hardware TX rings.
    pub ni_tx_rings: u32,
    /// Number of hardware RX rings.
    pub ni_rx_rings: u32,
    /// Head of the list of extra buffers handed to this open.
    pub ni_bufs_head: u32,
    /// Number of host (software) TX rings.
    pub ni_host_tx_rings: u32,
    /// Number of host (software) RX rings.
    pub ni_host_rx_rings: u32,
    /// Reserved.
    pub ni_spare1: [u32; 3],
    /// Ring offsets (a flexible array).
    pub ring_ofs: [isize; 0],
}

/// `netmap_if` flag: the port uses a private memory region.
pub const NI_PRIV_MEM: u32 = 0x1;

// ---------------------------------------------------------------------------
// Control requests (NIOCCTRL)
// ---------------------------------------------------------------------------

/// Implements `Default` as all-zero bytes for plain request structs.
macro_rules! zeroed_default {
    ($($t:ty),* $(,)?) => {$(
        impl Default for $t {
            fn default() -> Self {
                // SAFETY: every field of this `repr(C)` struct is an integer,
                // an array of integers, a raw pointer, a nested struct of the
                // same kinds, or an `Option` of a function pointer; the
                // all-zero bit pattern is a valid value for each (0, null,
                // `None`).
                unsafe { core::mem::zeroed() }
            }
        }
    )*};
}

/// Common header of a request option; options form a list through `nro_next`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq_option {
    /// Address of the next option, or 0.
    pub nro_next: u64,
    /// Which option this is (`NETMAP_REQ_OPT_*`).
    pub nro_reqtype: u32,
    /// Set by the kernel: 0 if the option was accepted, else an errno value.
    pub nro_status: u32,
    /// Size of the whole option, header included.
    pub nro_size: u64,
}

/// Header of every `NIOCCTRL` request.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct nmreq_header {
    /// API version of the caller ([`NETMAP_API`]).
    pub nr_version: u16,
    /// Request type (`NETMAP_REQ_*`).
    pub nr_reqtype: u16,
    /// Must be zero.
    pub nr_reserved: u32,
    /// Port name, NUL-terminated.
    pub nr_name: [c_char; NETMAP_REQ_IFNAMSIZ],
    /// Address of the first option, or 0.
    pub nr_options: u64,
    /// Address of the request body.
    pub nr_body: u64,
}

/// `nr_reqtype`: bind the fd to a port and its rings (`nmreq_register`).
pub const NETMAP_REQ_REGISTER: u16 = 1;
/// `nr_reqtype`: query a port's geometry (`nmreq_port_info_get`).
pub const NETMAP_REQ_PORT_INFO_GET: u16 = 2;
/// `nr_reqtype`: attach a port to a VALE switch.
pub const NETMAP_REQ_VALE_ATTACH: u16 = 3;
/// `nr_reqtype`: detach a port from a VALE switch.
pub const NETMAP_REQ_VALE_DETACH: u16 = 4;
/// `nr_reqtype`: enumerate VALE switch ports.
pub const NETMAP_REQ_VALE_LIST: u16 = 5;
/// `nr_reqtype`: set the virtio-net header length of a port.
pub const NETMAP_REQ_PORT_HDR_SET: u16 = 6;
/// `nr_reqtype`: get the virtio-net header length of a port.
pub const NETMAP_REQ_PORT_HDR_GET: u16 = 7;
/// `nr_reqtype`: create a persistent VALE interface.
pub const NETMAP_REQ_VALE_NEWIF: u16 = 8;
/// `nr_reqtype`: delete a persistent VALE interface.
pub const NETMAP_REQ_VALE_DELIF: u16 = 9;
/// `nr_reqtype`: start kernel polling threads for a VALE port.
pub const NETMAP_REQ_VALE_POLLING_ENABLE: u16 = 10;
/// `nr_reqtype`: stop kernel polling threads for a VALE port.
pub const NETMAP_REQ_VALE_POLLING_DISABLE: u16 = 11;
/// `nr_reqtype`: describe a memory region's pools (`nmreq_pools_info`).
pub const NETMAP_REQ_POOLS_INFO_GET: u16 = 12;
/// `nr_reqtype`: run the sync kernel loop on this fd.
pub const NETMAP_REQ_SYNC_KLOOP_START: u16 = 13;
/// `nr_reqtype`: stop the sync kernel loop.
pub const NETMAP_REQ_SYNC_KLOOP_STOP: u16 = 14;
/// `nr_reqtype`: enable CSB mode on an fd.
pub const NETMAP_REQ_CSB_ENABLE: u16 = 15;

/// Option: back the port with user-provided memory (`nmreq_opt_extmem`).
pub const NETMAP_REQ_OPT_EXTMEM: u32 = 1;
/// Option: eventfds for the sync kernel loop.
pub const NETMAP_REQ_OPT_SYNC_KLOOP_EVENTFDS: u32 = 2;
/// Option: shared control blocks (`nmreq_opt_csb`).
pub const NETMAP_REQ_OPT_CSB: u32 = 3;
/// Option: mode of the sync kernel loop (`nmreq_opt_sync_kloop_mode`).
pub const NETMAP_REQ_OPT_SYNC_KLOOP_MODE: u32 = 4;
/// Option: per-slot buffer offsets (`nmreq_opt_offsets`).
pub const NETMAP_REQ_OPT_OFFSETS: u32 = 5;
/// One past the last option type.
pub const NETMAP_REQ_OPT_MAX: u32 = 6;

/// Body of `NETMAP_REQ_REGISTER`: what to bind, and (on return) the geometry.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq_register {
    /// Out: offset of the `netmap_if` in the memory region.
    pub nr_offset: u64,
    /// Out: size of the memory region.
    pub nr_memsize: u64,
    /// In/out: slots per TX ring.
    pub nr_tx_slots: u32,
    /// In/out: slots per RX ring.
    pub nr_rx_slots: u32,
    /// In/out: number of hardware TX rings.
    pub nr_tx_rings: u16,
    /// In/out: number of hardware RX rings.
    pub nr_rx_rings: u16,
    /// In/out: number of host TX rings.
    pub nr_host_tx_rings: u16,
    /// In/out: number of host RX rings.
    pub nr_host_rx_rings: u16,
    /// In/out: memory region id (0 for the port's default).
    pub nr_mem_id: u16,
    /// In: ring index, for the `NR_REG_ONE_*` modes.
    pub nr_ringid: u16,
    /// In: which rings to bind (`NR_REG_*`).
    pub nr_mode: u32,
    /// In/out: number of extra buffers wanted / granted.
    pub nr_extra_bufs: u32,
    /// In: `NR_*` binding flags.
    pub nr_flags: u64,
}

/// `nr_flags`: monitor the TX rings of the port.
pub const NR_MONITOR_TX: u64 = 0x100;
/// `nr_flags`: monitor the RX rings of the port.
pub const NR_MONITOR_RX: u64 = 0x200;
/// `nr_flags`: zero-copy monitor.
pub const NR_ZCOPY_MON: u64 = 0x400;
/// `nr_flags`: take the rings exclusively.
pub const NR_EXCLUSIVE: u64 = 0x800;
/// `nr_flags`: bind only the RX rings.
pub const NR_RX_RINGS_ONLY: u64 = 0x2000;
/// `nr_flags`: bind only the TX rings.
pub const NR_TX_RINGS_ONLY: u64 = 0x4000;
/// `nr_flags`: the application handles virtio-net headers.
pub const NR_ACCEPT_VNET_HDR: u64 = 0x8000;
/// `nr_flags`: `poll` also syncs the RX rings.
pub const NR_DO_RX_POLL: u64 = 0x10000;
/// `nr_flags`: `poll` does not sync the TX rings.
pub const NR_NO_TX_POLL: u64 = 0x20000;

/// `nr_mode`: compatibility value; do not use.
pub const NR_REG_DEFAULT: u32 = 0;
/// `nr_mode`: every hardware ring.
pub const NR_REG_ALL_NIC: u32 = 1;
/// `nr_mode`: the host rings only.
pub const NR_REG_SW: u32 = 2;
/// `nr_mode`: hardware and host rings.
pub const NR_REG_NIC_SW: u32 = 3;
/// `nr_mode`: one hardware ring pair (`nr_ringid`).
pub const NR_REG_ONE_NIC: u32 = 4;
/// `nr_mode`: master end of a pipe (superseded by `{` in the port name).
pub const NR_REG_PIPE_MASTER: u32 = 5;
/// `nr_mode`: slave end of a pipe (superseded by `}` in the port name).
pub const NR_REG_PIPE_SLAVE: u32 = 6;
/// `nr_mode`: no rings, only the memory region.
pub const NR_REG_NULL: u32 = 7;
/// `nr_mode`: one host ring pair (`nr_ringid`).
pub const NR_REG_ONE_SW: u32 = 8;

/// Body of `NETMAP_REQ_PORT_INFO_GET`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq_port_info_get {
    /// Out: size of the memory region.
    pub nr_memsize: u64,
    /// Out: slots per TX ring.
    pub nr_tx_slots: u32,
    /// Out: slots per RX ring.
    pub nr_rx_slots: u32,
    /// Out: number of hardware TX rings.
    pub nr_tx_rings: u16,
    /// Out: number of hardware RX rings.
    pub nr_rx_rings: u16,
    /// Out: number of host TX rings.
    pub nr_host_tx_rings: u16,
    /// Out: number of host RX rings.
    pub nr_host_rx_rings: u16,
    /// In/out: memory region id.
    pub nr_mem_id: u16,
    /// Padding.
    pub pad: [u16; 3],
}

/// Body of `NETMAP_REQ_VALE_ATTACH`: attach the port named in the header
/// (`valeX:NIC`) to switch `valeX`. The kernel may put the NIC in netmap
/// mode, so the request carries a register body: `reg.nr_mode` is
/// [`NR_REG_NIC_SW`] to attach the host stack too, [`NR_REG_ALL_NIC`]
/// otherwise; its ring and slot counts and memory id are asked for as at
/// register.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq_vale_attach {
    /// In: how to register the NIC (`nr_mode`, counts, `nr_mem_id`).
    pub reg: nmreq_register,
    /// Out: the switch port index the NIC was attached at.
    pub port_index: u32,
    /// Padding.
    pub pad1: u32,
}

/// Body of `NETMAP_REQ_VALE_DETACH`: detach the port named in the header
/// (`valeX:NIC`) from its switch.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq_vale_detach {
    /// Out: the switch port index the NIC was attached at.
    pub port_index: u32,
    /// Padding.
    pub pad1: u32,
}

/// Body of `NETMAP_REQ_VALE_LIST`. With a name in the header (`valeX:PORT`),
/// the kernel returns the indices of that switch and port (`nr_port_idx`
/// [`NM_BDG_NOPORT`] when the switch has no such port). With an empty name,
/// it returns the first port at or after (`nr_bridge_idx`, `nr_port_idx`)
/// and writes its name into the header, or fails with `ENOENT` past the
/// last one.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq_vale_list {
    /// In/out: switch index.
    pub nr_bridge_idx: u16,
    /// Padding.
    pub pad1: u16,
    /// In/out: port index within the switch.
    pub nr_port_idx: u32,
}

/// `nr_port_idx` of a [`nmreq_vale_list`] reply: the switch exists, the
/// port is not on it (`NM_BDG_MAXPORTS + 1`, in `netmap_bdg.h`).
pub const NM_BDG_NOPORT: u32 = 255;

/// Body of `NETMAP_REQ_VALE_NEWIF`: create the persistent VALE port named in
/// the header (no `vale` prefix). 0 asks for the default; on return, what
/// the port got.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq_vale_newif {
    /// In/out: slots per TX ring.
    pub nr_tx_slots: u32,
    /// In/out: slots per RX ring.
    pub nr_rx_slots: u32,
    /// In/out: number of TX rings.
    pub nr_tx_rings: u16,
    /// In/out: number of RX rings.
    pub nr_rx_rings: u16,
    /// In/out: memory region id.
    pub nr_mem_id: u16,
    /// Padding.
    pub pad1: u16,
}

/// Body of `NETMAP_REQ_PORT_HDR_SET` and `_GET`: the length of the
/// virtio-net header that starts every packet of a VALE port (0, 10 or 12).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq_port_hdr {
    /// The header's length in bytes.
    pub nr_hdr_len: u32,
    /// Padding.
    pub pad1: u32,
}

/// Body of `NETMAP_REQ_VALE_POLLING_ENABLE` and `_DISABLE`: kernel threads
/// that poll the rings of a NIC attached to a switch.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq_vale_polling {
    /// [`NETMAP_POLLING_MODE_SINGLE_CPU`] or [`NETMAP_POLLING_MODE_MULTI_CPU`].
    pub nr_mode: u32,
    /// The first CPU (single mode: the one CPU; multi mode: also the first ring).
    pub nr_first_cpu_id: u32,
    /// How many CPUs: 1 in single mode; in multi mode one per ring.
    pub nr_num_polling_cpus: u32,
    /// Padding.
    pub pad1: u32,
}

/// `nmreq_vale_polling.nr_mode`: one thread, on one CPU, polls every ring.
pub const NETMAP_POLLING_MODE_SINGLE_CPU: u32 = 1;
/// `nmreq_vale_polling.nr_mode`: one thread per ring, on consecutive CPUs.
pub const NETMAP_POLLING_MODE_MULTI_CPU: u32 = 2;

/// Body of `NETMAP_REQ_POOLS_INFO_GET`, also embedded in `nmreq_opt_extmem`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq_pools_info {
    /// Size of the memory region.
    pub nr_memsize: u64,
    /// Memory region id.
    pub nr_mem_id: u16,
    /// Padding.
    pub pad1: [u16; 3],
    /// Offset of the `netmap_if` pool.
    pub nr_if_pool_offset: u64,
    /// Number of objects in the `netmap_if` pool.
    pub nr_if_pool_objtotal: u32,
    /// Size of each object in the `netmap_if` pool.
    pub nr_if_pool_objsize: u32,
    /// Offset of the ring pool.
    pub nr_ring_pool_offset: u64,
    /// Number of objects in the ring pool.
    pub nr_ring_pool_objtotal: u32,
    /// Size of each object in the ring pool.
    pub nr_ring_pool_objsize: u32,
    /// Offset of the buffer pool.
    pub nr_buf_pool_offset: u64,
    /// Number of buffers in the buffer pool.
    pub nr_buf_pool_objtotal: u32,
    /// Size of each buffer.
    pub nr_buf_pool_objsize: u32,
}

/// Control block written by the application and read by the kernel (CSB mode).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nm_csb_atok {
    /// The application's `head`.
    pub head: u32,
    /// The application's `cur`.
    pub cur: u32,
    /// Non-zero when the application wants to be notified.
    pub appl_need_kick: u32,
    /// Flags of the application's sync.
    pub sync_flags: u32,
    /// Padding to 64 bytes.
    pub pad: [u32; 12],
}

/// Control block written by the kernel and read by the application (CSB mode).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nm_csb_ktoa {
    /// The kernel ring's current position.
    pub hwcur: u32,
    /// The kernel ring's tail.
    pub hwtail: u32,
    /// Non-zero when the kernel wants to be notified.
    pub kern_need_kick: u32,
    /// Padding to 64 bytes.
    pub pad: [u32; 13],
}

/// Option `NETMAP_REQ_OPT_SYNC_KLOOP_MODE`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq_opt_sync_kloop_mode {
    /// Option header.
    pub nro_opt: nmreq_option,
    /// Mode bits.
    pub mode: u32,
}

/// Option `NETMAP_REQ_OPT_EXTMEM`: use memory supplied by the application.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq_opt_extmem {
    /// Option header.
    pub nro_opt: nmreq_option,
    /// In: address of the application's memory.
    pub nro_usrptr: u64,
    /// In/out: layout of the pools in that memory.
    pub nro_info: nmreq_pools_info,
}

/// Option `NETMAP_REQ_OPT_CSB`: addresses of the control block arrays.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq_opt_csb {
    /// Option header.
    pub nro_opt: nmreq_option,
    /// Address of the `nm_csb_atok` array.
    pub csb_atok: u64,
    /// Address of the `nm_csb_ktoa` array.
    pub csb_ktoa: u64,
}

/// Option `NETMAP_REQ_OPT_OFFSETS`: enable per-slot buffer offsets.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq_opt_offsets {
    /// Option header.
    pub nro_opt: nmreq_option,
    /// Largest offset that will be used.
    pub nro_max_offset: u64,
    /// Offset stored in every slot at registration.
    pub nro_initial_offset: u64,
    /// Number of low bits of `netmap_slot::ptr` holding the offset.
    pub nro_offset_bits: u32,
    /// Out: alignment the offsets of TX slots must respect.
    pub nro_tx_align: u32,
    /// Minimum space to leave after the packet in each buffer.
    pub nro_min_gap: u64,
}

zeroed_default!(nmreq_header);

// ---------------------------------------------------------------------------
// Legacy request (NIOCREGIF, NIOCGINFO)
// ---------------------------------------------------------------------------

/// The request of the legacy `NIOCREGIF`/`NIOCGINFO` ioctls.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nmreq {
    /// Port name, NUL-terminated.
    pub nr_name: [c_char; IFNAMSIZ],
    /// API version of the caller.
    pub nr_version: u32,
    /// Out: offset of the `netmap_if` in the memory region.
    pub nr_offset: u32,
    /// Out: size of the memory region.
    pub nr_memsize: u32,
    /// In/out: slots per TX ring.
    pub nr_tx_slots: u32,
    /// In/out: slots per RX ring.
    pub nr_rx_slots: u32,
    /// In/out: number of TX rings.
    pub nr_tx_rings: u16,
    /// In/out: number of RX rings.
    pub nr_rx_rings: u16,
    /// In: ring selection (`NETMAP_*_RING`, ring number, poll flags).
    pub nr_ringid: u16,
    /// In: sub-command.
    pub nr_cmd: u16,
    /// In/out: command argument.
    pub nr_arg1: u16,
    /// In/out: memory region id.
    pub nr_arg2: u16,
    /// In/out: extra buffers.
    pub nr_arg3: u32,
    /// In: `NR_REG_*` mode in the low bits, plus flags.
    pub nr_flags: u32,
    /// Reserved.
    pub spare2: [u32; 1],
}

/// Legacy `nr_ringid`: bind one hardware ring pair.
pub const NETMAP_HW_RING: u16 = 0x4000;
/// Legacy `nr_ringid`: bind the host ring pair only.
pub const NETMAP_SW_RING: u16 = 0x2000;
/// Legacy `nr_ringid`: mask of the ring number.
pub const NETMAP_RING_MASK: u16 = 0x0fff;
/// Legacy `nr_ringid`: `poll` does not sync TX rings.
pub const NETMAP_NO_TX_POLL: u16 = 0x1000;
/// Legacy `nr_ringid`: `poll` also syncs RX rings.
pub const NETMAP_DO_RX_POLL: u16 = 0x8000;
/// Legacy `nr_flags`: mask of the `NR_REG_*` mode.
pub const NR_REG_MASK: u32 = 0xf;

// ---------------------------------------------------------------------------
// ioctl numbers
// ---------------------------------------------------------------------------

/// ioctl encoding of Linux (the asm-generic layout used by x86, arm, arm64,
/// riscv, s390, loongarch, ...).
///
/// Linux on powerpc, mips, sparc and alpha uses a different layout, which this
/// module does not describe.
pub mod linux {
    const IOC_NRSHIFT: u64 = 0;
    const IOC_TYPESHIFT: u64 = 8;
    const IOC_SIZESHIFT: u64 = 16;
    const IOC_DIRSHIFT: u64 = 30;
    const IOC_SIZEMASK: u64 = (1 << 14) - 1;
    const IOC_NONE: u64 = 0;
    const IOC_WRITE: u64 = 1;
    const IOC_READ: u64 = 2;

    const fn ioc(dir: u64, ty: u8, nr: u8, size: usize) -> u64 {
        (dir << IOC_DIRSHIFT)
            | ((size as u64 & IOC_SIZEMASK) << IOC_SIZESHIFT)
            | ((ty as u64) << IOC_TYPESHIFT)
            | ((nr as u64) << IOC_NRSHIFT)
    }

    /// An ioctl number with no argument.
    pub const fn _IO(ty: u8, nr: u8) -> u64 {
        ioc(IOC_NONE, ty, nr, 0)
    }

    /// An ioctl number whose argument of `size` bytes is read and written.
    pub const fn _IOWR(ty: u8, nr: u8, size: usize) -> u64 {
        ioc(IOC_READ | IOC_WRITE, ty, nr, size)
    }

    /// `NIOCCTRL`: a control request (`nmreq_header`).
    pub const NIOCCTRL: u64 = _IOWR(b'i', 151, core::mem::size_of::<super::nmreq_header>());
    /// `NIOCTXSYNC`: sync the TX rings bound to the fd.
    pub const NIOCTXSYNC: u64 = _IO(b'i', 148);
    /// `NIOCRXSYNC`: sync the RX rings bound to the fd.
    pub const NIOCRXSYNC: u64 = _IO(b'i', 149);
    /// `NIOCREGIF`: legacy registration (`nmreq`).
    pub const NIOCREGIF: u64 = _IOWR(b'i', 146, core::mem::size_of::<super::nmreq>());
    /// `NIOCGINFO`: legacy port query (`nmreq`).
    pub const NIOCGINFO: u64 = _IOWR(b'i', 145, core::mem::size_of::<super::nmreq>());
}

/// ioctl encoding of FreeBSD.
pub mod freebsd {
    const IOCPARM_MASK: u64 = 0x1fff;
    const IOC_VOID: u64 = 0x2000_0000;
    const IOC_OUT: u64 = 0x4000_0000;
    const IOC_IN: u64 = 0x8000_0000;
    const IOC_INOUT: u64 = IOC_IN | IOC_OUT;

    const fn ioc(inout: u64, group: u8, num: u8, len: usize) -> u64 {
        inout | ((len as u64 & IOCPARM_MASK) << 16) | ((group as u64) << 8) | (num as u64)
    }

    /// An ioctl number with no argument.
    pub const fn _IO(ty: u8, nr: u8) -> u64 {
        ioc(IOC_VOID, ty, nr, 0)
    }

    /// An ioctl number whose argument of `size` bytes is read and written.
    pub const fn _IOWR(ty: u8, nr: u8, size: usize) -> u64 {
        ioc(IOC_INOUT, ty, nr, size)
    }

    /// `NIOCCTRL`: a control request (`nmreq_header`).
    pub const NIOCCTRL: u64 = _IOWR(b'i', 151, core::mem::size_of::<super::nmreq_header>());
    /// `NIOCTXSYNC`: sync the TX rings bound to the fd.
    pub const NIOCTXSYNC: u64 = _IO(b'i', 148);
    /// `NIOCRXSYNC`: sync the RX rings bound to the fd.
    pub const NIOCRXSYNC: u64 = _IO(b'i', 149);
    /// `NIOCREGIF`: legacy registration (`nmreq`).
    pub const NIOCREGIF: u64 = _IOWR(b'i', 146, core::mem::size_of::<super::nmreq>());
    /// `NIOCGINFO`: legacy port query (`nmreq`).
    pub const NIOCGINFO: u64 = _IOWR(b'i', 145, core::mem::size_of::<super::nmreq>());
}

#[cfg(target_os = "freebsd")]
use freebsd as host_ioctl;
/// On targets other than FreeBSD the Linux encoding is used (netmap itself
/// runs on Linux and FreeBSD only).
#[cfg(not(target_os = "freebsd"))]
use linux as host_ioctl;

/// `NIOCCTRL` for the target OS: a control request (`nmreq_header`).
///
/// FreeBSD uses [`freebsd::NIOCCTRL`]; every other target uses
/// [`linux::NIOCCTRL`].
pub const NIOCCTRL: u64 = host_ioctl::NIOCCTRL;
/// `NIOCTXSYNC` for the target OS: sync the TX rings bound to the fd.
pub const NIOCTXSYNC: u64 = host_ioctl::NIOCTXSYNC;
/// `NIOCRXSYNC` for the target OS: sync the RX rings bound to the fd.
pub const NIOCRXSYNC: u64 = host_ioctl::NIOCRXSYNC;
/// `NIOCREGIF` for the target OS: legacy registration (`nmreq`).
pub const NIOCREGIF: u64 = host_ioctl::NIOCREGIF;
/// `NIOCGINFO` for the target OS: legacy port query (`nmreq`).
pub const NIOCGINFO: u64 = host_ioctl::NIOCGINFO;

// ---------------------------------------------------------------------------
// netmap_user.h helpers
// ---------------------------------------------------------------------------

/// The slot after `i` in a ring of `num_slots` slots, wrapping to 0.
///
/// `num_slots` need not be a power of two. For `i < num_slots` this is
/// `i + 1`, or 0 after the last slot; out-of-range inputs also yield 0.
#[inline]
pub const fn nm_next(i: u32, num_slots: u32) -> u32 {
    let next = i.wrapping_add(1);
    if next >= num_slots {
        0
    } else {
        next
    }
}

/// Number of slots from `head` up to (not including) `tail` in a ring of
/// `num_slots` slots: the slots user space owns.
#[inline]
pub const fn nm_space(head: u32, tail: u32, num_slots: u32) -> u32 {
    if tail >= head {
        tail - head
    } else {
        tail.wrapping_add(num_slots).wrapping_sub(head)
    }
}

/// The `netmap_if` at byte offset `ofs` of a mapped region.
///
/// # Safety
/// `base` must point to a mapped region at least `ofs` bytes long (the
/// address computation must stay within it).
#[inline]
pub unsafe fn NETMAP_IF(base: *mut u8, ofs: usize) -> *mut netmap_if {
    // SAFETY: the caller guarantees `base + ofs` lies in the same mapping.
    unsafe { base.add(ofs).cast() }
}

/// Reads `ring_ofs[index]` of `nifp` and returns the ring it designates.
///
/// # Safety
/// `nifp` must point to a live `netmap_if` whose `ring_ofs` array has more
/// than `index` entries.
#[inline]
unsafe fn ring_at(nifp: *mut netmap_if, index: usize) -> *mut netmap_ring {
    // SAFETY: the caller guarantees that `nifp` is live and that entry `index`
    // of the flexible array exists; the projection keeps `nifp`'s provenance
    // and `ring_ofs` is 8-aligned (asserted below).
    let ofs = unsafe { addr_of!((*nifp).ring_ofs).cast::<isize>().add(index).read() };
    nifp.cast::<u8>().wrapping_offset(ofs).cast()
}

/// The `index`-th TX ring of `nifp` (host TX rings follow the hardware ones).
///
/// # Safety
/// `nifp` must point to a live `netmap_if` and `index` must be below
/// `ni_tx_rings + ni_host_tx_rings`.
#[inline]
pub unsafe fn NETMAP_TXRING(nifp: *mut netmap_if, index: usize) -> *mut netmap_ring {
    // SAFETY: forwarded from the caller: TX ring offsets come first in `ring_ofs`.
    unsafe { ring_at(nifp, index) }
}

/// The `index`-th RX ring of `nifp` (host RX rings follow the hardware ones).
///
/// # Safety
/// `nifp` must point to a live `netmap_if` and `index` must be below
/// `ni_rx_rings + ni_host_rx_rings`.
#[inline]
pub unsafe fn NETMAP_RXRING(nifp: *mut netmap_if, index: usize) -> *mut netmap_ring {
    // SAFETY: `nifp` is live (caller); the counts are plain reads of it.
    let (tx, host_tx) = unsafe {
        (
            addr_of!((*nifp).ni_tx_rings).read(),
            addr_of!((*nifp).ni_host_tx_rings).read(),
        )
    };
    // SAFETY: RX ring offsets follow the TX and host TX ones in `ring_ofs`,
    // and the caller keeps `index` within the RX rings.
    unsafe { ring_at(nifp, index + tx as usize + host_tx as usize) }
}

/// Address of buffer `index` of the region `ring` belongs to.
///
/// The address is computed with wrapping arithmetic; whether it may be
/// dereferenced depends on `index` being a valid buffer of the region.
///
/// # Safety
/// `ring` must point to a live `netmap_ring`.
#[inline]
pub unsafe fn NETMAP_BUF(ring: *mut netmap_ring, index: u32) -> *mut u8 {
    // SAFETY: `ring` is live (caller); these fields are constant after setup.
    let (buf_ofs, buf_size) = unsafe {
        (
            addr_of!((*ring).buf_ofs).read(),
            addr_of!((*ring).nr_buf_size).read(),
        )
    };
    ring.cast::<u8>()
        .wrapping_offset(buf_ofs as isize)
        .wrapping_add(index as usize * buf_size as usize)
}

/// Index of the buffer that starts at (or contains) `buf`, in the region of `ring`.
///
/// # Safety
/// `ring` must point to a live `netmap_ring` whose `nr_buf_size` is not zero.
#[inline]
pub unsafe fn NETMAP_BUF_IDX(ring: *const netmap_ring, buf: *const u8) -> u32 {
    // SAFETY: `ring` is live (caller); these fields are constant after setup.
    let (buf_ofs, buf_size) = unsafe {
        (
            addr_of!((*ring).buf_ofs).read(),
            addr_of!((*ring).nr_buf_size).read(),
        )
    };
    let base = (ring as usize).wrapping_add_signed(buf_ofs as isize);
    ((buf as usize).wrapping_sub(base) / buf_size as usize) as u32
}

/// The slot after `i` in `ring`, wrapping at `num_slots`.
///
/// # Safety
/// `ring` must point to a live `netmap_ring`.
#[inline]
pub unsafe fn nm_ring_next(ring: *const netmap_ring, i: u32) -> u32 {
    // SAFETY: `ring` is live (caller); `num_slots` is constant after setup.
    let n = unsafe { addr_of!((*ring).num_slots).read() };
    nm_next(i, n)
}

/// Number of slots user space owns in `ring` (from `head` to `tail`).
///
/// # Safety
/// `ring` must point to a live `netmap_ring`.
#[inline]
pub unsafe fn nm_ring_space(ring: *const netmap_ring) -> u32 {
    // SAFETY: `ring` is live (caller). `tail` may be written by the kernel,
    // so the index fields are read volatile, never through a reference.
    let (head, tail, n) = unsafe {
        (
            addr_of!((*ring).head).read_volatile(),
            addr_of!((*ring).tail).read_volatile(),
            addr_of!((*ring).num_slots).read(),
        )
    };
    nm_space(head, tail, n)
}

/// Whether user space owns no slot of `ring` (`head == tail`).
///
/// # Safety
/// `ring` must point to a live `netmap_ring`.
#[inline]
pub unsafe fn nm_ring_empty(ring: *const netmap_ring) -> bool {
    // SAFETY: `ring` is live (caller); volatile reads as in `nm_ring_space`.
    unsafe { addr_of!((*ring).head).read_volatile() == addr_of!((*ring).tail).read_volatile() }
}

// ---------------------------------------------------------------------------
// libnetmap
// ---------------------------------------------------------------------------

/// Cleanup record of libnetmap (opaque).
#[repr(C)]
pub struct nmport_cleanup_d {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

impl core::fmt::Debug for nmport_cleanup_d {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("nmport_cleanup_d")
    }
}

/// libnetmap's descriptor of an open port.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct nmport_d {
    /// The request header used for registration.
    pub hdr: nmreq_header,
    /// The registration body (geometry after registration).
    pub reg: nmreq_register,
    /// The memory region descriptor.
    pub mem: *mut nmem_d,
    /// The context used for errors and allocation.
    pub ctx: *mut nmctx,
    /// Non-zero once the port is registered.
    pub register_done: c_int,
    /// Non-zero once the region is mapped.
    pub mmap_done: c_int,
    /// The extmem option, if one was given.
    pub extmem: *mut nmreq_opt_extmem,
    /// The control fd, or -1.
    pub fd: c_int,
    /// The port's `netmap_if` in the mapped region.
    pub nifp: *mut netmap_if,
    /// First TX ring bound.
    pub first_tx_ring: u16,
    /// Last TX ring bound.
    pub last_tx_ring: u16,
    /// First RX ring bound.
    pub first_rx_ring: u16,
    /// Last RX ring bound.
    pub last_rx_ring: u16,
    /// TX ring `nmport_inject` tries first.
    pub cur_tx_ring: u16,
    /// RX ring a receive helper would try first.
    pub cur_rx_ring: u16,
    /// Cleanup actions to run on close.
    pub clist: *mut nmport_cleanup_d,
}

/// Error reporting callback of an [`nmctx`] (may be null).
pub type nmctx_error_cb = Option<unsafe extern "C" fn(ctx: *mut nmctx, msg: *const c_char)>;
/// Allocation callback of an [`nmctx`] (may be null).
pub type nmctx_malloc_cb = Option<unsafe extern "C" fn(ctx: *mut nmctx, size: usize) -> *mut c_void>;
/// Deallocation callback of an [`nmctx`] (may be null).
pub type nmctx_free_cb = Option<unsafe extern "C" fn(ctx: *mut nmctx, ptr: *mut c_void)>;
/// Lock (`lock != 0`) / unlock callback of an [`nmctx`] (may be null).
pub type nmctx_lock_cb = Option<unsafe extern "C" fn(ctx: *mut nmctx, lock: c_int)>;

/// libnetmap's context: verbosity, callbacks and the list of mapped regions.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct nmctx {
    /// Verbosity level.
    pub verbose: c_int,
    /// Called with each error message.
    pub error: nmctx_error_cb,
    /// Allocates memory.
    pub malloc: nmctx_malloc_cb,
    /// Frees memory.
    pub free: nmctx_free_cb,
    /// Serialises access to the context.
    pub lock: nmctx_lock_cb,
    /// Head of the list of memory region descriptors.
    pub mem_descs: *mut nmem_d,
}

/// libnetmap's descriptor of a mapped memory region.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct nmem_d {
    /// netmap's id of the region.
    pub mem_id: u16,
    /// Number of ports using this descriptor.
    pub refcount: c_int,
    /// Base address of the mapping.
    pub mem: *mut c_void,
    /// Size of the mapping.
    pub size: usize,
    /// Non-zero if the memory came from an extmem option.
    pub is_extmem: c_int,
    /// Next descriptor in the context's list.
    pub next: *mut nmem_d,
    /// Previous descriptor in the context's list.
    pub prev: *mut nmem_d,
}

zeroed_default!(nmport_d, nmctx, nmem_d);

/// `nmport_open`: parse, register and map a port in one call; null on error.
pub type nmport_open_t = unsafe extern "C" fn(portspec: *const c_char) -> *mut nmport_d;
/// `nmport_close`: undo everything `nmport_open` did and free the descriptor.
pub type nmport_close_t = unsafe extern "C" fn(d: *mut nmport_d);
/// `nmport_inject`: copy one packet into the next TX slot with room.
pub type nmport_inject_t = unsafe extern "C" fn(d: *mut nmport_d, buf: *const c_void, size: usize) -> c_int;
/// `nmport_new`: allocate an empty descriptor.
pub type nmport_new_t = unsafe extern "C" fn() -> *mut nmport_d;
/// `nmport_parse`: fill a descriptor from a port name.
pub type nmport_parse_t = unsafe extern "C" fn(d: *mut nmport_d, portspec: *const c_char) -> c_int;
/// `nmport_register`: open the control device and bind the port.
pub type nmport_register_t = unsafe extern "C" fn(d: *mut nmport_d) -> c_int;
/// `nmport_mmap`: map the port's memory region.
pub type nmport_mmap_t = unsafe extern "C" fn(d: *mut nmport_d) -> c_int;
/// `nmport_delete`: free a descriptor.
pub type nmport_delete_t = unsafe extern "C" fn(d: *mut nmport_d);
/// `nmport_undo_parse`: revert `nmport_parse`.
pub type nmport_undo_parse_t = unsafe extern "C" fn(d: *mut nmport_d);
/// `nmport_undo_register`: revert `nmport_register`.
pub type nmport_undo_register_t = unsafe extern "C" fn(d: *mut nmport_d);
/// `nmport_undo_mmap`: revert `nmport_mmap`.
pub type nmport_undo_mmap_t = unsafe extern "C" fn(d: *mut nmport_d);
/// `nmport_prepare`: allocate and parse a descriptor; null on error.
pub type nmport_prepare_t = unsafe extern "C" fn(portspec: *const c_char) -> *mut nmport_d;
/// `nmport_open_desc`: register and map a prepared descriptor.
pub type nmport_open_desc_t = unsafe extern "C" fn(d: *mut nmport_d) -> c_int;
/// `nmport_undo_prepare`: revert `nmport_prepare`.
pub type nmport_undo_prepare_t = unsafe extern "C" fn(d: *mut nmport_d);
/// `nmport_undo_open_desc`: revert `nmport_open_desc`.
pub type nmport_undo_open_desc_t = unsafe extern "C" fn(d: *mut nmport_d);
/// `nmport_clone`: a new descriptor sharing the parsed state of `d`.
pub type nmport_clone_t = unsafe extern "C" fn(d: *mut nmport_d) -> *mut nmport_d;
/// `nmport_extmem`: use `size` bytes at `base` as the port's memory.
pub type nmport_extmem_t = unsafe extern "C" fn(d: *mut nmport_d, base: *mut c_void, size: usize) -> c_int;
/// `nmport_extmem_from_file`: use a mapped file as the port's memory.
pub type nmport_extmem_from_file_t = unsafe extern "C" fn(d: *mut nmport_d, fname: *const c_char) -> c_int;
/// `nmport_extmem_getinfo`: the pools layout of the extmem option, or null.
pub type nmport_extmem_getinfo_t = unsafe extern "C" fn(d: *mut nmport_d) -> *mut nmreq_pools_info;
/// `nmport_offset`: request per-slot buffer offsets.
pub type nmport_offset_t =
    unsafe extern "C" fn(d: *mut nmport_d, initial: u64, maxoff: u64, bits: u64, mingap: u64) -> c_int;
/// `nmport_disable_option`: stop accepting the named port-name option.
pub type nmport_disable_option_t = unsafe extern "C" fn(opt: *const c_char);
/// `nmport_enable_option`: accept the named port-name option again.
pub type nmport_enable_option_t = unsafe extern "C" fn(opt: *const c_char) -> c_int;
/// `nmctx_get`: the current default context.
pub type nmctx_get_t = unsafe extern "C" fn() -> *mut nmctx;
/// `nmctx_set_default`: install a default context, returning the previous one.
pub type nmctx_set_default_t = unsafe extern "C" fn(ctx: *mut nmctx) -> *mut nmctx;
/// `nmctx_set_threadsafe`: make the default context use a lock.
pub type nmctx_set_threadsafe_t = unsafe extern "C" fn();

// ---------------------------------------------------------------------------
// Layout checks (LP64 values of the C headers)
// ---------------------------------------------------------------------------

/// Asserts, at compile time, a struct's size and each listed field's offset.
#[cfg(target_pointer_width = "64")]
macro_rules! assert_layout {
    ($t:ty, size $size:expr; $($field:ident @ $ofs:expr),* $(,)?) => {
        const _: () = assert!(core::mem::size_of::<$t>() == $size);
        $(const _: () = assert!(core::mem::offset_of!($t, $field) == $ofs);)*
    };
}

#[cfg(target_pointer_width = "64")]
mod layout {
    use super::*;

    assert_layout!(netmap_slot, size 16;
        buf_idx @ 0, len @ 4, flags @ 6, ptr @ 8);
    assert_layout!(timeval, size 16; tv_sec @ 0, tv_usec @ 8);
    assert_layout!(netmap_ring, size 256;
        buf_ofs @ 0, num_slots @ 8, nr_buf_size @ 12, ringid @ 16, dir @ 18,
        head @ 20, cur @ 24, tail @ 28, flags @ 32, ts @ 40, offset_mask @ 56,
        buf_align @ 64, sem @ 128, slot @ 256);
    const _: () = assert!(core::mem::align_of::<netmap_ring>() == NM_CACHE_ALIGN);
    assert_layout!(netmap_if, size 56;
        ni_name @ 0, ni_version @ 16, ni_flags @ 20, ni_tx_rings @ 24,
        ni_rx_rings @ 28, ni_bufs_head @ 32, ni_host_tx_rings @ 36,
        ni_host_rx_rings @ 40, ni_spare1 @ 44, ring_ofs @ 56);
    const _: () = assert!(core::mem::align_of::<netmap_if>() == 8);
    assert_layout!(nmreq_option, size 24;
        nro_next @ 0, nro_reqtype @ 8, nro_status @ 12, nro_size @ 16);
    assert_layout!(nmreq_header, size 88;
        nr_version @ 0, nr_reqtype @ 2, nr_reserved @ 4, nr_name @ 8,
        nr_options @ 72, nr_body @ 80);
    assert_layout!(nmreq_register, size 56;
        nr_offset @ 0, nr_memsize @ 8, nr_tx_slots @ 16, nr_rx_slots @ 20,
        nr_tx_rings @ 24, nr_rx_rings @ 26, nr_host_tx_rings @ 28,
        nr_host_rx_rings @ 30, nr_mem_id @ 32, nr_ringid @ 34, nr_mode @ 36,
        nr_extra_bufs @ 40, nr_flags @ 48);
    assert_layout!(nmreq_port_info_get, size 32;
        nr_memsize @ 0, nr_tx_slots @ 8, nr_rx_slots @ 12, nr_tx_rings @ 16,
        nr_rx_rings @ 18, nr_host_tx_rings @ 20, nr_host_rx_rings @ 22,
        nr_mem_id @ 24, pad @ 26);
    assert_layout!(nmreq_vale_attach, size 64; reg @ 0, port_index @ 56, pad1 @ 60);
    assert_layout!(nmreq_vale_detach, size 8; port_index @ 0, pad1 @ 4);
    assert_layout!(nmreq_vale_list, size 8; nr_bridge_idx @ 0, pad1 @ 2, nr_port_idx @ 4);
    assert_layout!(nmreq_vale_newif, size 16;
        nr_tx_slots @ 0, nr_rx_slots @ 4, nr_tx_rings @ 8, nr_rx_rings @ 10,
        nr_mem_id @ 12, pad1 @ 14);
    assert_layout!(nmreq_port_hdr, size 8; nr_hdr_len @ 0, pad1 @ 4);
    assert_layout!(nmreq_vale_polling, size 16;
        nr_mode @ 0, nr_first_cpu_id @ 4, nr_num_polling_cpus @ 8, pad1 @ 12);
    assert_layout!(nmreq_pools_info, size 64;
        nr_memsize @ 0, nr_mem_id @ 8, pad1 @ 10, nr_if_pool_offset @ 16,
        nr_if_pool_objtotal @ 24, nr_if_pool_objsize @ 28,
        nr_ring_pool_offset @ 32, nr_ring_pool_objtotal @ 40,
        nr_ring_pool_objsize @ 44, nr_buf_pool_offset @ 48,
        nr_buf_pool_objtotal @ 56, nr_buf_pool_objsize @ 60);
    assert_layout!(nm_csb_atok, size 64;
        head @ 0, cur @ 4, appl_need_kick @ 8, sync_flags @ 12, pad @ 16);
    assert_layout!(nm_csb_ktoa, size 64;
        hwcur @ 0, hwtail @ 4, kern_need_kick @ 8, pad @ 12);
    assert_layout!(nmreq_opt_sync_kloop_mode, size 32; nro_opt @ 0, mode @ 24);
    assert_layout!(nmreq_opt_extmem, size 96;
        nro_opt @ 0, nro_usrptr @ 24, nro_info @ 32);
    assert_layout!(nmreq_opt_csb, size 40;
        nro_opt @ 0, csb_atok @ 24, csb_ktoa @ 32);
    assert_layout!(nmreq_opt_offsets, size 56;
        nro_opt @ 0, nro_max_offset @ 24, nro_initial_offset @ 32,
        nro_offset_bits @ 40, nro_tx_align @ 44, nro_min_gap @ 48);
    assert_layout!(nmreq, size 60;
        nr_name @ 0, nr_version @ 16, nr_offset @ 20, nr_memsize @ 24,
        nr_tx_slots @ 28, nr_rx_slots @ 32, nr_tx_rings @ 36, nr_rx_rings @ 38,
        nr_ringid @ 40, nr_cmd @ 42, nr_arg1 @ 44, nr_arg2 @ 46, nr_arg3 @ 48,
        nr_flags @ 52, spare2 @ 56);
    assert_layout!(nmport_d, size 216;
        hdr @ 0, reg @ 88, mem @ 144, ctx @ 152, register_done @ 160,
        mmap_done @ 164, extmem @ 168, fd @ 176, nifp @ 184,
        first_tx_ring @ 192, last_tx_ring @ 194, first_rx_ring @ 196,
        last_rx_ring @ 198, cur_tx_ring @ 200, cur_rx_ring @ 202, clist @ 208);
    assert_layout!(nmctx, size 48;
        verbose @ 0, error @ 8, malloc @ 16, free @ 24, lock @ 32,
        mem_descs @ 40);
    assert_layout!(nmem_d, size 48;
        mem_id @ 0, refcount @ 4, mem @ 8, size @ 16, is_extmem @ 24,
        next @ 32, prev @ 40);
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    #[test]
    fn linux_encoding() {
        // dir(2 bits) | size(14) | type(8) | nr(8): 'i' = 0x69.
        assert_eq!(linux::NIOCCTRL, 0xc058_6997); // RW, 88 bytes, 151
        assert_eq!(linux::NIOCTXSYNC, 0x6994);
        assert_eq!(linux::NIOCRXSYNC, 0x6995);
        assert_eq!(linux::NIOCREGIF, 0xc03c_6992); // RW, 60 bytes, 146
        assert_eq!(linux::NIOCGINFO, 0xc03c_6991);
        // An _IO number is just type and nr (TCGETS is 0x5401 on x86).
        assert_eq!(linux::_IO(b'T', 0x01), 0x5401);
        // The size field is 14 bits wide.
        assert_eq!(linux::_IOWR(b'X', 1, 0x3fff) >> 16, 0xffff);
    }

    #[test]
    fn freebsd_encoding() {
        assert_eq!(freebsd::NIOCCTRL, 0xc058_6997);
        assert_eq!(freebsd::NIOCTXSYNC, 0x2000_6994);
        assert_eq!(freebsd::NIOCRXSYNC, 0x2000_6995);
        assert_eq!(freebsd::NIOCREGIF, 0xc03c_6992);
        assert_eq!(freebsd::NIOCGINFO, 0xc03c_6991);
        // FIONBIO on FreeBSD is _IOW('f', 126, int) = 0x8004667e; its
        // _IOWR twin only adds IOC_OUT.
        assert_eq!(freebsd::_IOWR(b'f', 126, 4), 0xc004_667e);
        // Sizes are truncated to 13 bits.
        assert_eq!(freebsd::_IOWR(b'i', 1, 0x2000) & 0x1fff_0000, 0);
    }

    #[test]
    fn host_selection() {
        #[cfg(target_os = "freebsd")]
        assert_eq!(NIOCTXSYNC, freebsd::NIOCTXSYNC);
        #[cfg(not(target_os = "freebsd"))]
        assert_eq!(NIOCTXSYNC, linux::NIOCTXSYNC);
        assert_eq!(NIOCCTRL, 0xc058_6997);
    }

    #[test]
    fn next_and_space_wrap_without_masking() {
        // A ring of 5 slots (not a power of two).
        let seq: Vec<u32> = (0..7)
            .scan(3u32, |i, _| {
                let cur = *i;
                *i = nm_next(cur, 5);
                Some(cur)
            })
            .collect();
        assert_eq!(seq, [3, 4, 0, 1, 2, 3, 4]);
        assert_eq!(nm_next(u32::MAX, 5), 0);
        assert_eq!(nm_next(9, 5), 0);
        assert_eq!(nm_space(1, 4, 5), 3);
        assert_eq!(nm_space(4, 1, 5), 2);
        assert_eq!(nm_space(2, 2, 5), 0);
        assert_eq!(nm_space(0, 4, 5), 4);
        assert_eq!(nm_space(4, 3, 5), 4);
    }

    /// A region laid out as the kernel would: `netmap_if`, ring offsets, one
    /// TX ring, one RX ring, then buffers.
    #[repr(C, align(128))]
    struct Region([u8; 4096]);

    #[test]
    fn helpers_on_a_heap_layout() {
        const IF_OFS: usize = 64;
        const TX_OFS: usize = 256; // relative to the region
        const RX_OFS: usize = 1024;
        const BUFS: usize = 2048;
        const NSLOTS: u32 = 3;
        const BUF_SIZE: u32 = 256;

        let mut region = std::boxed::Box::new(Region([0; 4096]));
        let base = region.0.as_mut_ptr();
        // SAFETY: every write below stays inside the 4096-byte region and is
        // suitably aligned (the region is 128-aligned, the offsets multiples
        // of 128, and the fields at their natural alignment).
        unsafe {
            let nifp = NETMAP_IF(base, IF_OFS);
            (*nifp).ni_tx_rings = 1;
            (*nifp).ni_rx_rings = 1;
            (*nifp).ni_host_tx_rings = 0;
            (*nifp).ni_host_rx_rings = 0;
            let ofs = core::ptr::addr_of_mut!((*nifp).ring_ofs).cast::<isize>();
            ofs.write((TX_OFS - IF_OFS) as isize);
            ofs.add(1).write((RX_OFS - IF_OFS) as isize);
            for (r, at) in [(0u16, TX_OFS), (1, RX_OFS)] {
                let ring = base.add(at).cast::<netmap_ring>();
                ring.write(netmap_ring {
                    buf_ofs: (BUFS - at) as i64,
                    num_slots: NSLOTS,
                    nr_buf_size: BUF_SIZE,
                    dir: r,
                    head: 2,
                    cur: 2,
                    tail: 1,
                    ..Default::default()
                });
            }

            let tx = NETMAP_TXRING(nifp, 0);
            let rx = NETMAP_RXRING(nifp, 0);
            assert_eq!(tx as usize - base as usize, TX_OFS);
            assert_eq!(rx as usize - base as usize, RX_OFS);
            assert_eq!(core::ptr::addr_of!((*rx).dir).read(), 1);

            let b1 = NETMAP_BUF(tx, 1);
            assert_eq!(b1 as usize - base as usize, BUFS + BUF_SIZE as usize);
            assert_eq!(NETMAP_BUF_IDX(rx, b1), 1);
            assert_eq!(NETMAP_BUF_IDX(rx, b1.add(10)), 1);

            assert_eq!(nm_ring_next(tx, 2), 0);
            assert_eq!(nm_ring_next(tx, 0), 1);
            assert_eq!(nm_ring_space(tx), 2);
            assert!(!nm_ring_empty(tx));
            core::ptr::addr_of_mut!((*tx).tail).write(2);
            assert!(nm_ring_empty(tx));
            assert_eq!(nm_ring_space(tx), 0);
        }
    }

    #[test]
    fn defaults_are_zero() {
        let h = nmreq_header::default();
        assert_eq!(h.nr_version, 0);
        assert!(h.nr_name.iter().all(|&c| c == 0));
        let d = nmport_d::default();
        assert!(d.nifp.is_null() && d.clist.is_null());
        let c = nmctx::default();
        assert!(c.error.is_none());
        assert_eq!(nmreq::default().nr_flags, 0);
    }
}
