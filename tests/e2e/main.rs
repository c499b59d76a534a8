//! Reel end to end, one binary (each test file linking RocksDB on its own
//! cost half a GiB of disk and a link step apiece): real `reeld` and `reel`
//! processes, real Garage S3 servers started as plain processes, real
//! files, processes killed for real. The long-haul runs are apart, each
//! alone in its binary so that no other test shares the machine with them
//! while they measure: `tests/torture.rs` (kill -9 at random moments) and
//! `tests/soak.rs` (steady load, growth checked).

mod access;
mod archive;
mod at_rest;
mod bad_input;
mod evidence;
mod failover;
mod keys;
mod purge;
mod reading;
mod recombination;
mod roundtrip;
mod tls;
mod verify;
