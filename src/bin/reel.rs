//! The `reel` command-line client; its code lives in the `reel-cli` crate.

/// The same allocator as `reeld`: `reel load` and `reel record` pass every
/// event through the same gRPC layers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    reel_cli::main()
}
