//! The invariants every run of the model must keep, and one scenario per transition of
//! `state`'s table that the model reaches, each over every split of the program's input.

use super::*;

pub const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: origin.test\r\n\r\n";
pub const POST: &[u8] =
    b"POST /b HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 11\r\n\r\nhello world";
pub const PUT: &[u8] = b"PUT /c HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 3\r\n\r\nxyz";

/// What the program is to see of its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Every request answered once, by the proxy then (after a failure) the origin.
    Answered,
    /// The proxy's answers as they came (not followed any more); nothing at the origin.
    Blind,
}

/// Asserts the invariants after a run that wrote all of `requests` and read all it could.
pub fn check(sim: &Sim, requests: &[&[u8]], expect: Expect) {
    let input: Vec<u8> = requests.concat();
    let why = || format!("phases {:?}\nactions {:?}", sim.phases, sim.actions);
    assert_eq!(sim.written, input.len(), "write counts\n{}", why());
    for peer in &sim.peers {
        if !peer.is_proxy {
            assert!(
                !contains(&peer.got, b"x-lunar-"),
                "Lunar's lines at the origin\n{}",
                why()
            );
        }
        for got in &peer.requests {
            if peer.is_proxy {
                assert!(contains(got, INJECTED), "{}", why());
                let plain = strip_lunar(got);
                assert!(requests.contains(&plain.as_slice()), "{}", why());
            }
        }
    }
    let origins: Vec<&Peer> = sim
        .peers
        .iter()
        .filter(|p| !p.is_proxy && !p.got.is_empty())
        .collect();
    assert!(origins.len() <= 1, "origin reached twice\n{}", why());
    let at_origin: &[u8] = origins.first().map_or(&[], |p| &p.got);
    if expect == Expect::Blind {
        let proxy_sent: Vec<u8> = sim.peers.iter().flat_map(|p| p.sent.clone()).collect();
        assert_eq!(
            sim.read.escape_ascii().to_string(),
            proxy_sent.escape_ascii().to_string(),
            "{}",
            why()
        );
        assert!(at_origin.is_empty(), "{}", why());
        return;
    }
    assert!(
        !contains(&sim.read, b"x-lunar-"),
        "Lunar's lines read\n{}",
        why()
    );
    // The answers the program read, in order: the proxy's then the origin's, one each.
    let mut read = &sim.read[..];
    let mut expected = Vec::new();
    let mut from_origin = None;
    for (i, request) in requests.iter().enumerate() {
        let Some(len) = response_len(read) else {
            panic!(
                "answer {i} missing: read {:?}\n{}",
                sim.read.escape_ascii().to_string(),
                why()
            );
        };
        let by_origin = contains(&read[..len], b"\r\n\r\norigin ");
        if by_origin && from_origin.is_none() {
            from_origin = Some(i);
        }
        assert_eq!(
            by_origin,
            from_origin.is_some(),
            "answer {i} from the proxy after the origin\n{}",
            why()
        );
        expected.extend(ok_answer(
            if by_origin { "origin" } else { "proxy" },
            request,
            "",
        ));
        read = &read[len..];
    }
    assert_eq!(
        sim.read.escape_ascii().to_string(),
        expected.escape_ascii().to_string(),
        "{}",
        why()
    );
    // The origin got exactly the requests it answered, as the program wrote them.
    let first = from_origin.unwrap_or(requests.len());
    let direct = requests[first..].concat();
    assert_eq!(
        at_origin.escape_ascii().to_string(),
        direct.escape_ascii().to_string(),
        "{}",
        why()
    );
    // The proxy's: only the retried ones twice or more.
    for request in &requests[..first] {
        let times: usize = sim
            .peers
            .iter()
            .filter(|p| p.is_proxy)
            .map(|p| {
                p.requests
                    .iter()
                    .filter(|r| strip_lunar(r) == *request)
                    .count()
            })
            .sum();
        assert!(times >= 1, "{}", why());
    }
}

/// The length of the response at the start of `bytes` (Content-Length framed).
fn response_len(bytes: &[u8]) -> Option<usize> {
    request_len(bytes)
}

/// A program step.
#[derive(Clone, Copy, Debug)]
pub enum Do {
    /// Write requests `0..n` (each chunk cut where the run says).
    WriteUpTo(usize),
    ReadAll,
    SoError,
    HangUp,
    Unseen(Unseen),
}

/// Runs `steps` with the input cut at `cut` (an offset in the whole input) and reads of
/// at most `read_size` bytes.
pub fn run(sim: &mut Sim, requests: &[&[u8]], steps: &[Do], cut: usize, read_size: usize) {
    let input = requests.concat();
    let mut done = 0;
    for step in steps {
        match *step {
            Do::WriteUpTo(n) => {
                let end: usize = requests[..n].iter().map(|r| r.len()).sum();
                while done < end {
                    let stop = if done < cut && cut < end { cut } else { end };
                    let n = sim.write(&input[done..stop]).expect("the write is taken");
                    done += n;
                }
            }
            Do::ReadAll => while let Ok(1..) = sim.read(read_size) {},
            Do::SoError => assert_eq!(sim.so_error(), 0),
            Do::HangUp => sim.hang_up_seen(),
            Do::Unseen(how) => sim.unseen(how),
        }
    }
}

