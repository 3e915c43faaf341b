//! Prints what this host offers for netmap, and which backend a port would
//! get: `cargo run --example probe [PORT]` (default `netmap:eth0`).

fn main() {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "netmap:eth0".to_owned());
    print!("{}", netmap_rs::probe::probe_port(&name));
}
