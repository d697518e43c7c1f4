//! What should happen, decided without I/O: configuration, the traffic filter, the failsafe.
pub mod config;
pub mod failsafe;
pub mod filter;
