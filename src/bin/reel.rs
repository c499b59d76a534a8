//! The `reel` command-line client; its code lives in the `reel-cli` crate.
fn main() -> std::process::ExitCode {
    reel_cli::main()
}
