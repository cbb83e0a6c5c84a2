//! One module per command. Each takes its parsed arguments and returns the process exit code.

pub mod mcp;
pub mod prepare;
pub mod run;
pub mod serve;

/// The host failed (bad arguments, missing runtime, internal error): nothing ran.
pub const EXIT_INTERNAL: u8 = 2;
/// `run`: a limit (timeout, fuel, memory, output) stopped the program, like timeout(1).
pub const EXIT_LIMIT: u8 = 124;
/// `run`: the WebAssembly machine trapped (stack overflow, os.abort()).
pub const EXIT_TRAP: u8 = 125;

/// A multi-threaded runtime: guests yield at every epoch tick, so a few workers are enough.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
