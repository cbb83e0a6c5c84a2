//! `omcp-sandbox prepare`: verify python.wasm and fill the compile cache (used by the Docker
//! build and by test harnesses so that no server start pays for compiling).

use std::process::ExitCode;

use crate::cli::PrepareArgs;
use crate::limits::Limits;
use crate::sandbox::Sandbox;

pub fn main(args: PrepareArgs) -> anyhow::Result<ExitCode> {
    let sandbox = Sandbox::load(args.runtime.sandbox_options(Limits::default()))?;
    let info = sandbox.info();
    println!(
        "python.wasm {:?} (sha256 {}) ready: module from {:?} in {} ms",
        info.python_wasm,
        info.sha256,
        info.module_source,
        info.load_time.as_millis()
    );
    Ok(ExitCode::SUCCESS)
}
