//! The rings of a port as read once when it opens: the `netmap_if`'s counts
//! and ring offsets, and each bound ring's checked constants.

use std::ops::Range;
use std::ptr::{self, NonNull};

use super::{RingCore, RingShape, IF_HDR};
use crate::backend::Mapping;
use crate::error::{Error, Result};
use crate::ffi::{netmap_if, netmap_ring, nmreq_register};

/// A port's `netmap_if` as read once at open: its ring counts and its
/// table of ring offsets, copied out of shared memory and checked.
///
/// The table has one entry per TX ring (the hardware ones, then the host
/// ones), then one per RX ring. The kernel counts at least one host ring
/// per direction in the table (a placeholder, offset 0, on ports without
/// host rings, such as pipes and VALE ports), so its length follows the
/// `netmap_if`'s counts, not the register reply's.
#[derive(Debug, Clone)]
pub(crate) struct IfTable {
    /// TX entries (hardware and host).
    ntx: usize,
    /// Every entry: `ntx` TX ones, then the RX ones.
    ofs: Box<[isize]>,
}

impl IfTable {
    /// Reads the `netmap_if` at `nifp` and its table, checking them against
    /// the mapping and the register reply `reg`.
    ///
    /// `nifp` may point anywhere: it is checked against `map`.
    pub(crate) fn read(map: &Mapping, nifp: NonNull<netmap_if>, reg: &nmreq_register) -> Result<IfTable> {
        let corrupt = |what: String| Error::RingCorrupt { ring: 0, what };
        let nif = nifp.as_ptr();
        let base = map.base().as_ptr() as usize;
        let end = base + map.len();
        if (nif as usize) < base
            || (nif as usize).checked_add(IF_HDR).is_none_or(|e| e > end)
            || !(nif as usize).is_multiple_of(std::mem::align_of::<netmap_if>())
        {
            return Err(corrupt(
                "the netmap_if lies outside the mapped region, or misaligned".into(),
            ));
        }
        // SAFETY: the header lies inside the mapping, aligned (checked); each
        // count is read once, here.
        let counts = unsafe {
            [
                ptr::addr_of!((*nif).ni_tx_rings).read_volatile(),
                ptr::addr_of!((*nif).ni_host_tx_rings).read_volatile(),
                ptr::addr_of!((*nif).ni_rx_rings).read_volatile(),
                ptr::addr_of!((*nif).ni_host_rx_rings).read_volatile(),
            ]
        };
        let replied = [
            reg.nr_tx_rings,
            reg.nr_host_tx_rings,
            reg.nr_rx_rings,
            reg.nr_host_rx_rings,
        ]
        .map(u32::from);
        // Host counts may be the placeholder 1 where the reply says 0.
        let agrees = |i: usize| counts[i] == replied[i] || (i % 2 == 1 && replied[i] == 0 && counts[i] == 1);
        if !(0..4).all(agrees) {
            return Err(corrupt(format!(
                "the netmap_if counts rings (TX, host TX, RX, host RX) {counts:?}, the register \
                 reply {replied:?}"
            )));
        }
        let ntx = counts[0] as usize + counts[1] as usize;
        let n = ntx + counts[2] as usize + counts[3] as usize;
        // SAFETY: the header of `IF_HDR` bytes lies in the mapping (checked).
        let table = unsafe { nif.cast::<u8>().add(IF_HDR) }.cast::<isize>();
        if n * std::mem::size_of::<isize>() > end - table as usize {
            return Err(corrupt(
                "the ring offset table runs past the mapped region".into(),
            ));
        }
        // SAFETY: the `n` entries lie in the mapping (checked) and are
        // 8-aligned (the netmap_if is, and its header is 56 bytes). Each is
        // read once, here.
        let ofs = (0..n).map(|i| unsafe { table.add(i).read_volatile() }).collect();
        Ok(IfTable { ntx, ofs })
    }

    /// The table's TX entries (hardware rings, then host rings).
    pub(crate) fn tx(&self) -> &[isize] {
        &self.ofs[..self.ntx]
    }

    /// The table's RX entries (hardware rings, then host rings).
    pub(crate) fn rx(&self) -> &[isize] {
        &self.ofs[self.ntx..]
    }
}

/// The rings bound to a port, read and checked once when it opens: ring
/// pointers, ids, counts and constants are never read from shared memory
/// again.
#[derive(Debug)]
pub(crate) struct RingTable {
    /// The bound TX rings, in id order.
    pub(crate) tx: Box<[RingCore]>,
    /// The bound RX rings, in id order.
    pub(crate) rx: Box<[RingCore]>,
}

impl RingTable {
    /// The rings `tx` and `rx` (ids, host rings after the hardware ones)
    /// that `table`, the table of the `netmap_if` at `nifp`, designates,
    /// each checked against the mapping and the register reply `reg`.
    ///
    /// # Safety
    /// `map` must outlive the table and every [`RingCore`] made from it.
    pub(crate) unsafe fn read(
        map: &Mapping,
        nifp: NonNull<netmap_if>,
        table: &IfTable,
        reg: &nmreq_register,
        tx: Range<u16>,
        rx: Range<u16>,
    ) -> Result<RingTable> {
        if usize::from(tx.end) > table.tx().len() || usize::from(rx.end) > table.rx().len() {
            return Err(Error::RingCorrupt {
                ring: 0,
                what: format!(
                    "bound rings TX {tx:?} / RX {rx:?} beyond the port's {} / {}",
                    table.tx().len(),
                    table.rx().len()
                ),
            });
        }
        let ring = |ofs: isize, id: u16, num_slots: u32| -> Result<RingCore> {
            let at = nifp
                .as_ptr()
                .cast::<u8>()
                .wrapping_offset(ofs)
                .cast::<netmap_ring>();
            let ptr = NonNull::new(at).ok_or_else(|| Error::RingCorrupt {
                ring: id,
                what: "a null ring".into(),
            })?;
            let shape = RingShape { id, num_slots };
            // SAFETY: the caller's contract on the mapping; `new` checks
            // that the ring lies inside it.
            unsafe { RingCore::new(ptr, map.base().as_ptr(), map.len(), shape) }
        };
        let tx = tx
            .map(|id| ring(table.tx()[id as usize], id, reg.nr_tx_slots))
            .collect::<Result<Box<[_]>>>()?;
        let rx = rx
            .map(|id| ring(table.rx()[id as usize], id, reg.nr_rx_slots))
            .collect::<Result<Box<[_]>>>()?;
        // One region has one buffer size.
        if let Some(first) = tx.iter().chain(rx.iter()).next() {
            if let Some(other) = tx.iter().chain(rx.iter()).find(|r| r.buf_size != first.buf_size) {
                return Err(Error::RingCorrupt {
                    ring: other.id,
                    what: format!(
                        "nr_buf_size {} differs from ring {}'s {}",
                        other.buf_size, first.id, first.buf_size
                    ),
                });
            }
        }
        Ok(RingTable { tx, rx })
    }
}
