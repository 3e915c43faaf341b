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
    fn zero_seed_does_not_stick() {
        let mut r = Rng::new(0);
        assert_ne!(r.next_u64(), r.next_u64());
    }
}
