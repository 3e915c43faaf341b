//! mio integration (feature `mio`, on by default): a [`Netmap`] port is a
//! [`mio::event::Source`], and [`LocalPort`] is a registration that the
//! compiler keeps on the thread that polls it.
//!
//! The user-facing guide lives on [`LocalPort`] (this module is private);
//! the short version is on the `Source` impl below.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use ::mio::event::Source;
use ::mio::unix::SourceFd;
use ::mio::{Interest, Poll, Registry, Token};

use crate::error::{Name, Result};
use crate::frame::Frame;
use crate::port::Netmap;

/// A port is an event source: [`Interest::READABLE`] fires when one of its RX
/// rings has packets, [`Interest::WRITABLE`] when one of its TX rings has
/// room. All three calls forward to [`SourceFd`] on the port's descriptor,
/// whatever the backend (`/dev/netmap`, libnetmap, the embedded kernel).
///
/// Events are edges (mio's contract): after one, sync and drain every bound
/// RX ring until [`RxRing::sync`](crate::RxRing::sync) reports 0, and sync
/// every TX ring you staged into, before polling again. The thread that polls
/// the [`Registry`] must be the thread that drives the port's rings; prefer
/// [`Netmap::register_local`], which makes the compiler hold you to it. See
/// [`LocalPort`] for the full story.
impl Source for Netmap {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        SourceFd(&self.as_raw_fd()).register(registry, token, interests)
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        SourceFd(&self.as_raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.as_raw_fd()).deregister(registry)
    }
}

