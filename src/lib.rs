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
