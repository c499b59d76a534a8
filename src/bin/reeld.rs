//! The `reeld` server; its code lives in the `reel-server` crate.
fn main() -> std::process::ExitCode {
    reel_server::main()
}
