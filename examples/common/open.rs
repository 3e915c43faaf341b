//! Opening a port the way the command-line examples do: with the AF_PACKET
//! fallback and promiscuous mode when the flags ask, and a note of why a
//! port fell back.

use netmap_rs::prelude::*;
use netmap_rs::Fallback;

/// Opens `name`, allowing the AF_PACKET fallback if `fallback`.
pub fn open(name: &str, fallback: bool, promisc: bool) -> Result<Netmap, Error> {
    builder(name, fallback, promisc).build()
}

/// The builder [`open`] uses, for callers that set more (rings, slots) or
/// open one port per ring.
pub fn builder(name: &str, fallback: bool, promisc: bool) -> NetmapBuilder {
    let fallback = if fallback {
        Fallback::AfPacket
    } else {
        Fallback::None
    };
    NetmapBuilder::new(name).fallback(fallback).promiscuous(promisc)
}

/// ` (fallback: why netmap could not serve it)` for a port on the fallback,
/// else nothing.
pub fn fallback_note(port: &Netmap) -> String {
    if !port.is_fallback() {
        return String::new();
    }
    let reasons: Vec<String> = port
        .refusals()
        .iter()
        .filter(|r| r.backend != BackendKind::Emulated)
        .map(|r| r.to_string())
        .collect();
    format!(" (fallback: {})", reasons.join("; "))
}
