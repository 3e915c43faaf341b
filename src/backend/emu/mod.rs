//! The embedded kernel: netmap pipes and VALE switches in user space, on the
//! real shared-memory layout, across processes.
//!
//! [`Emu`] answers the same requests as `/dev/netmap` would (the typed ones
//! of [`Control`]: REGISTER, PORT_INFO_GET and POOLS_INFO_GET). `NAME{ID` is
//! the master end of pipe `ID` of parent `NAME`, `NAME}ID` its slave end;
//! either end makes the pair, as in the module. A bare `NAME` is a loopback
//! port, whose TX ring `i` feeds its own RX ring `i` (a stand-in for an
//! interface looped back by cable; the embedded kernel has no real
//! interfaces). `valeX:PORT` is port `PORT` of the VALE learning switch
//! `valeX` ([`switch`]). A handle ([`EmuFd`]) registers one end (all of its
//! rings, one ring, or one direction), and the user then drives the rings in
//! the returned region exactly as a C netmap program would: move
//! `head`/`cur`, sync, read `tail`.
//!
//! # Processes
//! Every parent `NAME` (a switch `valeX`) has one region, a file that every
//! process opening a port of it maps ([`shm`]: where it lives, who may open
//! it, attaching and leaving, the process-shared lock). The kernel's state
//! lives in the file too ([`region`]: the tables of handles, pipes and
//! krings, read and checked under the lock by whichever process syncs; a
//! sync that would change nothing only reads them, [`Pipe::idle`](pipe::Pipe::idle)), so
//! `emu:x{1` in one process and `emu:x}1` in another are one pipe. Each
//! process keeps only its own view of what it opened ([`registry`]), with
//! every pipe's geometry checked once against the region.
//!
//! # Memory
//! A region is shared by all of the parent's pipes (and its loopback port,
//! monitors and switch ports), so a buffer index means the same buffer in
//! every port of one parent (buffers can be swapped between them, as with
//! the kernel, where pipes use their parent's allocator). Its netmap part is
//! reserved generously, sparse in the file, its pages reserved as they are
//! handed out, and laid out like the kernel's three pools:
//!
//! ```text
//! 0                   len/1024                    len/16                   len
//! | netmap_if pool    | ring pool                 | buffer pool              |
//! | one per handle    | 256-byte header + slots,  | 2048-byte buffers,       |
//! |                   | 4 rings per ring pair     | indices 0, 1 reserved    |
//! ```
//!
//! A ring's `buf_ofs` is the distance from the ring to buffer 0, so
//! `NETMAP_BUF(ring, idx)` works; a `netmap_if`'s `ring_ofs[i]` is the distance
//! from the `netmap_if` to ring `i`, or 0 for a ring the handle did not bind.
//! A pool's free space is what no live record uses, found by first fit, so
//! ports can be opened and closed forever.
//!
//! # Rings
//! Pipe rings come in pairs: master TX ring `i` feeds slave RX ring `i`, and
//! slave TX ring `i` feeds master RX ring `i` (a loopback port's TX ring `i`
//! feeds its RX ring `i`). The two rings of a pair hold the
//! same buffers at the same slot positions. A TX sync copies the slots the user
//! released (`[hwcur, head)`) into the peer ring at the same positions and
//! publishes them to the peer up to the end of the last complete packet (a
//! `NS_MOREFRAG` chain is published whole); an RX sync copies the slots the
//! user released back into the TX ring, which becomes free room for the sender
//! at its next sync. Before either, the kernel's prologue check runs: `head`
//! and `cur` must lie in `[hwcur, hwtail]` (wrapping at `num_slots`), else the
//! user's view is reset to the kernel's and the sync fails with `EINVAL`.
//! After either, `tail` is set to `hwtail`.
//!
//! The kernel-private state of each ring (`hwcur`, `hwtail`, `pipe_tail`,
//! `rcur`) lives in the region's kring table ([`pipe::Kring`]), changed only
//! under the region's lock, and checked when read: a value out of range
//! resets the ring and fails the sync. The user-written `head` and `cur`
//! are loaded with `Acquire`, `tail` is stored with `Release`, and every
//! other access to the shared region goes through raw pointers and atomics,
//! never a Rust reference over a whole ring or slot.
//!
//! # Readiness
//! Each registered handle's fd is a FIFO that any process of the region can
//! signal, so event loops see real readiness across processes. See
//! [`notify`] for how netmap's poll semantics map onto it; `poll` sleeps on
//! a futex of the region that every sync making a ring ready wakes.
//!
//! # Binding
//! REGISTER binds rings as the module's `netmap_krings_get` does: every ring
//! the request selects (with `NR_TX_RINGS_ONLY` or `NR_RX_RINGS_ONLY` the
//! other direction selects none) must be free of an exclusive binder, and,
//! for a request with `NR_EXCLUSIVE`, of any binder; else nothing is bound
//! and the answer is `EBUSY`. Otherwise the handle's record (in any
//! process) binds each ring, exclusively for an exclusive request, until the
//! handle closes or its process dies. A ring bound by several handles sends
//! its readiness edges to each. A handle registers once: a second REGISTER
//! on it is `EBUSY`, as for the module.
//!
//! # Unbinding
//! Closing a handle unbinds its rings but leaves the pipe's state as it is (as
//! the kernel does when one end of a pipe stays open). A later open that binds
//! those rings again resumes from the kernel's view: TX slots the old user
//! filled but never synced are dropped, RX slots it never released are
//! delivered again. When both ends are closed the pipe and its memory go.
//! The handles of a process that died are closed the same way by the next
//! process that registers a port of the region.
//!
//! # Files
//! [`shm`] holds the region's file and lock, [`region`] the tables and
//! pools, [`registry`] this process's regions and the port names of
//! requests, [`pipe`] the rings and their syncs, [`switch`] the VALE switch,
//! [`control`] its control requests, [`notify`] the FIFOs, and [`fd`] the
//! handle that ties them together.