/// A port registered with a [`Poll`] that this thread polls: the way to put
/// a netmap port in a mio event loop.
///
/// Made by [`Netmap::register_local`]; it dereferences to the [`Netmap`], so
/// rings come from [`tx_ring`](Netmap::tx_ring) and
/// [`rx_ring`](Netmap::rx_ring) as usual.
///
/// `LocalPort` is neither `Send` nor `Sync`: it stays on the thread that
/// registered it, which is the thread that polls its `Poll` and so the one
/// that must drive its rings (see [Which thread may poll](#which-thread-may-poll)).
///
/// # What an event means
///
/// A port registered with [`Interest::READABLE`] becomes readable when one of
/// its RX rings has packets the program has not seen; with
/// [`Interest::WRITABLE`], writable when one of its TX rings gains room.
///
/// * **The netmap kernel** (`/dev/netmap`, libnetmap): mio waits in
///   `epoll_wait`, and epoll asks the descriptor's poll handler, netmap's
///   own, for its state when the port is registered and whenever the kernel
///   has signalled it since the last wait. That handler runs *in the thread
///   that called [`Poll::poll`]*, and it syncs: with `READABLE` it does an
///   rxsync of every bound RX ring (readable if one then holds packets past
///   `cur`); it does a txsync of every bound TX ring that holds unsent
///   packets, unless the port was opened with
///   [`NR_NO_TX_POLL`](crate::ffi::NR_NO_TX_POLL); and with `WRITABLE` it
///   txsyncs every TX ring until one has room (writable). So a wake-up
///   implies an rxsync, and a txsync unless `NR_NO_TX_POLL`.
/// * **The embedded kernel** (`emu:`): the descriptor is an eventfd that the
///   embedded kernel writes on the transitions the real one signals: the
///   peer's txsync that delivers packets gives a readable edge, the peer's
///   rxsync that frees room in a TX ring your last txsync left full a
///   writable edge, and an own rxsync after which nothing is left unseen
///   clears readability. An eventfd cannot run code, so a wake-up syncs
///   nothing: the rings' `tail` is stale until you sync.
///
/// # The handler loop
///
/// One loop is right for both kernels. mio reports *edges*: after an event
/// you must work until there is nothing left, or you hear nothing more about
/// what is left. For a netmap port, "nothing left" is a sync that finds
/// nothing:
///
/// 1. For every bound RX ring: **sync first, then drain, repeat** until
///    [`RxRing::sync`](crate::RxRing::sync) returns 0. Syncing first is what
///    makes the loop portable: the embedded kernel's wake-up did not sync, and
///    even after the real kernel's did, your ring handle's view is from its
///    own last sync. [`Netmap::drain_rx`] is this loop.
/// 2. For every TX ring you staged packets into: [`TxRing::sync`](crate::TxRing::sync)
///    before returning (the real kernel's poll would push them, unless
///    `NR_NO_TX_POLL`; the embedded kernel's wake-up does not). If a sync
///    leaves [`TxRing::space`](crate::TxRing::space) at 0 while you still
///    have packets to send, return and wait for `WRITABLE`.
///
/// **Which call re-arms readiness:** the `RxRing::sync` that returns 0 (for
/// RX) and the `TxRing::sync` that leaves no room (for TX). From then on,
/// every packet that arrives, and every slot the kernel frees, produces a new
/// event. Packets that were already waiting when you returned to
/// [`Poll::poll`] (a sync would have reported them) produce none: a handler
/// that returns early, for example after the first batch, loses that
/// wake-up until more traffic comes. Events with nothing to do (spurious,
/// as mio allows) cost one sync that returns 0.
///
/// ```
/// use std::time::Duration;
/// use mio::{Events, Interest, Poll, Token};
/// use netmap_rs::prelude::*;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut poll = Poll::new()?;
/// let mut events = Events::with_capacity(16);
/// let server = NetmapBuilder::new("emu:handler{1").build()?;
/// let client = NetmapBuilder::new("emu:handler}1").build()?;
/// let server = server.register_local(&poll, Token(0), Interest::READABLE)?;
///
/// // Something to read: three packets from the other end of the pipe.
/// let mut tx = client.tx_ring(0)?;
/// for p in [&b"one"[..], b"two", b"three"] {
///     tx.send(p)?;
/// }
/// tx.sync()?;
///
/// let mut got = 0;
/// while got < 3 {
///     poll.poll(&mut events, Some(Duration::from_secs(5)))?;
///     for event in events.iter() {
///         if event.token() != server.token() {
///             continue;
///         }
///         let mut rx = server.rx_ring(0)?;
///         // Sync first, then drain; only a sync that finds nothing ends it.
///         while rx.sync()? > 0 {
///             for frame in rx.iter() {
///                 println!("{} bytes", frame.len());
///                 got += 1;
///             }
///         }
///     }
/// }
/// # assert_eq!(got, 3);
/// # Ok(())
/// # }
/// ```
///
/// # Which thread may poll
///
/// `epoll_wait` runs netmap's poll handler, and with it txsync and rxsync of
/// the port's rings, on the thread that calls [`Poll::poll`]; netmap lets one
/// thread at a time into a sync of a given ring (a second finds it busy and
/// skips it). If one thread polls while another drives the rings, their syncs
/// collide: one is skipped, a ring's view goes stale, and wake-ups are lost.
/// So **the thread that polls a `Poll` holding a port is the thread that
/// drives that port's rings**. [`register_local`](Netmap::register_local)
/// keeps you there: it takes the [`Poll`] itself (a `&Poll` cannot be shared
/// with a thread that is polling it, unlike a [`Registry`] clone), and the
/// `LocalPort` it returns is not `Send`:
///
/// ```compile_fail,E0277
/// # use mio::{Interest, Poll, Token};
/// # use netmap_rs::prelude::*;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let poll = Poll::new()?;
/// let port = NetmapBuilder::new("emu:stay{1").build()?;
/// let port = port.register_local(&poll, Token(0), Interest::READABLE)?;
/// std::thread::spawn(move || port.rx_ring(0).map(|_| ())); // error: not `Send`
/// # Ok(())
/// # }
/// ```
///
/// (Do not move the `Poll` to another thread afterwards either.) A
/// [`Netmap`] is `Send`, so a multi-threaded server opens **one port per
/// ring** ([`NetmapBuilder::build_per_ring`](crate::NetmapBuilder::build_per_ring)),
/// moves each into its own thread, and gives each thread **its own `Poll`**:
///
/// ```
/// use std::time::Duration;
/// use mio::{Events, Interest, Poll, Token};
/// use netmap_rs::prelude::*;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Two ring pairs; one port (and one thread) per ring.
/// let ports = NetmapBuilder::new("emu:perring{1")
///     .num_tx_rings(2)
///     .num_rx_rings(2)
///     .build_per_ring()?;
/// let workers: Vec<_> = ports
///     .into_iter()
///     .map(|port| {
///         std::thread::spawn(move || -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
///             let mut poll = Poll::new()?; // this thread's own Poll
///             let mut events = Events::with_capacity(8);
///             let port = port.register_local(&poll, Token(0), Interest::READABLE)?;
///             let mut got = 0;
///             while got == 0 {
///                 poll.poll(&mut events, Some(Duration::from_secs(5)))?;
///                 if events.is_empty() {
///                     return Err("no packet within 5 s".into());
///                 }
///                 got += port.drain_rx(|_frame| ())?;
///             }
///             Ok(got)
///         })
///     })
///     .collect();
///
/// // The other end sends one packet on each ring.
/// let client = NetmapBuilder::new("emu:perring}1").build()?;
/// for i in 0..client.num_tx_rings() {
///     let mut tx = client.tx_ring(i)?;
///     tx.send(&[i as u8; 60])?;
///     tx.sync()?;
/// }
/// for w in workers {
///     assert_eq!(w.join().unwrap().map_err(|e| e.to_string())?, 1);
/// }
/// # Ok(())
/// # }
/// ```
///
/// Dropping a `LocalPort` closes the port, which also removes it from the
/// `Poll`; [`into_inner`](LocalPort::into_inner) deregisters it and hands the
/// (`Send`) port back.
pub struct LocalPort {
    port: Netmap,
    token: Token,
    interest: Interest,
    /// Not `Send`: it must stay on the thread that polls it.
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for LocalPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPort")
            .field("port", &self.port)
            .field("token", &self.token)
            .field("interest", &self.interest)
            .finish()
    }
}

