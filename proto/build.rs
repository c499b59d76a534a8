//! Compiles the protos with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "reel/v1/recording.proto",
        "reel/v1/ingest.proto",
        "reel/v1/storage.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    // Streams start with small buffers (src/codec.rs): an ingest stream is
    // long-lived and carries small messages.
    tonic_prost_build::configure()
        .codec_path("crate::codec::LeanCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
