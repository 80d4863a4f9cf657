//! Integration tests: the `keywatch` binary and library end to end, as a
//! user would drive them. One test crate, so it links once.

mod access;
mod alerts;
mod alloc;
mod cli;
mod console;
mod durability;
mod eval;
mod gate;
mod helpers;
mod hostile;
mod http;
mod instances;
mod inventory;
mod kafka;
mod lifecycle;
mod netintel;
mod prometheus;
mod providers;
mod replay;
mod scaleout;
mod scenario;
mod stratus;
mod tansu;
mod triage;
