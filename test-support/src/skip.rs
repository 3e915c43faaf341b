//! Tests that cannot run here say why, and CI cannot skip them.
//!
//! A test that needs what only some machines have (root and the `ip` tool
//! for network namespaces, the example binaries a whole `cargo test`
//! builds, the stub libnetmap that only the repository checkout has, not
//! the packaged crate) returns early through [`skip`], which prints the
//! reason where a normal `cargo test` run shows it. With `NETMAP_RS_CI` set
//! (as `.ci/run` sets it) [`skip`] panics instead, so a CI run cannot pass
//! by skipping.
//! Tests of the netmap kernel module skip on their own: CI has no module.

use std::io::Write;

/// Reports that `test` cannot run because of `why`: a line on stderr, or,
/// with `NETMAP_RS_CI` set, a panic.
pub fn skip(test: &str, why: &str) {
    if std::env::var_os("NETMAP_RS_CI").is_some() {
        panic!("{test}: cannot run ({why}) and NETMAP_RS_CI is set");
    }
    // Straight to stderr, not through `eprintln!`, which the test harness
    // captures: the reason must show in a normal `cargo test` run.
    let _ = writeln!(std::io::stderr(), "skipping {test}: {why}");
}
