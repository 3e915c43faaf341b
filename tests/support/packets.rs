//! Helpers shared by the packet tests: a reproducible generator, a
//! checksum, and embedded pipe pairs.
// Each test file uses the part it needs.
#![allow(dead_code)]

use netmap_rs::prelude::*;

/// A small deterministic generator (xorshift64*), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// FNV-1a over `data`.
pub fn fnv1a(data: &[u8]) -> u32 {
    data.iter()
        .fold(0x811c_9dc5u32, |h, &b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

/// The master (`{1`) and slave (`}1`) ends of an embedded pipe; `slots`
/// sets the ring size.
pub fn pair(name: &str, slots: u32) -> (Netmap, Netmap) {
    let a = NetmapBuilder::new(&format!("emu:{name}{{1"))
        .num_slots(slots)
        .build()
        .unwrap();
    let b = NetmapBuilder::new(&format!("emu:{name}}}1")).build().unwrap();
    (a, b)
}
