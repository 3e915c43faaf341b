//! Opening a port the way the command-line examples do: with the fallbacks
//! (AF_XDP, then AF_PACKET) and promiscuous mode when the flags ask, and a
//! note of how an AF_XDP port runs and why a port fell back.

use netmap_rs::prelude::*;
use netmap_rs::Fallback;

/// Opens `name`, allowing the fallbacks (AF_XDP, then AF_PACKET) if
/// `fallback`.
pub fn open(name: &str, fallback: bool, promisc: bool) -> Result<Netmap, Error> {
    builder(name, fallback, promisc).build()
}

/// The builder [`open`] uses, for callers that set more (rings, slots) or
/// open one port per ring.
pub fn builder(name: &str, fallback: bool, promisc: bool) -> NetmapBuilder {
    let fallback = if fallback { Fallback::Any } else { Fallback::None };
    NetmapBuilder::new(name).fallback(fallback).promiscuous(promisc)
}

/// ` (native XDP, copy mode)` and the like for an AF_XDP port, and `
/// (fallback: why netmap could not serve it)` for a port on a fallback;
/// else nothing.
pub fn fallback_note(port: &Netmap) -> String {
    let mode = match port.xdp_mode() {
        Some(netmap_rs::XdpMode::ZeroCopy) => " (native XDP, zero-copy)",
        Some(netmap_rs::XdpMode::Native) => " (native XDP, copy mode)",
        Some(netmap_rs::XdpMode::Generic) => " (generic XDP, copy mode)",
        _ => "",
    };
    if !port.is_fallback() {
        return mode.to_owned();
    }
    let reasons: Vec<String> = port
        .refusals()
        .iter()
        .filter(|r| r.backend != BackendKind::Emulated)
        .map(|r| r.to_string())
        .collect();
    format!("{mode} (fallback: {})", reasons.join("; "))
}
