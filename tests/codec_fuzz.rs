//! Fuzz harness for the frame decoder, run in CI for a bounded number of cases.
//!
//! Arbitrary bytes, and valid frames with random bytes flipped, inserted or removed,
//! are fed in random pieces. The decoder must never panic, must make progress on
//! every item it returns (so it cannot loop forever), and must never hold more than
//! the frame limit in its buffer.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use proptest::prelude::*;
use stompede::codec::{Command, Decoded, Decoder, Frame, Limits, Version, encode};

const CASES: u32 = 2000;

fn limits() -> Limits {
    Limits {
        max_frame_bytes: 4096,
        max_header_count: 16,
        max_header_line: 256,
        max_body_bytes: 2048,
    }
}

/// Feeds `input` cut at `cuts`; returns how many items came out before an error.
fn run(input: &[u8], cuts: &[usize], version: Version) -> usize {
    let limits = limits();
    let mut dec = Decoder::new(limits);
    dec.set_version(version);
    let mut buf = BytesMut::new();
    let mut from = 0;
    let mut items = 0;
    for &to in cuts.iter().chain(std::iter::once(&input.len())) {
        let to = to.clamp(from, input.len());
        buf.extend_from_slice(&input[from..to]);
        from = to;
        loop {
            let before = buf.len();
            match dec.decode(&mut buf) {
                Ok(Some(item)) => {
                    items += 1;
                    assert!(buf.len() < before, "an item must consume input");
                    if let Decoded::Frame(f) = item {
                        assert!(f.body.len() <= limits.max_body_bytes);
                        assert!(f.headers.len() <= limits.max_header_count);
                    }
                }
                Ok(None) => {
                    // Waiting for more is only allowed while within the frame limit
                    // (plus one read's worth that arrived with the last piece).
                    assert!(buf.len() <= limits.max_frame_bytes + input.len());
                    break;
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    return items;
                }
            }
        }
    }
    items
}

fn valid_stream() -> impl Strategy<Value = Vec<u8>> {
    let frame = (
        proptest::sample::select(Command::ALL.to_vec()),
        proptest::collection::vec(("[a-z:\\\\\n-]{1,6}", "[ -~\n\\\\]{0,10}"), 0..5),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(command, headers, body)| {
            let mut f = Frame::new(command);
            // Names with a control character are refused by design.
            for (k, v) in headers.into_iter().filter(|(k, _)| !k.contains('\n')) {
                f = f.header(k, v);
            }
            if command.allows_body() {
                f = f.body(body);
            }
            let mut out = BytesMut::new();
            encode(&f, Version::V1_2, &mut out);
            out.to_vec()
        });
    proptest::collection::vec(frame, 1..5).prop_map(|v| v.concat())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<prop::sample::Index>(),
            prop::sample::select(vec![0u8, b'\n', b'\r', b':', b'\\', b'9'])
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Remove),
    ]
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0usize..600, 0..10).prop_map(|mut v| {
        v.sort_unstable();
        v
    })
}

fn version() -> impl Strategy<Value = Version> {
    proptest::sample::select(Version::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..600), cuts in cuts(), v in version()) {
        run(&input, &cuts, v);
    }

    #[test]
    fn mutated_frames_never_panic(stream in valid_stream(), muts in proptest::collection::vec(mutation(), 1..6), cuts in cuts(), v in version()) {
        let mut input = stream;
        for m in muts {
            match m {
                Mutation::Flip(i, b) if !input.is_empty() => { let i = i.index(input.len()); input[i] = b; }
                Mutation::Insert(i, b) => { let i = i.index(input.len() + 1); input.insert(i, b); }
                Mutation::Remove(i) if !input.is_empty() => { let i = i.index(input.len()); input.remove(i); }
                _ => {}
            }
        }
        run(&input, &cuts, v);
    }

    #[test]
    fn unmutated_streams_decode_fully(stream in valid_stream(), cuts in cuts()) {
        // Positive control for the harness: valid input yields at least one item.
        prop_assert!(run(&stream, &cuts, Version::V1_2) >= 1);
    }
}

#[test]
fn endless_garbage_is_cut_off_at_the_limit() {
    // A client streaming a header line with no LF is stopped once it passes the line limit.
    let mut dec = Decoder::new(limits());
    let mut buf = BytesMut::from(&b"SEND\nk:"[..]);
    let mut fed = 0;
    let err = loop {
        match dec.decode(&mut buf) {
            Ok(None) => {
                buf.extend_from_slice(&[b'x'; 64]);
                fed += 64;
                assert!(fed < 10_000, "never stopped");
            }
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Err(e) => break e,
        }
    };
    assert!(
        err.to_string().starts_with("max_header_line exceeded"),
        "{err}"
    );
}