/// Every cut of the input, three read sizes: the scenario's phases are reached each time.
fn scenario(
    scripts: &[Mode],
    diverted: bool,
    wanted: Option<Route>,
    requests: &[&[u8]],
    steps: &[Do],
    expect: Expect,
    phases: &[Phase],
) {
    let len: usize = requests.iter().map(|r| r.len()).sum();
    for cut in 0..=len {
        for read_size in [1, 7, 4096] {
            let mut sim = Sim::new(scripts, diverted, wanted, 1 << 20);
            run(&mut sim, requests, steps, cut, read_size);
            check(&sim, requests, expect);
            for phase in phases {
                assert!(
                    sim.phases.contains(phase),
                    "{phase:?} not in {:?} (cut {cut})",
                    sim.phases
                );
            }
        }
    }
}

const ALL: [&[u8]; 3] = [GET, POST, PUT];
const PIPELINED: &[Do] = &[Do::WriteUpTo(3), Do::ReadAll];
const BOTH: &[Do] = &[Do::WriteUpTo(2), Do::ReadAll];
const ONE: &[Do] = &[Do::WriteUpTo(1), Do::ReadAll];
const KEEP_ALIVE: &[Do] = &[
    Do::WriteUpTo(1),
    Do::ReadAll,
    Do::WriteUpTo(2),
    Do::ReadAll,
    Do::WriteUpTo(3),
    Do::ReadAll,
];

fn proxied() -> Phase {
    Phase::Proxied(proxy())
}

fn recovering_origin() -> Phase {
    Phase::Recovering(Route::Origin)
}

#[test]
fn connecting_to_proxied_all_answered_by_the_proxy() {
    scenario(
        &[],
        true,
        None,
        &ALL,
        PIPELINED,
        Expect::Answered,
        &[proxied()],
    );
    scenario(
        &[],
        true,
        None,
        &ALL,
        KEEP_ALIVE,
        Expect::Answered,
        &[proxied()],
    );
}

#[test]
fn connecting_to_direct_filter_or_refused_connect() {
    scenario(
        &[],
        false,
        None,
        &ALL,
        PIPELINED,
        Expect::Answered,
        &[Phase::Direct],
    );
    scenario(
        &[Mode::Refuse],
        true,
        None,
        &ALL,
        KEEP_ALIVE,
        Expect::Answered,
        &[Phase::Direct],
    );
}

#[test]
fn proxied_to_direct_first_request_sent_direct_by_the_filter() {
    let phases = [proxied(), Phase::Direct];
    scenario(
        &[],
        true,
        Some(Route::Origin),
        &ALL,
        PIPELINED,
        Expect::Answered,
        &phases,
    );
}

#[test]
fn proxied_to_direct_proxy_lost_before_the_program_wrote() {
    let phases = [proxied(), Phase::Direct];
    let late: &[Do] = &[Do::SoError, Do::WriteUpTo(3), Do::ReadAll];
    scenario(
        &[Mode::RefuseLate],
        true,
        None,
        &ALL,
        late,
        Expect::Answered,
        &phases,
    );
    let hang_up: &[Do] = &[Do::HangUp, Do::WriteUpTo(3), Do::ReadAll];
    scenario(
        &[Mode::HangUp],
        true,
        None,
        &ALL,
        hang_up,
        Expect::Answered,
        &phases,
    );
}

#[test]
fn direct_to_proxied_first_request_diverted_by_the_filter() {
    let phases = [Phase::Direct, proxied()];
    let wanted = Some(Route::Proxy(proxy()));
    scenario(
        &[],
        false,
        wanted,
        &ALL,
        KEEP_ALIVE,
        Expect::Answered,
        &phases,
    );
}

#[test]
fn proxied_to_proxied_blind_answers_not_http() {
    let phases = [proxied(), Phase::ProxiedBlind(proxy())];
    scenario(
        &[Mode::NotHttpFrom(0)],
        true,
        None,
        &ALL,
        PIPELINED,
        Expect::Blind,
        &phases,
    );
}

#[test]
fn proxied_to_proxied_blind_failure_past_the_replay_cap() {
    for cut in 0..=POST.len() {
        let mut sim = Sim::new(&[Mode::LunarErrorAt(0)], true, None, 40);
        run(&mut sim, &[POST], ONE, cut, 5);
        check(&sim, &[POST], Expect::Blind);
        assert!(sim.phases.contains(&Phase::ProxiedBlind(proxy())));
        assert!(sim.read.starts_with(ERROR_ANSWER));
    }
}

