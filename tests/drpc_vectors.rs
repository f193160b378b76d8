//! Golden-vector tests for `coder_agentsdk::drpc::wire`.
//!
//! Every capture in `tests/vectors/drpc/` (recorded from drpc v0.0.34 in Go,
//! see that directory's README) is decoded with our parser and assembler and
//! compared field by field with the frames, messages and errors the Go side
//! decoded, and the byte streams are rebuilt with our encoder and compared
//! byte for byte. Message payloads are taken from the recorded `hex` (the
//! bytes that were on the wire), so map ordering in protobuf does not matter:
//! what is compared exactly is the drpc framing.

use std::collections::BTreeMap;
use std::fs;

use bytes::Bytes;
use coder_agentsdk::drpc::wire::{
    decode_error, decode_metadata, encode_error, encode_metadata, parse_frame, Frame, Kind, Packet, PacketAssembler,
    PacketId, SPLIT_SIZE,
};
use serde_json::Value;

/// The recorded vectors are part of the repository (see `tests/vectors/README.md`).
const VECTOR_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/drpc/");

/// Not a capture: the canned protobuf encodings, checked elsewhere.
const NOT_A_CAPTURE: &str = "protobuf_messages.json";

fn load(file: &str) -> Value {
    let path = format!("{VECTOR_DIR}{file}");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key} is not a string in {v}"))
}

fn u64_field(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("field {key} is not an integer in {v}"))
}

fn bool_field(v: &Value, key: &str) -> bool {
    v[key]
        .as_bool()
        .unwrap_or_else(|| panic!("field {key} is not a bool in {v}"))
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(str_field(v, key)).unwrap_or_else(|e| panic!("field {key}: {e}"))
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The two directions of a capture.
#[derive(Clone, Copy, Debug)]
enum Side {
    Client,
    Server,
}

impl Side {
    fn stream_key(self) -> &'static str {
        match self {
            Side::Client => "client_to_server_hex",
            Side::Server => "server_to_client_hex",
        }
    }
    fn frames_key(self) -> &'static str {
        match self {
            Side::Client => "client_frames",
            Side::Server => "server_frames",
        }
    }
    fn writes_key(self) -> &'static str {
        match self {
            Side::Client => "client_writes_hex",
            Side::Server => "server_writes_hex",
        }
    }
    fn lengths_key(self) -> &'static str {
        match self {
            Side::Client => "client_write_lengths",
            Side::Server => "server_write_lengths",
        }
    }
    fn direction(self) -> &'static str {
        match self {
            Side::Client => "client_to_server",
            Side::Server => "server_to_client",
        }
    }
}

/// A frame parsed from a recorded stream, with where it was.
struct Parsed {
    offset: usize,
    header: Vec<u8>,
    frame: Frame,
}

/// Parses a whole recorded stream; it must consist of complete frames.
fn parse_stream(bytes: &[u8]) -> Vec<Parsed> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let (frame, used) = parse_frame(&bytes[offset..])
            .unwrap_or_else(|e| panic!("frame at {offset}: {e}"))
            .unwrap_or_else(|| panic!("truncated frame at {offset}"));
        let header_len = used - frame.data.len();
        out.push(Parsed {
            offset,
            header: bytes[offset..offset + header_len].to_vec(),
            frame: frame.to_frame(),
        });
        offset += used;
    }
    out
}

/// Feeds frames to a fresh assembler, as the Go reader on the other side did.
fn assemble<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Vec<Packet> {
    let mut assembler = PacketAssembler::new();
    frames
        .into_iter()
        .filter_map(|f| {
            assembler
                .push(f.clone())
                .unwrap_or_else(|e| panic!("frame {:?}: {e}", f.id()))
        })
        .collect()
}

fn side_packets(v: &Value, side: Side) -> Vec<Packet> {
    let bytes = hex_field(v, side.stream_key());
    let parsed = parse_stream(&bytes);
    assemble(parsed.iter().map(|p| &p.frame))
}

