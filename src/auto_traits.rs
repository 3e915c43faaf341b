//! The `Send` and `Sync` that the public types' docs state, checked at
//! compile time: this module fails to build if a type gains or loses one.

use crate::probe::{
    AfPacketStatus, AfXdpStatus, DeviceStatus, KernelApi, LibraryStatus, PortProbe, Probe, XdpProbe,
};
use crate::spec::{Conf, ExtmemOpt, OffsetOpt, PipeRole, PipeSpec, PortKind, PortSpec, RingSelect};
use crate::{
    BackendKind, Error, Fallback, Frame, Netmap, NetmapBuilder, Refusal, Refusals, RxIter, RxRing, TxBatch,
    TxRing, XdpMode,
};

const fn send<T: Send>() {}
const fn sync<T: Sync>() {}

/// `assert_not!(Sync, T)` fails to compile if `T` is `Sync` (and so for
/// `Send`): `Ambiguous` is implemented for every type under `()`, and for
/// the `Sync` ones under `u8` too, so `<T as Ambiguous<_>>` picks one impl
/// exactly when `T` is not `Sync`.
macro_rules! assert_not {
    ($trait:ident, $($t:ty),+ $(,)?) => {
        const _: fn() = || {
            trait Ambiguous<A> {
                fn check() {}
            }
            impl<T: ?Sized> Ambiguous<()> for T {}
            impl<T: ?Sized + $trait> Ambiguous<u8> for T {}
            $(<$t as Ambiguous<_>>::check();)+
        };
    };
}

macro_rules! assert_send_sync {
    ($($t:ty),+ $(,)?) => {
        const _: () = {
            $(send::<$t>(); sync::<$t>();)+
        };
    };
}

// Plain data, configuration and errors: both.
assert_send_sync!(
    NetmapBuilder,
    Error,
    BackendKind,
    Refusal,
    Refusals,
    Fallback,
    Probe,
    PortProbe,
    DeviceStatus,
    KernelApi,
    LibraryStatus,
    AfPacketStatus,
    AfXdpStatus,
    XdpProbe,
    XdpMode,
    PortSpec,
    PortKind,
    PipeRole,
    PipeSpec,
    RingSelect,
    Conf,
    OffsetOpt,
    ExtmemOpt,
);

// A kept packet is owned: it moves between threads and is shared by them.
const _: () = send::<crate::KeptFrame>();
const _: () = sync::<crate::KeptFrame>();

// A port moves between threads, and is driven from one at a time.
const _: () = send::<Netmap>();
assert_not!(Sync, Netmap);

// Ring handles, their batches, iterators and frames stay on the port's
// thread.
assert_not!(
    Send,
    TxRing<'static>,
    RxRing<'static>,
    TxBatch<'static, 'static>,
    RxIter<'static>,
    Frame<'static>
);
assert_not!(
    Sync,
    TxRing<'static>,
    RxRing<'static>,
    TxBatch<'static, 'static>,
    RxIter<'static>,
    Frame<'static>
);

// A registered port stays on the thread that polls it.
#[cfg(feature = "mio")]
assert_not!(Send, crate::LocalPort);
#[cfg(feature = "mio")]
assert_not!(Sync, crate::LocalPort);
