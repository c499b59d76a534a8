//! The `reel` command-line client; its code lives in the `reel-cli` crate.

/// The same allocator as `reeld`: `reel load` and `reel record` pass every
/// event through the same gRPC layers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`, which the Rust bindings do not name: in
/// mimalloc's `mi_option_t` it comes just before `mi_option_use_numa_nodes`.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t =
    libmimalloc_sys::mi_option_use_numa_nodes - 1;

fn main() -> std::process::ExitCode {
    // Memory `reel` frees is kept for reuse until it exits rather than
    // given back to the system a second later. A client's runs are short
    // or small; `reel load` at 10,000 recordings frees and reuses buffers
    // all along, and giving them back meant faulting them in again, zeroed
    // (about a tenth of its CPU, BENCHMARKS.md "The load generator's own
    // CPU"): CPU it takes from the server it shares a machine with.
    // SAFETY: before any other thread exists (mimalloc's options are not
    // thread safe); -1 is the value mimalloc documents as "never purge".
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    reel_cli::main()
}
