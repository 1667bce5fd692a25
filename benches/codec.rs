//! Codec throughput: parsing and encoding typical frames.
//!
//! `cargo bench --bench codec` reports frames/s and MB/s for each case. Figures and
//! the machine they came from are in `docs/benchmarks.md`.

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use stompede::codec::{
    Command, Decoded, Decoder, Frame, Limits, MessageTemplate, SubscriptionHeader, Version, encode,
};

/// The three typical frames: a ~200-byte SEND, a MESSAGE with 10 headers, a 64 KiB SEND.
fn cases() -> Vec<(&'static str, Frame)> {
    let send = Frame::new(Command::Send)
        .header("destination", "/topic/stock-quotes.ACME")
        .header("content-type", "application/json")
        .body(&br#"{"symbol":"ACME","price":123.45,"change":-0.12,"changePercent":-0.1,"volume":1200345,"timestamp":"2026-11-22T10:00:00Z","note":"x"}"#[..]);
    let mut message = Frame::new(Command::Message)
        .header("destination", "/topic/stock-quotes")
        .header("message-id", "stompede-1-123456")
        .header("subscription", "sub-0")
        .header("content-type", "application/json");
    for i in 0..6 {
        message = message.header(format!("x-custom-{i}"), format!("value-{i}"));
    }
    let message = message.body(vec![b'm'; 128]);
    let big = Frame::new(Command::Send)
        .header("destination", "/queue/uploads")
        .body(vec![b'b'; 64 * 1024]);
    vec![
        ("send_200b", send),
        ("message_10_headers", message),
        ("send_64KiB", big),
    ]
}

fn wire(frame: &Frame) -> Bytes {
    let mut out = BytesMut::new();
    encode(frame, Version::V1_2, &mut out);
    out.freeze()
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, frame) in cases() {
        let bytes = wire(&frame);
        group.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: bytes.len() as u64,
        });
        group.bench_function(name, |b| {
            let mut dec = Decoder::new(Limits::default());
            let mut buf = BytesMut::with_capacity(bytes.len() * 2);
            b.iter(|| {
                buf.extend_from_slice(&bytes);
                match dec.decode(&mut buf) {
                    Ok(Some(Decoded::Frame(f))) => black_box(f),
                    other => panic!("bench frame did not parse: {other:?}"),
                }
            });
        });
    }
    group.finish();
}

fn encode_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (name, frame) in cases() {
        let len = wire(&frame).len();
        group.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: len as u64,
        });
        group.bench_function(name, |b| {
            let mut out = BytesMut::with_capacity(len * 2);
            b.iter(|| {
                out.clear();
                encode(black_box(&frame), Version::V1_2, &mut out);
                black_box(out.len())
            });
        });
    }
    group.finish();
}

/// One published MESSAGE delivered to 100 subscribers: the template encodes the shared
/// part once; each delivery adds its subscription line and copies into a write batch.
fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out_100");
    let subs: Vec<SubscriptionHeader> = (0..100)
        .map(|i| SubscriptionHeader::new(&format!("sub-{i}"), Version::V1_2))
        .collect();
    let body = Bytes::from(vec![b'q'; 128]);
    let headers = [
        ("destination", "/topic/stock-quotes"),
        ("message-id", "stompede-1-1"),
        ("content-type", "application/json"),
    ];
    let one = MessageTemplate::new(headers, body.clone())
        .deliver(&subs[0], &[])
        .len();
    group.throughput(Throughput::ElementsAndBytes {
        elements: 100,
        bytes: 100 * one as u64,
    });
    group.bench_function("template_128B", |b| {
        let mut out = BytesMut::with_capacity(100 * one);
        b.iter(|| {
            out.clear();
            let tpl = MessageTemplate::new(headers, body.clone());
            for s in &subs {
                tpl.deliver(s, &[]).write_to(&mut out);
            }
            black_box(out.len())
        });
    });
    group.bench_function("encode_each_128B", |b| {
        let mut out = BytesMut::with_capacity(100 * one);
        b.iter(|| {
            out.clear();
            for i in 0..100 {
                let mut f = Frame::new(Command::Message).header("subscription", format!("sub-{i}"));
                for (k, v) in headers {
                    f = f.header(k, v);
                }
                encode(&f.body(body.clone()), Version::V1_2, &mut out);
            }
            black_box(out.len())
        });
    });
    group.finish();
}

criterion_group!(benches, parse, encode_frames, fan_out);
criterion_main!(benches);
