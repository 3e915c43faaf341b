//! The virtio-net header (`struct virtio_net_hdr`, netmap's `nm_vnet_hdr`)
//! that starts every packet of a VALE port given a header length with
//! [`vale::set_header_len`](crate::vale::set_header_len): checksum and
//! segmentation offload between VALE ports and virtual machines.
//!
//! On such a port a received frame's bytes are the header, then the packet
//! ([`VnetHeader::split`]); a packet to send is the header, then the packet
//! ([`VnetHeader::prepend`]).
//!
//! ```
//! use netmap_rs::vnet::{VnetHeader, VNET_HDR_MRG_LEN};
//!
//! // A UDP packet whose checksum the receiving side is to fill in.
//! let hdr = VnetHeader {
//!     flags: VnetHeader::F_NEEDS_CSUM,
//!     csum_start: 34,
//!     csum_offset: 6,
//!     ..VnetHeader::default()
//! };
//! let frame = hdr.prepend(VNET_HDR_MRG_LEN, &[0u8; 42]);
//! let (back, packet) = VnetHeader::split(&frame, VNET_HDR_MRG_LEN).unwrap();
//! assert_eq!((back, packet.len()), (hdr, 42));
//! ```

/// The header without `num_buffers`.
pub const VNET_HDR_LEN: usize = 10;
/// The header with `num_buffers` (`virtio_net_hdr_mrg_rxbuf`).
pub const VNET_HDR_MRG_LEN: usize = 12;

/// A virtio-net header, in the byte order of the host, as virtio-net on
/// Linux lays it out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHeader {
    /// [`F_NEEDS_CSUM`](VnetHeader::F_NEEDS_CSUM),
    /// [`F_DATA_VALID`](VnetHeader::F_DATA_VALID).
    pub flags: u8,
    /// [`GSO_NONE`](VnetHeader::GSO_NONE), `GSO_TCPV4`, `GSO_UDP`,
    /// `GSO_TCPV6`, with [`GSO_ECN`](VnetHeader::GSO_ECN) or'ed in.
    pub gso_type: u8,
    /// Bytes of the protocol headers before the payload (for GSO).
    pub hdr_len: u16,
    /// Bytes of payload per segment (for GSO).
    pub gso_size: u16,
    /// Where checksumming starts (with `F_NEEDS_CSUM`).
    pub csum_start: u16,
    /// Where from `csum_start` the checksum goes (with `F_NEEDS_CSUM`).
    pub csum_offset: u16,
    /// How many buffers the packet took: only in a 12-byte header; 0 in a
    /// 10-byte one.
    pub num_buffers: u16,
}

impl VnetHeader {
    /// The checksum from `csum_start` is to be computed and stored at
    /// `csum_start + csum_offset`.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// The checksum is known to be right.
    pub const F_DATA_VALID: u8 = 2;
    /// Not a segmentation offload packet.
    pub const GSO_NONE: u8 = 0;
    /// TCP over IPv4 to segment.
    pub const GSO_TCPV4: u8 = 1;
    /// UDP to fragment.
    pub const GSO_UDP: u8 = 3;
    /// TCP over IPv6 to segment.
    pub const GSO_TCPV6: u8 = 4;
    /// The TCP packet has ECN set.
    pub const GSO_ECN: u8 = 0x80;

    /// Reads the header at the start of `frame`, `len` bytes long (10 or
    /// 12), and gives the packet after it; `None` if `len` is neither or
    /// `frame` is shorter.
    pub fn split(frame: &[u8], len: usize) -> Option<(VnetHeader, &[u8])> {
        if len != VNET_HDR_LEN && len != VNET_HDR_MRG_LEN {
            return None;
        }
        let (h, packet) = (frame.get(..len)?, &frame[len..]);
        let word = |at: usize| u16::from_ne_bytes([h[at], h[at + 1]]);
        let hdr = VnetHeader {
            flags: h[0],
            gso_type: h[1],
            hdr_len: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
            num_buffers: if len == VNET_HDR_MRG_LEN { word(10) } else { 0 },
        };
        Some((hdr, packet))
    }

    /// Writes the header, `len` bytes long (10 or 12; any other length
    /// writes 12), into `out`, which must hold that many bytes.
    ///
    /// # Panics
    /// If `out` is shorter than the header.
    pub fn write(&self, len: usize, out: &mut [u8]) {
        let n = if len == VNET_HDR_LEN {
            VNET_HDR_LEN
        } else {
            VNET_HDR_MRG_LEN
        };
        let out = &mut out[..n];
        out[0] = self.flags;
        out[1] = self.gso_type;
        for (at, v) in [
            (2, self.hdr_len),
            (4, self.gso_size),
            (6, self.csum_start),
            (8, self.csum_offset),
        ] {
            out[at..at + 2].copy_from_slice(&v.to_ne_bytes());
        }
        if n == VNET_HDR_MRG_LEN {
            out[10..12].copy_from_slice(&self.num_buffers.to_ne_bytes());
        }
    }

    /// The header, `len` bytes long (10 or 12), followed by `packet`: the
    /// bytes to send on a port with a header of that length.
    pub fn prepend(&self, len: usize, packet: &[u8]) -> Vec<u8> {
        let n = if len == VNET_HDR_LEN {
            VNET_HDR_LEN
        } else {
            VNET_HDR_MRG_LEN
        };
        let mut v = vec![0; n + packet.len()];
        self.write(n, &mut v);
        v[n..].copy_from_slice(packet);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_lengths_round_trip_and_short_frames_are_refused() {
        let hdr = VnetHeader {
            flags: VnetHeader::F_NEEDS_CSUM,
            gso_type: VnetHeader::GSO_TCPV4 | VnetHeader::GSO_ECN,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 1,
        };
        let long = hdr.prepend(VNET_HDR_MRG_LEN, b"data");
        assert_eq!(long.len(), 16);
        assert_eq!(VnetHeader::split(&long, 12), Some((hdr, &b"data"[..])));
        let short = hdr.prepend(VNET_HDR_LEN, b"data");
        let (back, rest) = VnetHeader::split(&short, 10).unwrap();
        assert_eq!(
            (back, rest),
            (
                VnetHeader {
                    num_buffers: 0,
                    ..hdr
                },
                &b"data"[..]
            )
        );
        assert_eq!(&short[2..4], &54u16.to_ne_bytes());
        assert_eq!(VnetHeader::split(&short[..9], 10), None);
        assert_eq!(VnetHeader::split(&short, 11), None);
    }
}
