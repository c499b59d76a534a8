//! The engine's integration tests, one binary (each test file linking
//! RocksDB on its own cost half a GiB of disk and a link step apiece):
//! in-process engines on real files, a real RocksDB catalog and real local
//! directory stores, most behind the fault-injecting wrapper. The
//! failpoint tests are apart (`tests/failpoints.rs`): failpoints are
//! process-wide.

mod common;

mod compaction;
mod hostile_input;
mod lifecycle;
mod purge;
mod reading;
mod routing;
mod verify;