fn check_frames(file: &str, side: Side) {
    let v = load(file);
    let bytes = hex_field(&v, side.stream_key());

    // The write split is informational, but must add up to the stream.
    let lengths: Vec<u64> = array(&v, side.lengths_key())
        .iter()
        .map(|l| l.as_u64().expect("write length"))
        .collect();
    assert_eq!(lengths.iter().sum::<u64>(), bytes.len() as u64, "{file}");
    if let Some(writes) = v.get(side.writes_key()).and_then(Value::as_array) {
        let joined: String = writes.iter().map(|w| w.as_str().unwrap()).collect();
        assert_eq!(joined, str_field(&v, side.stream_key()), "{file}");
    }

    let parsed = parse_stream(&bytes);
    let expected = array(&v, side.frames_key());
    assert_eq!(parsed.len(), expected.len(), "{file} {side:?}: frame count");
    for (i, (got, want)) in parsed.iter().zip(expected).enumerate() {
        let ctx = format!("{file} {side:?} frame {i}");
        let f = &got.frame;
        assert_eq!(got.offset as u64, u64_field(want, "offset"), "{ctx}");
        assert_eq!(hex::encode(&got.header), str_field(want, "header_hex"), "{ctx}");
        assert_eq!(
            format!("{:#04x}", f.control_byte()),
            str_field(want, "control_byte"),
            "{ctx}"
        );
        assert_eq!(u64::from(f.kind.as_u8()), u64_field(want, "kind"), "{ctx}");
        assert_eq!(f.kind.name(), str_field(want, "kind_name"), "{ctx}");
        assert_eq!(f.done, bool_field(want, "done"), "{ctx}");
        assert_eq!(f.control, bool_field(want, "control"), "{ctx}");
        assert_eq!(f.stream_id, u64_field(want, "stream_id"), "{ctx}");
        assert_eq!(f.message_id, u64_field(want, "message_id"), "{ctx}");
        assert_eq!(f.data.len() as u64, u64_field(want, "length"), "{ctx}");
        match (want.get("data_hex"), want.get("data_sha256")) {
            (Some(data), None) => {
                assert_eq!(hex::encode(&f.data), data.as_str().unwrap(), "{ctx}")
            }
            (None, Some(digest)) => {
                assert_eq!(hex::encode(sha256(&f.data)), digest.as_str().unwrap(), "{ctx}")
            }
            // Empty frames carry neither.
            (None, None) => assert!(f.data.is_empty(), "{ctx}: data not recorded"),
            (Some(_), Some(_)) => panic!("{ctx}: both data_hex and data_sha256"),
        }
        // Our encoder writes the same header and data back.
        let start = got.offset;
        assert_eq!(
            f.encode().as_ref(),
            &bytes[start..start + f.encoded_len()],
            "{ctx}: re-encoded frame"
        );
    }
}

