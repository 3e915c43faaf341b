//! netmap's `vale-ctl` over `netmap_rs::vale`: the same flags and the same
//! output. `cargo run --example vale_ctl -- -n p0` creates a persistent
//! port, `-a vale0:p0` attaches it, no argument lists every switch's ports.
//! It needs the netmap kernel module.

#[path = "common/cli.rs"]
mod cli;

use std::ffi::OsString;
use std::process::ExitCode;

use lexopt::ValueExt;
use netmap_rs::vale::{self, Polling, PortConf};

const USAGE: &str = "\
usage: vale_ctl [-a|-h|-d|-n|-r|-l|-g|-p|-P NAME] [-C CONFIG] [-m MEMID] [-v]
  netmap's vale-ctl: control the VALE switches of the netmap kernel module.
  -g NAME        print port NAME's memory size, rings, slots and memory id (PORT_INFO_GET)
  -a vale0:NIC   attach NIC (or a persistent port) to switch vale0, its hardware rings only
  -h vale0:NIC   attach NIC to switch vale0 with its host stack (listed as vale0:NIC^)
  -d vale0:NIC   detach NIC from its switch (its host stack too)
  -n NAME        create the persistent VALE port NAME (an interface, until -r)
  -r NAME        delete the persistent VALE port NAME
  -l vale0:PORT  show the switch's and the port's indices (bridge_idx, port_idx)
  -p vale0:NIC   start the switch's kernel threads polling NIC; -C MODE,CPU[,COUNT] says how:
                 MODE 0: one thread on CPU polls every ring (COUNT must be 1 if given);
                 MODE 1: COUNT threads (default 1), ring CPU+i on CPU CPU+i
                 (vale-ctl sends a count of 0 for these, which the kernel refuses)
  -P vale0:NIC   stop polling NIC
  -C CONFIG      with -n or -a/-h: TX_SLOTS[,RX_SLOTS[,TX_RINGS[,RX_RINGS]]]
                 (RX_SLOTS defaults to TX_SLOTS, RX_RINGS to TX_RINGS; 0 or none: the
                 module's default); with -p: MODE,CPU[,COUNT] (default 0,0)
  -m MEMID       with -n or -a/-h: the memory region id to use (a number)
  -v             print the kernel's reply: port_index after -a/-h/-d, the port's rings and
                 slots after -n
  --help         this text
  with no arguments: list every switch's ports, one `NAME bridge_idx B port_idx P` line each
  an error is printed as `vale_ctl: failed to ACTION NAME: REASON` and exits 1";

/// What to do, and to what.
enum Action {
    Attach {
        name: String,
        host: bool,
        conf: PortConf,
    },
    Detach(String),
    New {
        name: String,
        conf: PortConf,
    },
    Delete(String),
    Lookup(String),
    PollOn {
        name: String,
        mode: Polling,
    },
    PollOff(String),
    Info(String),
    ListAll,
}

/// The action as the flags name it, before `-C` and `-m` are applied.
enum Flag {
    Attach { name: String, host: bool },
    New(String),
    PollOn(String),
    Other(Action),
}

struct Args {
    action: Action,
    verbose: bool,
}

/// `-C`'s value: up to four comma-separated numbers.
fn numbers(value: OsString) -> Result<Vec<u32>, lexopt::Error> {
    let text = value.string()?;
    let list: Option<Vec<u32>> = text.split(',').map(|n| n.parse().ok()).collect();
    match list {
        Some(list) if list.len() <= 4 => Ok(list),
        _ => Err(format!("-C takes up to four comma-separated numbers, not `{text}`").into()),
    }
}

/// The arguments, or `None` for `--help`.
fn parse_args(p: &mut lexopt::Parser) -> Result<Option<Args>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut flag = None;
    let mut config = Vec::new();
    let mut mem_id = 0;
    let mut verbose = false;
    let mut any = false;
    while let Some(arg) = p.next()? {
        any = true;
        let name = |p: &mut lexopt::Parser| p.value().and_then(|v| v.string());
        let other = |a| Some(Flag::Other(a));
        match arg {
            Short('a') => {
                flag = Some(Flag::Attach {
                    name: name(p)?,
                    host: false,
                })
            }
            Short('h') => {
                flag = Some(Flag::Attach {
                    name: name(p)?,
                    host: true,
                })
            }
            Short('d') => flag = other(Action::Detach(name(p)?)),
            Short('n') => flag = Some(Flag::New(name(p)?)),
            Short('r') => flag = other(Action::Delete(name(p)?)),
            Short('l') => flag = other(Action::Lookup(name(p)?)),
            Short('g') => flag = other(Action::Info(name(p)?)),
            Short('p') => flag = Some(Flag::PollOn(name(p)?)),
            Short('P') => flag = other(Action::PollOff(name(p)?)),
            Short('C') => config = numbers(p.value()?)?,
            Short('m') => {
                let text = p.value()?.string()?;
                mem_id = text
                    .parse()
                    .map_err(|_| format!("-m takes a memory region id (a number), not `{text}`"))?;
            }
            Short('v') => verbose = true,
            Long("help") => return Ok(None),
            _ => return Err(arg.unexpected()),
        }
    }
    let action = match flag {
        Some(Flag::Attach { name, host }) => Action::Attach {
            name,
            host,
            conf: port_conf(&config, mem_id)?,
        },
        Some(Flag::New(name)) => Action::New {
            name,
            conf: port_conf(&config, mem_id)?,
        },
        Some(Flag::PollOn(name)) => Action::PollOn {
            name,
            mode: polling(&config)?,
        },
        Some(Flag::Other(action)) => action,
        None if !any => Action::ListAll,
        None => return Err("no action given: one of -a -h -d -n -r -l -g -p -P".into()),
    };
    Ok(Some(Args { action, verbose }))
}

