//! Prints what this host offers for netmap, and which backend a port would
//! get: `cargo run --example probe [PORT] [--fallback]` (default
//! `netmap:eth0`; `--fallback` asks as a program that allows AF_PACKET would).

use netmap_rs::Fallback;

fn main() {
    let mut name = "netmap:eth0".to_owned();
    let mut fallback = Fallback::None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--fallback" => fallback = Fallback::AfPacket,
            _ => name = arg,
        }
    }
    print!("{}", netmap_rs::probe::probe_port_with(&name, fallback));
}
