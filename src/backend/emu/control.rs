//! The control requests that make sense on the embedded VALE switches:
//! listing a switch's ports, looking one up, and making and deleting
//! persistent ports (ports that stay without users, as the module's
//! `vale-ctl -n` ports do, and keep their region's file while they exist).

use std::io;
use std::sync::Arc;

use super::emu;
use super::pipe::{self, Kind, Pipe};
use super::region::{h, p, Region};
use super::registry::{pipe_shape, vale_parts};
use super::shm::Guard;
use crate::backend::{errno, lock};
use crate::ffi::nmreq_register;

/// The region of switch `switch` (`valeX`).
fn switch(switch: &str) -> io::Result<Arc<Region>> {
    if vale_parts(&format!("{switch}:x")).is_none() {
        return Err(errno(libc::EINVAL));
    }
    lock(&emu().registry).region(switch)
}

/// `(switch, port)` of `valeX:PORT`.
fn parts(port: &str) -> io::Result<(&str, &str)> {
    match vale_parts(port) {
        Some((_, "")) | None => Err(errno(libc::EINVAL)),
        Some(parts) => Ok(parts),
    }
}

/// The name of pipe record `r`.
fn name_of(region: &Region, slot: u32) -> String {
    let r = region.pipe_rec(slot);
    let len = (r.get(p::NAME_LEN) as usize).min(p::NAME_BYTES);
    let bytes: Vec<u8> = (0..len)
        .map(|i| r.get(p::NAME + i / 4).to_le_bytes()[i % 4])
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The ports of switch `name` (`valeX`): `(port name, port index)`, in
/// index order (the index is the port's record slot).
pub(crate) fn list(name: &str) -> io::Result<Vec<(String, u32)>> {
    let region = switch(name)?;
    let _g = region.lock()?;
    Ok(region
        .live_pipes()
        .filter(|&s| region.pipe_rec(s).get(p::KIND) == Kind::Vale as u32)
        .map(|s| (name_of(&region, s), s))
        .collect())
}

/// The record of port `port` of its switch, under `g`.
fn find(region: &Region, g: &Guard<'_>, port: &str) -> io::Result<u32> {
    pipe::find(region, g, port, Kind::Vale).ok_or_else(|| errno(libc::ENOENT))
}

/// The index of port `valeX:PORT` in its switch; `ENOENT` if there is none.
pub(crate) fn lookup(name: &str) -> io::Result<u32> {
    let (sw, port) = parts(name)?;
    let region = switch(sw)?;
    let g = region.lock()?;
    find(&region, &g, port)
}

/// Makes `valeX:PORT` a persistent port of its switch, of `rings` ring
/// pairs of `slots` slots (0: the defaults); `EEXIST` if the switch has a
/// port of that name. Returns the shape it got and its memory id.
pub(crate) fn new_port(name: &str, rings: u16, slots: u32) -> io::Result<(u16, u32, u16)> {
    let (sw, port) = parts(name)?;
    let region = switch(sw)?;
    let g = region.lock()?;
    if find(&region, &g, port).is_ok() {
        return Err(errno(libc::EEXIST));
    }
    let req = nmreq_register {
        nr_tx_rings: rings,
        nr_rx_rings: rings,
        nr_tx_slots: slots,
        nr_rx_slots: slots,
        ..Default::default()
    };
    let (rings, slots) = pipe_shape(&req);
    let pipe = Pipe::create(&region, &g, port, Kind::Vale, rings, slots)?;
    region.pipe_rec(pipe.slot).set(p::PERSIST, 1);
    Ok((rings as u16, slots, region.mem_id))
}

/// Deletes persistent port `valeX:PORT`: `ENOENT` if there is none,
/// `EBUSY` while a process has it open, `EINVAL` for a port that is not
/// persistent (it goes when its last user closes it).
pub(crate) fn delete_port(name: &str) -> io::Result<()> {
    let (sw, port) = parts(name)?;
    let region = switch(sw)?;
    let g = region.lock()?;
    region.reclaim(&g);
    let slot = find(&region, &g, port)?;
    let r = region.pipe_rec(slot);
    if r.get(p::PERSIST) == 0 {
        return Err(errno(libc::EINVAL));
    }
    if region
        .live_handles()
        .any(|i| region.handle(i).get(h::PIPE) == slot)
    {
        return Err(errno(libc::EBUSY));
    }
    r.set(p::PERSIST, 0);
    pipe::free_if_unused(&region, &g, slot);
    Ok(())
}
