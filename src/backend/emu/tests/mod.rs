//! Tests of the embedded kernel, through the same requests and ring accesses
//! a C netmap program makes ([`client`]).

mod binding;
mod client;
mod procs;
mod readiness;
mod rings;
mod switch;
