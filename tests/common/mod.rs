//! What several test files share and the published test-support crate
//! cannot hold (it depends on no netmap crate, so that netmap-rs can
//! dev-depend on it).

use netmap_rs::prelude::*;

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
