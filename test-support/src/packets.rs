//! Packets: the one reproducible generator and checksums.

/// A small deterministic generator (xorshift64*), so failures reproduce.
/// Every test, benchmark and example that wants arbitrary numbers or bytes
/// uses this one.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`. Xorshift stays at 0 forever, so a 0
    /// seed starts at 1 instead.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// `n` arbitrary bytes.
    pub fn bytes(&mut self, n: usize) -> impl Iterator<Item = u8> + '_ {
        (0..n).map(|_| self.next_u64() as u8)
    }
}

/// FNV-1a over `data`.
pub fn fnv1a(data: &[u8]) -> u32 {
    data.iter()
        .fold(0x811c_9dc5u32, |h, &b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

/// The IPv4 header checksum (RFC 791, computed as RFC 1071 says) of
/// `header`, whose checksum field must be zero: the one's complement of the
/// one's-complement sum of its 16-bit big-endian words (an odd last byte is
/// padded with zero).
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The EtherType of test frames: one from the IEEE's local experimental
/// range, which a receiving host stack has no handler for and drops.
pub const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
const HDR: usize = 14;

/// The length of test frame `seq`: 60 to 1514 bytes, a function of `seq`.
pub fn frame_len(seq: u64) -> usize {
    Rng::new(seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).range(60, 1514)
}

/// Test frame `seq` into `buf`: broadcast | a local source | [`ETHERTYPE`]
/// | `seq` (8 bytes, little-endian) | FNV-1a of the rest (4) | filler made
/// from `seq`, [`frame_len`]`(seq)` bytes in all.
pub fn make_frame(buf: &mut Vec<u8>, seq: u64) {
    let len = frame_len(seq);
    buf.clear();
    buf.extend_from_slice(&[0xff; 6]);
    buf.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    buf.extend_from_slice(&ETHERTYPE);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend(Rng::new(seq | 1).bytes(len - (HDR + 12)));
    let sum = fnv1a(&buf[HDR + 12..]);
    buf[HDR + 8..HDR + 12].copy_from_slice(&sum.to_le_bytes());
}

/// Checks a frame made by [`make_frame`]: its length and checksum. Returns
/// its sequence number, or what is wrong with it.
pub fn check_frame(p: &[u8]) -> Result<u64, String> {
    if p.len() < HDR + 12 || p[12..14] != ETHERTYPE {
        return Err(format!("a foreign frame of {} bytes", p.len()));
    }
    let seq = u64::from_le_bytes(p[HDR..HDR + 8].try_into().unwrap());
    let sum = u32::from_le_bytes(p[HDR + 8..HDR + 12].try_into().unwrap());
    if p.len() != frame_len(seq) {
        return Err(format!(
            "frame {seq} is {} bytes, sent {}",
            p.len(),
            frame_len(seq)
        ));
    }
    if sum != fnv1a(&p[HDR + 12..]) {
        return Err(format!("frame {seq} corrupted"));
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_checksum_of_a_known_header() {
        // 192.168.0.1 -> 192.168.0.199, UDP, from RFC 1071's usual example.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(
            ipv4_checksum(&h),
            0,
            "a header with its checksum sums to all ones"
        );
    }

    #[test]
    fn test_frames_check_and_flipped_bits_do_not() {
        let mut buf = Vec::new();
        for seq in [0, 1, 77, u64::MAX] {
            make_frame(&mut buf, seq);
            assert_eq!(buf.len(), frame_len(seq));
            assert_eq!(check_frame(&buf), Ok(seq));
            let last = buf.len() - 1;
            buf[last] ^= 1;
            assert!(check_frame(&buf).is_err());
            assert!(check_frame(&buf[..last]).is_err());
        }
    }

    #[test]
    fn zero_seed_does_not_stick() {
        let mut r = Rng::new(0);
        assert_ne!(r.next_u64(), r.next_u64());
    }
}
