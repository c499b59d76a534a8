//! The engine's integration tests, one binary (each test file linking
//! RocksDB on its own cost half a GiB of disk and a link step apiece):
//! in-process engines on real files, a real RocksDB catalog and real local
//! directory stores, most behind the fault-injecting wrapper, and each
//! engine with its own clock and failpoints (`EngineConfig::clock`,
//! `EngineConfig::failpoints`), so that all of them run in parallel.
// The tests time what a user would, on the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;

mod cache;
mod compaction;
mod hostile_input;
mod lifecycle;
mod mirror;
mod purge;
mod reading;
mod routing;
mod verify;