fn check_packets(file: &str) {
    let v = load(file);
    let rpc = str_field(&v, "rpc");
    let mut messages = Vec::new();
    let mut errors = Vec::new();
    for side in [Side::Client, Side::Server] {
        let packets = side_packets(&v, side);
        // Each side numbers its packets 1, 2, 3, ... on stream 1.
        for (i, p) in packets.iter().enumerate() {
            assert_eq!(p.id(), PacketId::new(1, i as u64 + 1), "{file} {side:?}");
            assert!(p.kind.is_known(), "{file}");
            // Only Cancel is sent with the control bit.
            assert_eq!(p.control, p.kind == Kind::Cancel, "{file}");
            if matches!(p.kind, Kind::Cancel | Kind::Close | Kind::CloseSend) {
                assert!(p.data.is_empty(), "{file}: {} with a body", p.kind);
            }
        }
        if let Side::Client = side {
            let invoke: Vec<&Packet> = packets.iter().filter(|p| p.kind == Kind::Invoke).collect();
            assert_eq!(invoke.len(), 1, "{file}");
            assert_eq!(invoke[0].data.as_ref(), rpc.as_bytes(), "{file}");
        }
        for p in packets {
            match p.kind {
                Kind::Message => messages.push((side.direction(), p)),
                Kind::Error => errors.push((side.direction(), p)),
                _ => {}
            }
        }
    }

    let want_messages = array(&v, "messages");
    assert_eq!(messages.len(), want_messages.len(), "{file}: message count");
    // Recorded messages are grouped by direction, in order within each.
    for direction in ["client_to_server", "server_to_client"] {
        let got = messages.iter().filter(|(d, _)| *d == direction);
        let want = want_messages.iter().filter(|m| str_field(m, "direction") == direction);
        for ((_, packet), want) in got.zip(want) {
            assert_eq!(packet.message_id, u64_field(want, "drpc_message_id"), "{file}");
            assert_eq!(hex::encode(&packet.data), str_field(want, "hex"), "{file}");
        }
    }

    let want_errors = array(&v, "errors");
    assert_eq!(errors.len(), want_errors.len(), "{file}: error count");
    for ((direction, packet), want) in errors.iter().zip(want_errors) {
        assert_eq!(*direction, str_field(want, "direction"), "{file}");
        assert_eq!(hex::encode(&packet.data), str_field(want, "payload_hex"), "{file}");
        let (code, message) = decode_error(&packet.data).expect("error body");
        assert_eq!(code, u64_field(want, "code"), "{file}");
        assert_eq!(message, str_field(want, "message"), "{file}");
        assert_eq!(encode_error(code, &message), packet.data, "{file}");
    }

    let client = side_packets(&v, Side::Client);
    let metadata: Vec<&Packet> = client.iter().filter(|p| p.kind == Kind::InvokeMetadata).collect();
    match v.get("invoke_metadata") {
        Some(want) => {
            assert_eq!(metadata.len(), 1, "{file}");
            let entries: BTreeMap<String, String> = decode_metadata(&metadata[0].data)
                .expect("metadata")
                .into_iter()
                .collect();
            let want: BTreeMap<String, String> = want
                .as_object()
                .expect("invoke_metadata object")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("metadata value").to_owned()))
                .collect();
            assert_eq!(entries, want, "{file}");
        }
        None => assert!(metadata.is_empty(), "{file}"),
    }
}

/// What a capture says about how each side ended the stream: packets after
/// the Invoke and messages (client) or after the messages and errors
/// (server). Tails depend on timing (README "Things that vary"); if a
/// regenerated capture differs, update the table together with its notes.
struct Ending {
    client: &'static [Kind],
    server: &'static [Kind],
}

fn notes_say_client_close(v: &Value) -> bool {
    array(v, "notes").iter().any(|n| {
        n.as_str()
            .unwrap_or_default()
            .contains("ends with a client Close packet")
    })
}

/// Builds one side's packets from the capture's meaning (rpc name,
/// metadata, message payloads, error fields) and the expected ending.
fn rebuild(v: &Value, side: Side, ending: &Ending) -> Vec<Packet> {
    let mut next = 0u64;
    let mut id = || {
        next += 1;
        next
    };
    let mut packets = Vec::new();
    if let Side::Client = side {
        if v.get("invoke_metadata").is_some() {
            // Go writes map entries in random order, so the recorded order is
            // used (decoded from the capture and checked against the fields).
            let recorded = side_packets(v, Side::Client);
            let body = &recorded
                .iter()
                .find(|p| p.kind == Kind::InvokeMetadata)
                .expect("metadata packet")
                .data;
            let entries = decode_metadata(body).expect("metadata");
            packets.push(Packet::invoke_metadata(1, id(), entries));
        }
        packets.push(Packet::invoke(1, id(), str_field(v, "rpc")));
    }
    for m in array(v, "messages") {
        if str_field(m, "direction") == side.direction() {
            packets.push(Packet::message(1, id(), hex_field(m, "hex")));
        }
    }
    for e in array(v, "errors") {
        if str_field(e, "direction") == side.direction() {
            let message = str_field(e, "message");
            packets.push(Packet::error(1, id(), u64_field(e, "code"), message));
        }
    }
    let tail = match side {
        Side::Client => ending.client,
        Side::Server => ending.server,
    };
    for &kind in tail {
        packets.push(match kind {
            Kind::Cancel => Packet::cancel(1, id()),
            Kind::Close => Packet::close(1, id()),
            Kind::CloseSend => Packet::close_send(1, id()),
            other => panic!("unexpected ending packet {other}"),
        });
    }
    packets
}