#[test]
fn proxied_to_recovering_to_direct_on_each_proxy_failure() {
    let phases = [proxied(), recovering_origin(), Phase::Direct];
    for at in 0..3 {
        for mode in [Mode::ResetAt(at), Mode::CloseAt(at), Mode::LunarErrorAt(at)] {
            for steps in [PIPELINED, KEEP_ALIVE] {
                scenario(&[mode], true, None, &ALL, steps, Expect::Answered, &phases);
            }
        }
    }
}

#[test]
fn proxied_to_recovering_to_proxied_on_a_retry() {
    let phases = [proxied(), Phase::Recovering(Route::Proxy(proxy()))];
    for at in 0..3 {
        for steps in [PIPELINED, KEEP_ALIVE] {
            scenario(
                &[Mode::RetryAt(at)],
                true,
                None,
                &ALL,
                steps,
                Expect::Answered,
                &phases,
            );
        }
    }
    // Asked again and again: past the bound the proxy's answer is the program's.
    let mut sim = Sim::new(&[Mode::RetryAt(0); 3], true, None, 1 << 20);
    run(&mut sim, &[GET], ONE, 0, 4096);
    let shown = strip_lunar(RETRY_ANSWER);
    let shown = [&RETRY_ANSWER[..RETRY_ANSWER.len() - shown.len()], b""].concat();
    assert!(sim
        .read
        .ends_with(b"x-lunar-retry-after: 0\r\nContent-Length: 0\r\n\r\n"));
    assert!(!contains(&sim.read, b"sequence-id") && !shown.is_empty());
}

#[test]
#[ignore = "read.rs: a read past the end of the answer being delivered takes the next \
            answer's head unjudged (an x-lunar-error answer reaches the program)"]
fn a_read_past_an_answer_takes_the_next_unjudged() {
    let mut sim = Sim::new(&[Mode::LunarErrorAt(1)], true, None, 1 << 20);
    sim.clip_reads = false;
    run(&mut sim, &[GET, POST], BOTH, 0, 4096);
    check(&sim, &[GET, POST], Expect::Answered);
}

#[test]
fn proxied_to_leaving_to_passthrough_handed_to_stdio() {
    let phases = [
        proxied(),
        Phase::Leaving(proxy()),
        Phase::Passthrough(Route::Origin),
    ];
    let steps: &[Do] = &[
        Do::WriteUpTo(1),
        Do::Unseen(Unseen::Stdio),
        Do::ReadAll,
        Do::WriteUpTo(3),
        Do::ReadAll,
    ];
    scenario(&[], true, None, &ALL, steps, Expect::Answered, &phases);
}

#[test]
fn leaving_to_recovering_proxy_fails_the_last_answer() {
    let phases = [Phase::Leaving(proxy()), recovering_origin(), Phase::Direct];
    let steps: &[Do] = &[
        Do::WriteUpTo(1),
        Do::Unseen(Unseen::Stdio),
        Do::ReadAll,
        Do::WriteUpTo(3),
        Do::ReadAll,
    ];
    scenario(
        &[Mode::LunarErrorAt(0)],
        true,
        None,
        &ALL,
        steps,
        Expect::Answered,
        &phases,
    );
}

#[test]
fn to_passthrough_untrackable_fd_io_uring_not_http() {
    let busy: &[Do] = &[
        Do::WriteUpTo(1),
        Do::Unseen(Unseen::UntrackableFd),
        Do::WriteUpTo(3),
        Do::ReadAll,
    ];
    let at_proxy = [Phase::Passthrough(Route::Proxy(proxy()))];
    let mut sim = Sim::new(&[], true, None, 1 << 20);
    run(&mut sim, &ALL, busy, 0, 4096);
    assert!(sim.phases.ends_with(&at_proxy), "{:?}", sim.phases);
    assert_eq!(sim.written, ALL.concat().len());
    let idle: &[Do] = &[Do::Unseen(Unseen::IoUring), Do::WriteUpTo(3), Do::ReadAll];
    let direct = [Phase::Passthrough(Route::Origin)];
    scenario(&[], true, None, &ALL, idle, Expect::Answered, &direct);
    let mut sim = Sim::new(&[], true, None, 1 << 20);
    let not_http = b"\x16\x03\x01 hello TLS".to_vec();
    assert_eq!(sim.write(&not_http), Ok(not_http.len()));
    assert_eq!(sim.phases.last(), Some(&Phase::Passthrough(Route::Origin)));
    assert_eq!(sim.peers.last().unwrap().got, not_http);
}

#[test]
fn send_failed_mid_answer_is_not_replayed() {
    let mut sim = Sim::new(&[Mode::ResetAt(1)], true, None, 1 << 20);
    let requests = [GET, POST, PUT];
    assert_eq!(sim.write(&[GET, POST].concat()), Ok(GET.len() + POST.len()));
    assert_eq!(sim.read(5), Ok(5));
    // The program has read part of the proxy's answer: the failure is its to see.
    assert_eq!(sim.write(PUT), Err(libc::ECONNRESET));
    let _ = requests;
    assert!(
        sim.peers.iter().all(|peer| peer.is_proxy),
        "nothing goes to the origin"
    );
    assert!(sim.read.starts_with(b"HTTP/"));
}