use std::fmt;
use std::io;
use std::sync::{Arc, LazyLock, Mutex};

use crate::backend::{lock, Control, Kernel, MemDomain};

use fd::EmuFd;
use registry::Registry;

pub(crate) mod control;
mod fd;
mod notify;
mod pipe;
mod region;
mod registry;
mod shm;
mod switch;
#[cfg(test)]
mod tests;

/// Puts this process's `emu:` ports in a namespace of their own: ports of
/// the same name in other namespaces (and in none) are other ports. Call
/// it before opening any `emu:` port; it returns `false`, and changes
/// nothing, if a namespace was set already. `ns` must be letters, digits,
/// `_` or `-` (else `false`).
///
/// Without a namespace, every process of the user shares the `emu:` names,
/// as processes share netmap's names on a host with the module: `emu:x{1`
/// in one process and `emu:x}1` in another are the two ends of one pipe.
/// A namespace suits a program, a library or a test that wants its
/// embedded ports apart from everyone else's.
///
/// ```
/// assert!(netmap_rs::set_emu_namespace("doc_example"));
/// assert!(!netmap_rs::set_emu_namespace("another"));
/// ```
pub fn set_emu_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && shm::set_namespace(ns)
}

/// The directory that holds the embedded kernel's regions, one file
/// `netmap-rs-emu.NAME` per parent `NAME` (and its ports' FIFOs beside it):
/// `$NETMAP_RS_EMU_DIR` if set, else `/dev/shm`, else `/tmp` where no
/// `/dev/shm` is mounted. Every process that shares `emu:` ports must see
/// the same directory.
///
/// ```
/// let dir = netmap_rs::emu_dir();
/// assert!(dir.is_absolute() || std::env::var_os("NETMAP_RS_EMU_DIR").is_some());
/// ```
pub fn emu_dir() -> std::path::PathBuf {
    shm::dir()
}

/// Size of every buffer (`nr_buf_size`).
const BUF_SIZE: usize = 2048;
/// Most ring pairs per direction a pipe may have.
const MAX_RINGS: u32 = 64;
/// Slots per ring when the request says 0.
const DEFAULT_SLOTS: u32 = 1024;
/// Fewest slots per ring: one slot always stays with the kernel.
const MIN_SLOTS: u32 = 2;
/// Most slots per ring.
const MAX_SLOTS: u32 = 16384;

/// The embedded kernel: a registry of pipes and of their parents' regions.
pub(crate) struct Emu {
    registry: Arc<Mutex<Registry>>,
}

impl fmt::Debug for Emu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emu")
            .field("regions", &lock(&self.registry).count())
            .finish()
    }
}

/// The embedded kernel of this process.
pub(crate) fn emu() -> &'static Emu {
    static EMU: LazyLock<Emu> = LazyLock::new(|| Emu {
        registry: Arc::new(Mutex::new(Registry::new())),
    });
    &EMU
}

impl Kernel for Emu {
    fn open(&self) -> io::Result<Box<dyn Control>> {
        Ok(Box::new(EmuFd::new(Arc::clone(&self.registry))?))
    }

    fn domain(&self) -> MemDomain {
        MemDomain::Emulated
    }
}