fn check_reencode(file: &str, side: Side, ending: &Ending) {
    let v = load(file);
    if let Side::Client = side {
        assert_eq!(
            ending.client.contains(&Kind::Close),
            notes_say_client_close(&v),
            "{file}: the notes and the expected ending disagree about the client Close"
        );
    }
    let mut wire = bytes::BytesMut::new();
    for packet in rebuild(&v, side, ending) {
        packet.append_to(&mut wire);
    }
    assert_eq!(
        hex::encode(&wire),
        str_field(&v, side.stream_key()),
        "{file} {side:?}: re-encoded bytes"
    );
}

macro_rules! vectors {
    ($($name:ident => client [$($c:ident),*], server [$($s:ident),*];)*) => {
        /// Every capture covered below.
        const COVERED: &[&str] = &[$(concat!(stringify!($name), ".json")),*];

        $(
            mod $name {
                use super::*;

                const FILE: &str = concat!(stringify!($name), ".json");
                const ENDING: Ending = Ending {
                    client: &[$(Kind::$c),*],
                    server: &[$(Kind::$s),*],
                };

                #[test]
                fn client_frames_match_recorded_frames() {
                    check_frames(FILE, Side::Client);
                }

                #[test]
                fn server_frames_match_recorded_frames() {
                    check_frames(FILE, Side::Server);
                }

                #[test]
                fn packets_match_recorded_messages_and_errors() {
                    check_packets(FILE);
                }

                #[test]
                fn client_bytes_reencode_exactly() {
                    check_reencode(FILE, Side::Client, &ENDING);
                }

                #[test]
                fn server_bytes_reencode_exactly() {
                    check_reencode(FILE, Side::Server, &ENDING);
                }
            }
        )*
    };
}

vectors! {
    unary_get_manifest => client [CloseSend, Close], server [CloseSend];
    unary_update_stats => client [CloseSend, Close], server [CloseSend];
    unary_update_lifecycle => client [CloseSend, Close], server [CloseSend];
    unary_get_announcement_banners => client [CloseSend, Close], server [CloseSend];
    unary_batch_create_logs => client [CloseSend, Close], server [CloseSend];
    unary_large_message_split => client [CloseSend, Close], server [CloseSend];
    unary_server_error => client [CloseSend], server [];
    unary_unimplemented => client [CloseSend], server [];
    unary_unknown_rpc => client [CloseSend], server [];
    unary_refresh_resume_token => client [CloseSend, Close], server [CloseSend];
    unary_with_invoke_metadata => client [CloseSend, Close], server [CloseSend];
    server_stream_derp_maps => client [CloseSend], server [CloseSend];
    bidi_coordinate => client [CloseSend], server [CloseSend];
    cancel_hard_coordinate => client [], server [];
    cancel_soft_coordinate => client [Cancel], server [];
}

#[test]
fn every_vector_file_is_covered() {
    let mut on_disk: Vec<String> = fs::read_dir(VECTOR_DIR)
        .unwrap_or_else(|e| panic!("read {VECTOR_DIR}: {e}"))
        .map(|entry| entry.expect("dir entry").file_name().into_string().expect("utf-8"))
        .filter(|name| name.ends_with(".json") && name != NOT_A_CAPTURE)
        .collect();
    on_disk.sort();
    let mut covered: Vec<String> = COVERED.iter().map(|s| s.to_string()).collect();
    covered.sort();
    assert_eq!(on_disk, covered);
}

