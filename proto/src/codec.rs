//! The gRPC codec of the ingest service: prost, with small per-stream
//! buffers.
//!
//! tonic's default codec gives every stream an 8 KiB receive buffer and an
//! 8 KiB send buffer, allocated when the stream opens and kept while it is
//! open. An ingest stream carries small messages (a burst of terminal
//! output, an acknowledgement) for hours, and one server holds thousands of
//! them: at 10,000 streams the default buffers alone are 160 MiB, all of
//! it paged in while the recorders connect. The buffers here start at
//! 1 KiB; a larger message grows its buffer as it would under the default.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// The initial size of a stream's receive and send buffers.
pub const STREAM_BUFFER_BYTES: usize = 1024;
/// A send buffer holding this much is handed to the transport as one frame
/// before more messages are added (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// A prost codec whose streams start with [`STREAM_BUFFER_BYTES`] buffers.
#[derive(Debug)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        LeanCodec(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(STREAM_BUFFER_BYTES, YIELD_THRESHOLD)
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
