//! `libnetmap.so`, loaded at run time, and the ports opened through it.
//!
//! # Finding the library
//!
//! The library is looked up once per process ([`load`]): the path in the
//! `NETMAP_LIBRARY` environment variable if it is set (and then only that
//! path), else the names in [`DEFAULT_NAMES`] in order. A name that cannot be
//! opened moves the search on to the next one; a library that opens but lacks
//! a required entry point ends the search and names the symbol, since a later
//! name is unlikely to be a better libnetmap than the first one found.
//!
//! [`LibNetmap`] owns the library handle together with plain function
//! pointers copied out of it, so the pointers can never outlive the code they
//! point into. The library is opened with `RTLD_NOW | RTLD_LOCAL`: every
//! undefined symbol is resolved at load time (a broken library fails here,
//! not at its first call), and its symbols do not leak into the global
//! namespace. A path is first checked to be a regular file (the loader would
//! block forever reading a FIFO) and not an ELF file cut short, on which
//! glibc's loader would crash the process instead of failing.
//!
//! Required: `nmport_open`, `nmport_close`, `nmport_prepare`,
//! `nmport_open_desc`, `nmport_undo_prepare`, `nmport_inject`. Optional, each
//! needed only by one feature: `nmport_extmem` ([`NetmapBuilder::extmem`]),
//! `nmport_offset` ([`NetmapBuilder::offsets`]), `nmctx_get` (capturing the
//! messages of `nmport_prepare`). `nmport_open` itself is never called (ports
//! open in its two steps, with the builder's settings applied between them),
//! but a library without it is no libnetmap.
//!
//! # Opening a port
//!
//! [`open`] gives `nmport_prepare` the port's name exactly as the user wrote
//! it (normalized with a `netmap:` prefix), so the site's library parses it
//! with its own grammar and options; what the builder set beyond the name
//! (ring counts, ring selection, flags, offsets, external memory) is written
//! into the prepared descriptor before `nmport_open_desc`. The registered
//! descriptor then yields what the raw kernel path computes itself: the fd,
//! the `netmap_if`, the memory region (`mem`), the register reply (`reg`) and
//! the first/last TX and RX ring ids. `nmport_close` undoes it all when the
//! port drops; libnetmap shares one mapping between the ports of one memory
//! region and unmaps it with the last of them.
//!
//! # Sync and poll: the library's own `ioctl` and `poll`
//!
//! libnetmap has no sync or poll entry points: its users call
//! `ioctl(d->fd, NIOCTXSYNC)` and `poll(d->fd)` themselves. So do ports opened
//! here, through the `ioctl` and `poll` of the library's namespace: if the
//! library *defines* `ioctl`/`poll` itself (a libnetmap built over another
//! netmap implementation, such as a user-space one, brings its own), those are
//! used for its ports; otherwise (every libnetmap built over the kernel) the C
//! library's, bound exactly as the library's own calls are. The check is
//! `dladdr`: a symbol counts as the library's own only if it lies inside the
//! library's object.
//!
//! # Threads and error messages
//!
//! libnetmap keeps process-global state: its default context (`nmctx`), with
//! an error callback that prints to stderr and a list of mapped regions. This
//! crate serializes every libnetmap call sequence it makes (prepare, the
//! options, open; close; inject) with one process-wide mutex of its own, so
//! ports may be opened and closed from many threads at once whatever the
//! library was built with. It does not call `nmctx_set_threadsafe`: upstream
//! that function runs as a constructor when the library loads, and running it
//! again would re-initialize a mutex that may be held. Within each sequence the
//! context's error callback is pointed at a function that records each message
//! for the calling thread (and restored afterwards), so a failure's [`Error`]
//! carries the library's own words instead of a line on stderr.
//!
//! [`load`]: fn@load
//! [`open`]: fn@open
//! [`DEFAULT_NAMES`]: load::DEFAULT_NAMES
//! [`Error`]: crate::Error
//! [`NetmapBuilder::extmem`]: crate::NetmapBuilder::extmem
//! [`NetmapBuilder::offsets`]: crate::NetmapBuilder::offsets

mod call;
mod elf;
mod load;
mod open;
mod port;
#[cfg(test)]
mod tests;

pub(crate) use load::{load, LibNetmap};
pub(crate) use open::open;
