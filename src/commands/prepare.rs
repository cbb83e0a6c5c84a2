//! `omcp-sandbox prepare`: verify the runtimes and fill the compile cache (modules, snapshots) (used by the Docker
//! build and by test harnesses so that no server start pays for compiling).

use std::process::ExitCode;

use crate::cli::PrepareArgs;
use crate::limits::Limits;
use crate::sandbox::Sandbox;

pub fn main(args: PrepareArgs) -> anyhow::Result<ExitCode> {
    let sandbox = Sandbox::load(args.runtime.sandbox_options(Limits::default()))?;
    for info in sandbox.runtimes() {
        println!(
            "{}: {:?} (sha256 {}) ready, {} start: module from {:?} in {} ms",
            info.name,
            info.python_wasm,
            info.sha256,
            info.start_mode.as_str(),
            info.module_source,
            info.load_time.as_millis()
        );
    }
    Ok(ExitCode::SUCCESS)
}
