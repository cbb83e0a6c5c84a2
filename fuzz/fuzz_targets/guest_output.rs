//! Fuzz target: what a hostile guest writes to stdout/stderr, split into the program's
//! output and the driver's envelope ([`Captured`]), then turned into the answer
//! ([`assemble`]) and encoded as the JSON a client receives.
//!
//! Input format (so seeds can be written by hand, see `seeds/guest_output/`):
//! `[budget/4] [envelope cap/8] [how the run ended] [exit status]` then writes separated by
//! 0xFF (a byte that never occurs in UTF-8 text). A write starting with `e` goes to stderr;
//! one that is exactly `M` is the driver's marker; `D` and one byte N is a display item's
//! header (the marker, `D`, N in ten digits); anything else goes to stdout.
//!
//! Properties: nothing panics; the program's output never exceeds the budget; once a write
//! is refused the run is over and `truncated` says so; the envelope never exceeds its cap;
//! a stopped run always carries a stop reason and an error; display items kept fit the same
//! budget as the output, come in order within it, and never exceed their cap; and the
//! answer always encodes to JSON and decodes back to the same answer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use omcp_sandbox::api::RunResponse;
use omcp_sandbox::outcome::{Captured, Channel, Ended, MAX_DISPLAYS, Quoted, Stop, assemble};

const MARKER: &[u8] = b"0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let [budget, cap, how, status, rest @ ..] = data else {
        return;
    };
    let budget = *budget as usize * 4;
    let cap = *cap as usize * 8;
    let mut captured = Captured::new(MARKER.to_vec(), budget, cap);
    let mut refused = false;
    for write in rest.split(|&b| b == 0xFF) {
        let header: Vec<u8>;
        let (channel, bytes) = match write {
            [b'e', tail @ ..] => (Channel::Stderr, tail),
            b"M" => (Channel::Stdout, MARKER),
            [b'D', n] => {
                header = [MARKER, format!("D{:010}", n).as_bytes()].concat();
                (Channel::Stdout, header.as_slice())
            }
            _ => (Channel::Stdout, write),
        };
        if captured.write(channel, bytes).is_err() {
            refused = true;
            break; // the guest traps on a refused write
        }
    }
    let kept: usize = captured
        .shown
        .iter()
        .filter_map(|s| s.body.as_ref().ok())
        .map(Vec::len)
        .sum();
    assert!(captured.stdout.len() + captured.stderr.len() + kept <= budget);
    assert!(captured.shown.len() <= MAX_DISPLAYS);
    assert!(captured.shown.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(refused, captured.overflowed);
    assert!(captured.envelope.as_ref().is_none_or(|e| e.len() <= cap));

    let memory_refused = how & 0x80 != 0;
    let ended = match how & 0x7F {
        0 => Ended::Exited(0),
        1 => Ended::Exited(125),
        2 => Ended::Exited(*status as i32),
        3 => Ended::Stopped(Stop::Timeout, None),
        4 => Ended::Stopped(Stop::Fuel, None),
        5 => Ended::Stopped(Stop::Memory, Some("detail".into())),
        6 => Ended::Stopped(Stop::Trap, Some("wasm trap: unreachable".into())),
        _ => Ended::Stopped(Stop::Exit, None),
    };
    let stopped_by_host = matches!(ended, Ended::Stopped(..));
    let limits = Quoted {
        timeout_ms: 1000,
        fuel: 1,
        memory_mb: 1,
        max_output_bytes: budget,
    };
    let outcome = assemble(&captured, ended, memory_refused, limits);
    if captured.shown.is_empty() {
        assert_eq!(outcome.output, String::from_utf8_lossy(&captured.stdout));
    }
    let chars = outcome.output.chars().count();
    assert!(outcome.displays.len() <= MAX_DISPLAYS + 1);
    assert!(
        outcome
            .displays
            .windows(2)
            .all(|w| w[0].output_offset() <= w[1].output_offset())
    );
    assert!(outcome.displays.iter().all(|d| d.output_offset() <= chars));
    let shown = outcome.in_order();
    let replayed: String = shown
        .pieces
        .iter()
        .filter_map(|p| match p {
            omcp_sandbox::outcome::Piece::Output(text) => Some(*text),
            _ => None,
        })
        .chain([shown.rest])
        .collect();
    assert_eq!(replayed, outcome.output);
    if stopped_by_host {
        assert!(outcome.stopped.is_some() && outcome.error.is_some());
        assert!(outcome.exit_code.is_none());
        if refused {
            assert_eq!(outcome.stopped, Some(Stop::Output));
        }
    }
    if refused {
        assert!(outcome.truncated);
    }

    let answer = RunResponse::from(outcome);
    let json = serde_json::to_vec(&answer).expect("an answer always encodes");
    let back: RunResponse = serde_json::from_slice(&json).expect("and decodes");
    assert_eq!(back.output, answer.output);
    assert_eq!(back.error, answer.error);
    assert_eq!(back.result, answer.result);
    assert_eq!(back.stopped, answer.stopped);
    assert_eq!(back.displays, answer.displays);
});