#[test]
fn large_message_split_is_65536_plus_6337_bytes_with_recorded_headers() {
    let v = load("unary_large_message_split.json");
    let message = array(&v, "messages")
        .iter()
        .find(|m| str_field(m, "direction") == "client_to_server")
        .map(|m| hex_field(m, "hex"))
        .expect("request message");
    assert_eq!(message.len(), 65_536 + 6_337);

    let packet = Packet::message(1, 2, message.clone());
    let frames: Vec<Frame> = packet.frames().collect();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].data.len(), SPLIT_SIZE);
    assert_eq!(frames[1].data.len(), 6_337);
    assert!(!frames[0].done && frames[1].done);
    let first = frames[0].encode();
    let second = frames[1].encode();
    assert_eq!(hex::encode(&first[..6]), "040102808004");
    assert_eq!(hex::encode(&second[..5]), "050102c131");

    // The same bytes sit in the capture right after the 41-byte Invoke.
    let wire = hex_field(&v, "client_to_server_hex");
    let encoded = packet.encode();
    assert_eq!(&wire[41..41 + encoded.len()], encoded.as_ref());

    // And the two recorded frames reassemble into the recorded message.
    let packets = side_packets(&v, Side::Client);
    assert_eq!(packets[1].data.as_ref(), &message[..]);
}

#[test]
fn unary_server_error_carries_code_0_and_the_handler_text() {
    let v = load("unary_server_error.json");
    let packets = side_packets(&v, Side::Server);
    assert_eq!(packets.len(), 1, "an Error is not followed by CloseSend");
    assert_eq!(packets[0].kind, Kind::Error);
    let (code, text) = decode_error(&packets[0].data).unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        text,
        "refserver: metadata key \"fail\" rejected: simulated server error"
    );
}

#[test]
fn unary_unimplemented_is_code_12() {
    let v = load("unary_unimplemented.json");
    let packets = side_packets(&v, Side::Server);
    let (code, text) = decode_error(&packets[0].data).unwrap();
    assert_eq!(code, coder_agentsdk::drpc::wire::UNIMPLEMENTED_CODE);
    assert_eq!(text, "Unimplemented");
}

#[test]
fn unary_unknown_rpc_error_names_the_method() {
    let v = load("unary_unknown_rpc.json");
    let packets = side_packets(&v, Side::Server);
    let (code, text) = decode_error(&packets[0].data).unwrap();
    assert_eq!(code, 0);
    assert_eq!(text, format!("protocol error: unknown rpc: {:?}", str_field(&v, "rpc")));
}

#[test]
fn unary_with_invoke_metadata_encodes_the_recorded_body() {
    let v = load("unary_with_invoke_metadata.json");
    let packets = side_packets(&v, Side::Client);
    assert_eq!(packets[0].kind, Kind::InvokeMetadata);
    assert_eq!(packets[1].kind, Kind::Invoke);
    let (key, value) = v["invoke_metadata"]
        .as_object()
        .and_then(|m| m.iter().next())
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .unwrap();
    assert_eq!(encode_metadata([(key, value)]), packets[0].data);
}

#[test]
fn cancel_soft_coordinate_sends_a_control_cancel_packet() {
    let v = load("cancel_soft_coordinate.json");
    let packets = side_packets(&v, Side::Client);
    let last = packets.last().unwrap();
    assert_eq!((last.kind, last.control), (Kind::Cancel, true));
    assert_eq!(Packet::cancel(1, 3).encode(), Bytes::from_static(&[0x89, 1, 3, 0]));
}

#[test]
fn cancel_hard_coordinate_sends_nothing_after_the_messages() {
    let v = load("cancel_hard_coordinate.json");
    let kinds: Vec<Kind> = side_packets(&v, Side::Client).iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [Kind::Invoke, Kind::Message]);
}

/// SHA-256 (FIPS 180-4), only to check the recorded `data_sha256` of large
/// frames without adding a dependency.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (state, add) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *state = state.wrapping_add(add);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[test]
fn sha256_helper_matches_known_digests() {
    assert_eq!(
        hex::encode(sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex::encode(sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex::encode(sha256(&[b'a'; 1000])),
        "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
    );
}