/// `-C` for -n and -a/-h, as vale-ctl's `parse_ring_config` reads it.
fn port_conf(config: &[u32], mem_id: u16) -> Result<PortConf, lexopt::Error> {
    let rings = |v: u32| u16::try_from(v).map_err(|_| format!("-C: {v} rings are too many"));
    let mut conf = PortConf::default();
    if let Some(&slots) = config.first() {
        conf.tx_slots = slots;
        conf.rx_slots = slots;
    }
    if let Some(&slots) = config.get(1) {
        conf.rx_slots = slots;
    }
    if let Some(&n) = config.get(2) {
        conf.tx_rings = rings(n)?;
        conf.rx_rings = conf.tx_rings;
    }
    if let Some(&n) = config.get(3) {
        conf.rx_rings = rings(n)?;
    }
    conf.mem_id = mem_id;
    Ok(conf)
}

/// `-C` for -p, as vale-ctl's `parse_poll_config` reads it.
fn polling(config: &[u32]) -> Result<Polling, lexopt::Error> {
    Ok(match *config {
        [] | [0] => Polling::SingleCpu { cpu: 0 },
        [0, cpu] | [0, cpu, 1] => Polling::SingleCpu { cpu },
        [0, _, _] => return Err("-C 0,CPU,COUNT: one CPU polls in mode 0, COUNT must be 1".into()),
        [_] => Polling::MultiCpu { first: 0, count: 1 },
        [_, first] => Polling::MultiCpu { first, count: 1 },
        [_, first, count] => Polling::MultiCpu { first, count },
        _ => return Err("-C with -p takes MODE,CPU[,COUNT]: too many numbers".into()),
    })
}

fn run(a: &Args) -> Result<(), (String, netmap_rs::Error)> {
    let fail = |what: &str, name: &str| {
        let what = format!("{what} {name}");
        move |e| (what, e)
    };
    match &a.action {
        Action::ListAll => {
            for p in vale::list_all().map_err(fail("list", "all"))? {
                println!("{} bridge_idx {} port_idx {}", p.name, p.bridge_idx, p.port_idx);
            }
        }
        Action::Lookup(name) => {
            let p = vale::lookup(name).map_err(fail("list", name))?;
            println!("bridge_idx: {}", p.bridge_idx);
            println!("port_idx:   {}", p.port_idx);
        }
        Action::Attach { name, host, conf } => {
            let index = vale::attach_with(name, *host, conf).map_err(fail("attach", name))?;
            if a.verbose {
                println!("port_index: {index}");
            }
        }
        Action::Detach(name) => {
            let index = vale::detach(name).map_err(fail("detach", name))?;
            if a.verbose {
                println!("port_index: {index}");
            }
        }
        Action::New { name, conf } => {
            let got = vale::new_port(name, conf).map_err(fail("create", name))?;
            if a.verbose {
                println!("tx_slots:   {}", got.tx_slots);
                println!("rx_slots:   {}", got.rx_slots);
                println!("tx_rings:   {}", got.tx_rings);
                println!("rx_ring:    {}", got.rx_rings);
                println!("mem_id:     {}", got.mem_id);
            }
        }
        Action::Delete(name) => vale::delete_port(name).map_err(fail("remove", name))?,
        Action::PollOn { name, mode } => {
            vale::polling_enable(name, *mode).map_err(fail("enable polling on", name))?
        }
        Action::PollOff(name) => vale::polling_disable(name).map_err(fail("disable polling on", name))?,
        Action::Info(name) => {
            // vale-ctl's lines, its missing colon after rx_rings included.
            let i = netmap_rs::info::port_info(name).map_err(fail("obtain info for", name))?;
            println!("memsize:    {}", i.memsize);
            println!("tx_slots:   {}", i.tx_slots);
            println!("rx_slots:   {}", i.rx_slots);
            println!("tx_rings:   {}", i.tx_rings);
            println!("rx_rings    {}", i.rx_rings);
            println!("mem_id:     {}", i.mem_id);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let a = match cli::parse("vale_ctl", USAGE, parse_args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err((what, e)) => {
            eprintln!("vale_ctl: failed to {what}: {e}");
            ExitCode::FAILURE
        }
    }
}
