//! Seeded runs: with a `seed`, everything the guest can read that would differ between two
//! runs comes from that seed instead. WASI's random source (behind `os.urandom`, `uuid4`,
//! `secrets`, numpy's `default_rng()` and the per-run reseed of numpy's global generator),
//! the words the host writes into `random`'s Mersenne Twister, and the two clocks, which
//! start at a fixed instant and advance by a fixed step per reading. The same code, stdin,
//! seed and runtime build then give the same bytes on any machine.
//!
//! The string hash seed is frozen in a snapshot; snapshots are built seeded too (see
//! `SNAPSHOT_SEED`), so it is the same on every machine for one runtime build and driver.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// The seed a snapshot is built with: its hash secret and every address in it then depend
/// only on the runtime and the driver.
pub const SNAPSHOT_SEED: u64 = 0x6f6d_6370_736e_6170;

/// Where a seeded run's wall clock starts: 2025-01-01T00:00:00Z.
const EPOCH_START: Duration = Duration::from_secs(1_735_689_600);
/// How far each reading of a seeded clock advances it: code that waits for the clock to
/// move (a timing loop) still ends, and two readings never compare equal.
const CLOCK_STEP: Duration = Duration::from_micros(1);

/// Distinct streams drawn from one seed, so no two consumers see the same bytes.
const STREAM_WASI: u64 = 1;
const STREAM_WASI_INSECURE: u64 = 2;
const STREAM_MT: u64 = 3;

#[derive(Debug, Clone, Copy)]
pub struct Seeded(u64);

impl Seeded {
    pub fn new(seed: u64) -> Seeded {
        Seeded(seed)
    }

    fn stream(&self, which: u64) -> StdRng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.0.to_le_bytes());
        key[8..16].copy_from_slice(&which.to_le_bytes());
        key[16..].copy_from_slice(b"omcp-sandbox/rng");
        StdRng::from_seed(key)
    }

    /// Give the WASI context seeded randomness and clocks.
    pub fn configure(&self, builder: &mut WasiCtxBuilder) {
        let insecure_seed = self.stream(STREAM_WASI_INSECURE).next_u64();
        builder
            .secure_random(self.stream(STREAM_WASI))
            .insecure_random(self.stream(STREAM_WASI_INSECURE))
            .insecure_random_seed(u128::from(insecure_seed))
            .wall_clock(SteppingClock::new(EPOCH_START))
            .monotonic_clock(SteppingClock::new(Duration::ZERO));
    }

    /// Fill `words` (the Mersenne Twister state the host writes) from the seed.
    pub fn fill(&self, bytes: &mut [u8]) {
        self.stream(STREAM_MT).fill_bytes(bytes);
    }
}

/// A clock that starts at `start` and moves `CLOCK_STEP` forward at every reading.
struct SteppingClock {
    start: Duration,
    readings: AtomicU64,
}

impl SteppingClock {
    fn new(start: Duration) -> SteppingClock {
        SteppingClock {
            start,
            readings: AtomicU64::new(0),
        }
    }

    fn read(&self) -> Duration {
        let n = self.readings.fetch_add(1, Ordering::Relaxed);
        self.start + CLOCK_STEP * u32::try_from(n).unwrap_or(u32::MAX)
    }
}

impl HostWallClock for SteppingClock {
    fn resolution(&self) -> Duration {
        CLOCK_STEP
    }

    fn now(&self) -> Duration {
        self.read()
    }
}

impl HostMonotonicClock for SteppingClock {
    fn resolution(&self) -> u64 {
        CLOCK_STEP.as_nanos() as u64
    }

    fn now(&self) -> u64 {
        self.read().as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_one_stream_and_clocks_step() {
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        Seeded::new(7).fill(&mut a);
        Seeded::new(7).fill(&mut b);
        assert_eq!(a, b);
        Seeded::new(8).fill(&mut b);
        assert_ne!(a, b);
        let clock = SteppingClock::new(EPOCH_START);
        let first = HostWallClock::now(&clock);
        assert_eq!(first, EPOCH_START);
        assert_eq!(HostWallClock::now(&clock), EPOCH_START + CLOCK_STEP);
    }
}
