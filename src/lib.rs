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
//! # Trust model
//!
//! A netmap memory region is shared with the kernel and with every process
//! that binds a port in it (all hardware ports of netmap's default allocator
//! share one). No value that anyone writes into the region (indices, counts,
//! offsets, lengths, flags) can make a safe call of this crate misbehave: it
//! is checked where it is read, and at worst becomes an [`Error`]. What the
//! crate cannot prevent is what netmap itself asks of its users: that
//! processes sharing a region do not write into buffers they do not own.
//! A process that does (root can also write through `/proc/PID/mem`) can
//! change the bytes under a [`Frame`] or a TX buffer as it is being
//! built; that is outside what Rust's safety can promise, as it is for a
//! file that `memmap2` maps and another process changes.
//!
//! Within the crate, ownership is enforced: a ring has at most one live
//! handle, and a port binds its rings **exclusively** (`NR_EXCLUSIVE` on every
//! register request, whatever the backend). The netmap kernel otherwise lets
//! any number of descriptors bind one ring, and two ports of one ring would
//! hand out two `&mut` views of the same buffers from safe code. A second
//! port that selects rings another port binds, in this process or another,
//! fails with [`Error::Busy`]; ports of different rings (`eth0-0` and
//! `eth0-1`, or `eth0/T` and `eth0/R`) do not collide. Binding rings twice
//! is an explicit opt-in, the unsafe [`NetmapBuilder::share_rings`], whose
//! caller promises that only one of the ports uses them at a time.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    clippy::undocumented_unsafe_blocks
)]

pub use netmap_ffi_decls as ffi;

mod backend;
pub mod error;
mod frame;
#[cfg(feature = "mio")]
mod mio;
mod port;
pub mod probe;
mod ring;
pub mod spec;

#[cfg(feature = "mio")]
pub use crate::mio::LocalPort;
pub use error::{BackendKind, Error, Refusal, Refusals, Result};
pub use frame::Frame;
pub use port::{Fallback, Netmap, NetmapBuilder};
pub use probe::{probe, Probe};
pub use ring::{RxIter, RxRing, TxBatch, TxRing};

/// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The names most programs need: `use netmap_rs::prelude::*;`.
pub mod prelude {
    pub use crate::error::{BackendKind, Error, Result};
    pub use crate::frame::Frame;
    #[cfg(feature = "mio")]
    pub use crate::mio::LocalPort;
    pub use crate::port::{Netmap, NetmapBuilder};
    pub use crate::ring::{RxRing, TxRing};
}
