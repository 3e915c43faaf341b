//! Prints what this host offers for netmap, and which backend a port would
//! get: `cargo run --example probe -- [PORT] [--fallback]` (default
//! `netmap:eth0`; `--fallback` asks as a program that allows the fallbacks, AF_XDP then
//! AF_PACKET, would).

#[path = "common/cli.rs"]
mod cli;

use std::process::ExitCode;

use netmap_rs::Fallback;

const USAGE: &str = "\
usage: probe [PORT] [--fallback]
  PORT         the port to ask about, in netmap's names: eth0, netmap:eth0^, vale0:p1,
               emu:x{1, ... (default netmap:eth0)
  --fallback   ask as a program that allows the fallbacks (AF_XDP, then AF_PACKET) would
  -h, --help   this text";

struct Args {
    name: String,
    fallback: Fallback,
}

/// The arguments, or `None` for `--help`.
fn parse_args(p: &mut lexopt::Parser) -> Result<Option<Args>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut name = None;
    let mut fallback = Fallback::None;
    while let Some(arg) = p.next()? {
        match arg {
            Long("fallback") => fallback = Fallback::Any,
            Short('h') | Long("help") => return Ok(None),
            Value(port) if name.is_none() => name = Some(port.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Some(Args {
        name: name.unwrap_or_else(|| "netmap:eth0".to_owned()),
        fallback,
    }))
}

fn main() -> ExitCode {
    let a = match cli::parse("probe", USAGE, parse_args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    print!("{}", netmap_rs::probe::probe_port_with(&a.name, a.fallback));
    ExitCode::SUCCESS
}