impl Deref for LocalPort {
    type Target = Netmap;

    fn deref(&self) -> &Netmap {
        &self.port
    }
}

/// The port's descriptor, that of the [`Netmap`] it holds (see
/// [`Netmap`'s `AsFd`](Netmap#impl-AsFd-for-Netmap) for what it is on each
/// backend). It is registered with the `Poll` that made this `LocalPort`;
/// registering it elsewhere, or polling it directly, is the caller's
/// responsibility, and only the thread that drives the rings may do it.
impl AsFd for LocalPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.port.as_fd()
    }
}

/// The descriptor of [`AsFd`](#impl-AsFd-for-LocalPort), as a number.
impl AsRawFd for LocalPort {
    fn as_raw_fd(&self) -> RawFd {
        self.port.as_raw_fd()
    }
}

impl LocalPort {
    /// The token its events carry.
    pub fn token(&self) -> Token {
        self.token
    }

    /// What it is registered for.
    pub fn interest(&self) -> Interest {
        self.interest
    }

    /// The error of a `reregister` or `deregister` on `poll`, with "not
    /// registered here" told as such.
    ///
    /// The `Poll` is recognised by the port's registration in it, not by its
    /// descriptor's number: a `Poll` dropped and another created in its
    /// place may get the same number (and every epoll instance the same
    /// inode), but not the registration of this port's descriptor, which
    /// this `LocalPort` holds open and registered only there. So the kernel
    /// answers `ENOENT` for any other `Poll`, and nothing changes.
    fn not_here(&self, e: io::Error) -> io::Error {
        if e.raw_os_error() == Some(libc::ENOENT) {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is registered with another mio::Poll", Name(self.port.name())),
            )
        } else {
            e
        }
    }

    /// Changes the token and interest its events carry, as
    /// [`Registry::reregister`] does. `poll` must be the `Poll` it was
    /// registered with (else an [`io::ErrorKind::InvalidInput`] error, and
    /// nothing changes). The new registration reports the port's current
    /// state at once: packets already waiting give a readable event.
    pub fn reregister(&mut self, poll: &Poll, token: Token, interest: Interest) -> io::Result<()> {
        poll.registry()
            .reregister(&mut self.port, token, interest)
            .map_err(|e| self.not_here(e))?;
        self.token = token;
        self.interest = interest;
        Ok(())
    }

    /// Deregisters the port from `poll` and hands it back, `Send` again (to
    /// move it to another thread, or register it elsewhere).
    ///
    /// `poll` must be the `Poll` it was registered with; on any error the
    /// port is dropped, which closes it and so removes it from every `Poll`.
    pub fn into_inner(mut self, poll: &Poll) -> io::Result<Netmap> {
        poll.registry()
            .deregister(&mut self.port)
            .map_err(|e| self.not_here(e))?;
        Ok(self.port)
    }
}

