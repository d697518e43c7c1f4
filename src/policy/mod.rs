//! What should happen: configuration (its source, `source`; its parsing, without I/O,
//! `config`), the traffic filter, the failsafe.
pub mod config;
pub mod failsafe;
pub mod filter;
pub mod source;
