//! The connection model (`sim`) over random runs, on stable Rust in `cargo test`, in the
//! style of `http::fuzz_driver`: a seeded xorshift PRNG picks per run the proxy's
//! behaviour on each connection it gets (accept, refuse, refuse late, hang up, reset,
//! close, x-lunar-error, retry, at a random request), the filter's verdicts, one to four
//! requests with random bodies, the most bytes one send takes, and an interleaving of the
//! program's calls: writes of random chunks, reads of random sizes (before it wrote too),
//! hang-ups seen by poll, SO_ERROR reads. Every run must keep `sim::tests::check`'s
//! invariants. `LUNAR_FUZZ_ITERATIONS` sets the number of runs (`make fuzz` raises it),
//! `LUNAR_FUZZ_SEED` the seed; a failing run prints both, with the run's index.

use super::decide::{Action, Event};
use super::sim::tests::{check, Expect};
use super::sim::{Mode, Sim};
use super::state::{tests::proxy, Phase};
use crate::http::fuzz_driver::{env_u64, Rng};
use crate::runtime::Route;
use std::time::Instant;

/// Runs when `LUNAR_FUZZ_ITERATIONS` is not set: about two seconds in a release build.
const DEFAULT_ITERATIONS: u64 = 200_000;
const DEFAULT_SEED: u64 = 0x4c75_6e61_7253_696d; // "LunarSim"

fn request(rng: &mut Rng, i: usize) -> Vec<u8> {
    let method = ["GET", "POST", "PUT", "DELETE"][rng.below(4)];
    let mut head = format!("{method} /r{i} HTTP/1.1\r\nHost: origin.test\r\n");
    if method == "GET" && rng.chance(50) {
        return format!("{head}\r\n").into_bytes();
    }
    let body: Vec<u8> = (0..rng.below(40))
        .map(|_| b'a' + rng.below(26) as u8)
        .collect();
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    [head.into_bytes(), body].concat()
}

fn mode(rng: &mut Rng, retries: &mut usize) -> Mode {
    let at = rng.below(4);
    match rng.below(10) {
        0 => Mode::Refuse,
        1 => Mode::RefuseLate,
        2 => Mode::HangUp,
        3 => Mode::ResetAt(at),
        4 => Mode::CloseAt(at),
        5 => Mode::LunarErrorAt(at),
        // At most two retries asked in a run: within LUNAR_RETRY_MAX_ATTEMPTS.
        6 if *retries < 2 => {
            *retries += 1;
            Mode::RetryAt(at)
        }
        _ => Mode::Accept,
    }
}

/// A run whose write failed: only a proxy failure that could not be hidden may fail it,
/// and nothing of Lunar's reached the origin. Returns false (not a run that completed).
fn failed_write(sim: &Sim, errno: i32) -> bool {
    let why = format!("errno {errno}: {:?} {:?}", sim.phases, sim.actions);
    assert!(matches!(errno, libc::ECONNRESET | libc::EPIPE), "{why}");
    let unhideable = |(event, action): &(Event, Action)| {
        matches!(
            (event, action),
            (
                Event::SendFailed { .. },
                Action::Unhideable { counted: true }
            )
        )
    };
    // That failure, or the program writing on after it was told part of its write went.
    assert!(sim.actions.iter().any(unhideable), "{why}");
    assert!(
        matches!(
            sim.actions.last(),
            Some((
                Event::SendFailed { .. },
                Action::Unhideable { .. } | Action::Report(_)
            ))
        ),
        "{why}"
    );
    for peer in sim.peers.iter().filter(|peer| !peer.is_proxy) {
        assert!(!super::sim::contains(&peer.got, b"x-lunar-"), "{why}");
    }
    false
}

/// One random run; panics when an invariant breaks. False: the program's write failed
/// (`failed_write`), so the run was not checked to its end.
fn one_run(rng: &mut Rng) -> bool {
    let mut retries = 0;
    let mut scripts: Vec<Mode> = (0..1 + rng.below(3))
        .map(|_| mode(rng, &mut retries))
        .collect();
    // A proxy that fails the retry's own resend is not hidden (recovery::start reports
    // it, Started::Failed): the connection after a retry accepts.
    for i in 1..scripts.len() {
        if matches!(scripts[i - 1], Mode::RetryAt(_)) && !matches!(scripts[i], Mode::RetryAt(_)) {
            scripts[i] = Mode::Accept;
        }
    }
    let diverted = rng.chance(85);
    let wanted = match rng.below(6) {
        0 => Some(Route::Origin),
        1 => Some(Route::Proxy(proxy())),
        _ => None,
    };
    let requests: Vec<Vec<u8>> = (0..1 + rng.below(4)).map(|i| request(rng, i)).collect();
    let views: Vec<&[u8]> = requests.iter().map(Vec::as_slice).collect();
    let input = requests.concat();
    let mut sim = Sim::new(&scripts, diverted, wanted, 1 << 20);
    if rng.chance(30) {
        sim.window = 1 + rng.below(32);
    }
    let mut done = 0;
    while done < input.len() {
        match rng.below(10) {
            0..=5 => {
                let end = (done + 1 + rng.below(48)).min(input.len());
                match sim.write(&input[done..end]) {
                    Ok(n) => done += n,
                    // The proxy failed while the program was reading an answer: not hidden
                    // (the program sees the reset, as from any server).
                    Err(errno) => return failed_write(&sim, errno),
                }
            }
            6 | 7 => {
                let _ = sim.read(1 + rng.below(64));
            }
            8 => sim.hang_up_seen(),
            _ => {
                // An event loop reads SO_ERROR once its connect is done, before writing.
                if !sim.state.wrote {
                    assert_eq!(sim.so_error(), 0, "SO_ERROR shown");
                }
            }
        }
    }
    let size = 1 + rng.below(200);
    let mut quiet = 0;
    while quiet < 2 {
        match sim.read(size) {
            Ok(1..) => quiet = 0,
            Ok(0) | Err(libc::EAGAIN) => quiet += 1,
            Err(errno) => panic!("read failed: {errno}: {:?} {:?}", sim.phases, sim.actions),
        }
        if rng.chance(10) {
            sim.hang_up_seen();
        }
    }
    assert!(
        !sim.replayed_mid_answer,
        "a replay after part of the answer was read: {:?}",
        sim.actions
    );
    let blind = sim.phases.contains(&Phase::ProxiedBlind(proxy()));
    let expect = if blind {
        Expect::Blind
    } else {
        Expect::Answered
    };
    check(&sim, &views, expect);
    true
}

#[test]
fn connection_model_over_random_peers_requests_and_interleavings() {
    let iterations = env_u64("LUNAR_FUZZ_ITERATIONS", DEFAULT_ITERATIONS);
    let seed = env_u64("LUNAR_FUZZ_SEED", DEFAULT_SEED);
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let mut write_failed = 0;
    for i in 0..iterations {
        let state = rng.0;
        match std::panic::catch_unwind(|| one_run(&mut Rng(state))) {
            Ok(completed) => write_failed += u64::from(!completed),
            Err(panic) => {
                eprintln!("conn sim: run {i} (LUNAR_FUZZ_SEED={seed}, state {state:#x}) failed");
                std::panic::resume_unwind(panic);
            }
        }
        rng.next();
    }
    println!(
        "conn sim: {iterations} runs (LUNAR_FUZZ_SEED={seed}) in {:.2?}; in {write_failed} the \
         proxy failed while an answer was being read: the program's write failed (checked up \
         to there)",
        started.elapsed()
    );
}
