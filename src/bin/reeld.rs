//! The `reeld` server; its code lives in the `reel-server` crate.

/// mimalloc rather than glibc's allocator: every ingested event allocates
/// and frees a few small buffers on several threads (gRPC decode, sealing,
/// the journal's completion), where glibc's arenas contend (BENCHMARKS.md,
/// "An allocator for the binaries").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    reel_server::main()
}