impl Netmap {
    /// Registers the port with `poll` (which this thread polls) for `interest`
    /// events carrying `token`, and returns it as a [`LocalPort`], which
    /// cannot leave this thread. See [`LocalPort`] for what events mean, the
    /// handler loop, and why the polling thread must drive the rings.
    ///
    /// Errors are those of [`Registry::register`]; on error the port is
    /// dropped (closed).
    ///
    /// ```
    /// use mio::{Interest, Poll, Token};
    /// use netmap_rs::prelude::*;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let poll = Poll::new()?;
    /// let port = NetmapBuilder::new("emu:reglocal{1").build()?;
    /// let port = port.register_local(&poll, Token(7), Interest::READABLE | Interest::WRITABLE)?;
    /// assert_eq!(port.token(), Token(7));
    /// assert_eq!(port.num_rx_rings(), 1); // a LocalPort is used as the Netmap it holds
    /// let port: Netmap = port.into_inner(&poll)?; // deregistered, `Send` again
    /// # drop(port);
    /// # Ok(())
    /// # }
    /// ```
    pub fn register_local(mut self, poll: &Poll, token: Token, interest: Interest) -> io::Result<LocalPort> {
        poll.registry().register(&mut self, token, interest)?;
        Ok(LocalPort {
            port: self,
            token,
            interest,
            _not_send: PhantomData,
        })
    }

    /// The whole receive side of a readiness handler: for every bound RX ring,
    /// syncs, hands each packet to `f`, and repeats until a sync finds
    /// nothing, which re-arms readiness (see [`LocalPort`]). Returns how many
    /// packets `f` got; 0 for a spurious event.
    ///
    /// It takes every packet there is; a handler that may have to stop early
    /// (say, because the TX ring it forwards to is full) runs the same loop
    /// itself with [`RxRing::sync`](crate::RxRing::sync) and
    /// [`RxRing::recv`](crate::RxRing::recv), and registers for `WRITABLE`
    /// to be called back. While packets keep coming it keeps going, so under
    /// sustained load one port can hold the thread for as long as its peer
    /// keeps up.
    ///
    /// Errors: [`Error::RingInUse`](crate::Error::RingInUse) while a handle
    /// to one of the port's RX rings is alive, and the errors of
    /// [`RxRing::sync`](crate::RxRing::sync).
    ///
    /// ```
    /// use netmap_rs::prelude::*;
    ///
    /// # fn main() -> Result<(), Error> {
    /// let a = NetmapBuilder::new("emu:drain{1").num_tx_rings(2).num_rx_rings(2).build()?;
    /// let b = NetmapBuilder::new("emu:drain}1").build()?;
    /// for i in 0..2 {
    ///     let mut tx = a.tx_ring(i)?;
    ///     tx.send(b"ping")?;
    ///     tx.send(b"pong")?;
    ///     tx.sync()?;
    /// }
    /// let mut bytes = 0;
    /// assert_eq!(b.drain_rx(|frame| bytes += frame.len())?, 4);
    /// assert_eq!(bytes, 16);
    /// assert_eq!(b.drain_rx(|_| ())?, 0, "a second call finds nothing");
    /// # Ok(())
    /// # }
    /// ```
    pub fn drain_rx<F>(&self, mut f: F) -> Result<usize>
    where
        F: FnMut(Frame<'_>),
    {
        let mut n = 0;
        for i in 0..self.num_rx_rings() {
            let mut rx = self.rx_ring(i)?;
            while rx.sync()? > 0 {
                for frame in rx.iter() {
                    f(frame);
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}
