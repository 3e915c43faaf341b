//! The kernel side of REGISTER, for the backends that play the kernel's part
//! in user space (the embedded kernel and AF_PACKET): the checks netmap's
//! register makes before it binds anything, and the `netmap_if` it fills.
//! [`kring`](super::kring) is the ring view they share.

use std::io;
use std::mem::{offset_of, size_of};
use std::ops::Range;
use std::ptr::{self, NonNull};

use crate::backend::errno;
use crate::ffi::{
    netmap_if, nmreq_register, NETMAP_API, NR_MONITOR_RX, NR_MONITOR_TX, NR_REG_ALL_NIC, NR_REG_DEFAULT,
    NR_REG_ONE_NIC, NR_RX_RINGS_ONLY, NR_TX_RINGS_ONLY, NR_ZCOPY_MON,
};
use crate::spec::PortSpec;

/// The fixed part of a `netmap_if`, before `ring_ofs[]`.
const IF_HDR: usize = size_of::<netmap_if>();
const _: () = assert!(IF_HDR == 56);
/// Bytes of `netmap_if.ni_name` (`IFNAMSIZ`).
const IF_NAME_LEN: usize = offset_of!(netmap_if, ni_version) - offset_of!(netmap_if, ni_name);

/// `EINVAL` unless a request speaks [`NETMAP_API`], as netmap answers any
/// request of another version.
pub(crate) fn check_version(version: u16) -> io::Result<()> {
    if version == NETMAP_API {
        Ok(())
    } else {
        Err(errno(libc::EINVAL))
    }
}

/// `EOPNOTSUPP` for a port asked with options (`@offset`, `@extmem`),
/// which these kernels implement none of (and which no typed REGISTER
/// carries yet to `/dev/netmap`), as netmap answers a request with an
/// option it does not know.
pub(crate) fn refuse_options(spec: &PortSpec) -> io::Result<()> {
    if spec.offset.is_some() || spec.extmem.is_some() {
        Err(errno(libc::EOPNOTSUPP))
    } else {
        Ok(())
    }
}

/// The directions and rings a REGISTER request selects, checked as
/// netmap's register checks them before it looks at the port.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Selection {
    /// The request binds TX rings (no `NR_RX_RINGS_ONLY`).
    pub tx: bool,
    /// The request binds RX rings (no `NR_TX_RINGS_ONLY`).
    pub rx: bool,
    mode: u32,
    ringid: u16,
}

impl Selection {
    /// Checks `req` on a handle that is `registered` already or not: a
    /// handle registers once (`EBUSY`), monitors are refused
    /// (`EOPNOTSUPP`), and `NR_TX_RINGS_ONLY` with `NR_RX_RINGS_ONLY`
    /// selects nothing (`EINVAL`).
    pub(crate) fn check(req: &nmreq_register, registered: bool) -> io::Result<Selection> {
        if registered {
            return Err(errno(libc::EBUSY));
        }
        if req.nr_flags & (NR_MONITOR_TX | NR_MONITOR_RX | NR_ZCOPY_MON) != 0 {
            return Err(errno(libc::EOPNOTSUPP));
        }
        let tx_only = req.nr_flags & NR_TX_RINGS_ONLY != 0;
        let rx_only = req.nr_flags & NR_RX_RINGS_ONLY != 0;
        if tx_only && rx_only {
            return Err(errno(libc::EINVAL));
        }
        Ok(Selection {
            tx: !rx_only,
            rx: !tx_only,
            mode: req.nr_mode,
            ringid: req.nr_ringid,
        })
    }

    /// The ring pairs selected on a port of `nrings`: all of them
    /// (`NR_REG_DEFAULT`, `NR_REG_ALL_NIC`) or one (`NR_REG_ONE_NIC`, whose
    /// id must be below `nrings`, else `EINVAL`). Any other mode (host
    /// rings, the pipe modes, NULL) is answered with `unserved`.
    pub(crate) fn rings(&self, nrings: u32, unserved: i32) -> io::Result<Range<u32>> {
        match self.mode {
            NR_REG_DEFAULT | NR_REG_ALL_NIC => Ok(0..nrings),
            NR_REG_ONE_NIC => {
                let id = u32::from(self.ringid);
                if id >= nrings {
                    return Err(errno(libc::EINVAL));
                }
                Ok(id..id + 1)
            }
            _ => Err(errno(unserved)),
        }
    }

    /// `rings` in the directions selected: the TX ring ids and the RX ring
    /// ids (empty for a direction the request leaves out).
    pub(crate) fn per_dir(&self, rings: Range<u32>) -> (Range<u32>, Range<u32>) {
        let pick = |has: bool| if has { rings.clone() } else { 0..0 };
        (pick(self.tx), pick(self.rx))
    }
}

/// Bytes of a `netmap_if` for `nrings` ring pairs: the header and its
/// `ring_ofs` table, one entry per TX and per RX ring.
pub(crate) fn if_len(nrings: u32) -> usize {
    IF_HDR + 2 * nrings as usize * size_of::<isize>()
}

/// Fills the `netmap_if` at `nif` of a port of `nrings` ring pairs named
/// `name` (cut to `IFNAMSIZ - 1` bytes): zeroes its [`if_len`] bytes, then
/// writes the version, the ring counts and the `ring_ofs` entries of the
/// bound rings, each given as its ring id and the distance in bytes from
/// the `netmap_if` to its header (the TX ones first in the table, the RX
/// ones after all TX entries).
///
/// # Safety
/// `nif` must point at `if_len(nrings)` writable bytes, 8-aligned, that
/// nobody reads or writes meanwhile (the user learns of them only when
/// REGISTER returns); every ring id must be below `nrings`.
pub(crate) unsafe fn write_if(
    nif: NonNull<netmap_if>,
    name: &str,
    nrings: u32,
    tx: impl IntoIterator<Item = (u32, isize)>,
    rx: impl IntoIterator<Item = (u32, isize)>,
) {
    let nif = nif.as_ptr();
    let n = nrings as usize;
    // SAFETY: the caller's contract: `if_len(nrings)` bytes at `nif`, the
    // header and a `ring_ofs` table of `2 * n` entries, are ours to write,
    // and every id is below `n`.
    unsafe {
        ptr::write_bytes(nif.cast::<u8>(), 0, if_len(nrings));
        let nm = ptr::addr_of_mut!((*nif).ni_name).cast::<u8>();
        let len = name.len().min(IF_NAME_LEN - 1);
        ptr::copy_nonoverlapping(name.as_ptr(), nm, len);
        ptr::addr_of_mut!((*nif).ni_version).write(u32::from(NETMAP_API));
        ptr::addr_of_mut!((*nif).ni_tx_rings).write(nrings);
        ptr::addr_of_mut!((*nif).ni_rx_rings).write(nrings);
        let table = ptr::addr_of_mut!((*nif).ring_ofs).cast::<isize>();
        for (i, ofs) in tx {
            table.add(i as usize).write(ofs);
        }
        for (i, ofs) in rx {
            table.add(n + i as usize).write(ofs);
        }
    }
}
