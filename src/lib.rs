//! Safe, zero-copy access to [netmap](https://github.com/luigirizzo/netmap) rings.
//!
//! `netmap-rs` has no link-time dependency on netmap: the same binary runs on
//! hosts with and without it. On first use a port is opened through
//! `libnetmap.so` (loaded at run time; `NETMAP_LIBRARY` names a custom path),
//! else through `/dev/netmap` with raw `ioctl`s, exactly as libnetmap's
//! `nmport_open` would; `emu:` names use an embedded user-space implementation
//! of netmap pipes on the very same memory layout, so everything here also runs
//! on hosts without netmap.
//!
//! ```
//! use netmap_rs::prelude::*;
//!
//! # fn main() -> Result<(), Error> {
//! // A pipe of the embedded kernel: `{` is the master end, `}` the slave end.
//! let a = NetmapBuilder::new("emu:doc{1").build()?;
//! let b = NetmapBuilder::new("emu:doc}1").build()?;
//!
//! let mut tx = a.tx_ring(0)?;
//! tx.send(b"hello netmap-rs!")?;
//! tx.sync()?;
//!
//! let mut rx = b.rx_ring(0)?;
//! rx.sync()?;
//! let frame = rx.recv().expect("the packet crossed the pipe");
//! assert_eq!(frame.payload(), b"hello netmap-rs!");
//! # Ok(())
//! # }
//! ```
//!
//! The pieces: [`NetmapBuilder`] opens a [`Netmap`] port; its [`TxRing`]s and
//! [`RxRing`]s move packets; a received packet is a [`Frame`] that borrows its
//! ring, so no sync can run while it is alive. [`probe()`] tells, without
//! failing, what this host offers.
//!
//! # What "safe" means here
//!
//! A netmap region is memory shared with the kernel and with every process
//! that binds a port in it (all hardware ports of netmap's default allocator
//! share one). This crate's safe API guarantees that no call, and no value
//! that any process writes into the region (ring indices, counts, offsets,
//! sizes, flags, lengths, buffer indices), causes undefined behaviour, a
//! crash, an abort, an unbounded allocation, a hang or a silently wrong
//! result; at worst you get an [`Error`] (such as [`Error::RingCorrupt`]) and
//! the ring moves on. To that end:
//!
//! * ring pointers, ids, counts and constants are read once when a port
//!   opens, checked against the mapping (bounds, alignment) and the kernel's
//!   register reply, and never read from shared memory again;
//! * every other shared value (`tail`, a slot's buffer index, length,
//!   offset and flags) is read once per use and checked before it is used:
//!   a slot whose buffer lies outside the region is skipped and reported
//!   once; a length is clamped to its buffer; a slot never carries a
//!   truncated length;
//! * within the crate, ownership is enforced: a ring has at most one live
//!   handle, and a port binds its rings **exclusively** (`NR_EXCLUSIVE` on
//!   every register request, whatever the backend). The netmap kernel
//!   otherwise lets any number of descriptors bind one ring, and two ports
//!   of one ring would hand out two `&mut` views of the same buffers from
//!   safe code. A second port that selects rings another port binds, in this
//!   process or another, fails with [`Error::Busy`]; ports of different
//!   rings (`eth0-0` and `eth0-1`, or `eth0/T` and `eth0/R`) do not collide.
//!   Binding rings twice is an explicit opt-in, the unsafe
//!   [`NetmapBuilder::share_rings`], whose caller promises that only one of
//!   the ports uses them at a time;
//! * a process forked from the one that opened a port cannot use it
//!   ([`Error::Forked`]), and its inherited view of a shared region is
//!   replaced with private memory, so stale handles in the child cannot
//!   touch the parent's rings.
//!
//! What the crate assumes, as netmap assumes of its users: processes that
//! share a region do not write into buffers they do not own. A peer that
//! scribbles on the bytes of a packet this process is reading, or hands over
//! a buffer index this process still holds, changes bytes under a `&[u8]` or
//! `&mut [u8]` that Rust believes unaliased; no check in user space can stop
//! that, just as nothing stops another process with the rights to do so from
//! writing a file you have mapped (see memmap2's notes on `Mmap`) or this
//! process's memory through `/proc/self/mem`. Give rings only to processes
//! you trust with them, as you would give them the files you map.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    clippy::undocumented_unsafe_blocks
)]

pub use netmap_ffi_decls as ffi;

#[cfg(test)]
mod auto_traits;
mod backend;
pub mod error;
mod extra;
mod frame;
pub mod info;
#[cfg(feature = "mio")]
mod mio;
mod port;
pub mod probe;
mod ring;
pub mod spec;
pub mod vale;
pub mod vnet;

#[cfg(feature = "mio")]
pub use crate::mio::LocalPort;
pub use backend::emu::{emu_dir, set_emu_namespace};
pub use backend::select::{Fallback, XdpMode};
pub use error::{BackendKind, Error, Refusal, Refusals, Result};
pub use extra::KeptFrame;
pub use frame::Frame;
pub use port::{Netmap, NetmapBuilder};
pub use probe::{probe, Probe};
pub use ring::{RxIter, RxRing, TxBatch, TxRing};

/// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The names most programs need: `use netmap_rs::prelude::*;`.
pub mod prelude {
    pub use crate::error::{BackendKind, Error, Result};
    pub use crate::extra::KeptFrame;
    pub use crate::frame::Frame;
    #[cfg(feature = "mio")]
    pub use crate::mio::LocalPort;
    pub use crate::port::{Netmap, NetmapBuilder};
    pub use crate::ring::{RxRing, TxRing};
}
