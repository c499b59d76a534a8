//! Reel's wire and on-disk messages, generated from `reel/v1/*.proto`.
//!
//! - [`v1::ingest_server`] / [`v1::ingest_client`]: the gRPC ingest service.
//! - [`v1::Event`], [`v1::RecordingMetadata`]: what recorders send.
//! - [`RecordingId`]: the id of a recording, parsed strictly.
//! - [`v1::JournalEntry`], [`v1::SegmentHeader`], [`v1::RecordingRow`],
//!   [`v1::SegmentRow`]: what Reel writes to its journal, its stores and its
//!   catalog. Field numbers are part of the on-disk format.

pub mod codec;
mod id;

pub use id::{InvalidId, RecordingId};

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("reel.v1");
}
