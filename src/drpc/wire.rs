//! The storj.io/drpc wire codec: frames, packets and packet bodies, as bytes.
//!
//! This module owns the byte-level format that drpc v0.0.34 (`drpcwire`)
//! puts on a transport: the frame header (control byte plus three protobuf
//! varints), splitting a packet into frames of at most [`SPLIT_SIZE`] data
//! bytes, reassembling frames into packets with the Go reader's exact rules
//! (id monotonicity, kind changes, size limit, forward-compatible control
//! packets), and the bodies of Error and InvokeMetadata packets. The protocol
//! reference is `tests/vectors/drpc/README.md`; the golden vectors next to it
//! are checked by `tests/drpc_vectors.rs`.
//!
//! It is pure: no I/O, no async, no clocks, no allocation policy beyond
//! [`bytes`]. It must not know about transports (yamux, websocket), about
//! streams or calls (which side sends Invoke, when CloseSend or Close is due,
//! what a stream id means to a connection), nor about protobuf message types:
//! those belong to the call state machines built on top of it. Every function
//! here accepts arbitrary bytes from the network without panicking; malformed
//! input yields a [`WireError`].

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest packet body accepted by [`PacketAssembler::new`] and allowed by
/// [`check_message_size`]: 4 MiB.
///
/// Coder sets `drpcsdk.MaxMessageSize = 4 << 20` (coder/coder
/// `codersdk/drpcsdk/transport.go`) as the drpc reader's
/// `ReaderOptions.MaximumBufferSize`; drpc v0.0.34 uses the same 4 MiB as its
/// own default (`drpcwire/reader.go`). A packet of exactly this many bytes is
/// accepted, one byte more is a protocol error.
pub const MAX_MESSAGE_SIZE: usize = 4 << 20;

/// Largest number of data bytes drpc puts in one frame: 64 KiB.
///
/// drpc's `SplitData` with the default split size 0 means 64 * 1024
/// (`drpcwire/split.go`); a 65,536-byte body is one frame, 65,537 bytes are two.
pub const SPLIT_SIZE: usize = 64 * 1024;

/// Longest valid varint: ten bytes carry 64 bits.
pub const MAX_VARINT_LEN: usize = 10;

/// Smallest possible frame: control byte and three one-byte varints, no data.
pub const MIN_FRAME_LEN: usize = 4;

/// Longest possible frame header: control byte and three ten-byte varints.
pub const MAX_FRAME_HEADER_LEN: usize = 1 + 3 * MAX_VARINT_LEN;

/// drpc's error code for "unimplemented" (`drpcerr.Unimplemented`), sent by
/// generated stubs together with the text `Unimplemented`.
pub const UNIMPLEMENTED_CODE: u64 = 12;

/// Bit 0 of the control byte: last frame of a packet.
const DONE_BIT: u8 = 0b0000_0001;
/// Bits 1..=6 of the control byte: the packet kind.
const KIND_MASK: u8 = 0b0111_1110;
/// Bit 7 of the control byte: the packet may be ignored if not understood.
const CONTROL_BIT: u8 = 0b1000_0000;

/// Length of the big-endian code that starts an Error packet body.
const ERROR_CODE_LEN: usize = 8;

/// Protobuf tag of field 1, length-delimited (`1 << 3 | 2`).
const TAG_FIELD1_BYTES: u8 = 0x0a;
/// Protobuf tag of field 2, length-delimited (`2 << 3 | 2`).
const TAG_FIELD2_BYTES: u8 = 0x12;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Everything that can be wrong with bytes or frames received from a peer,
/// or with a message too large to send.
///
/// All of these are protocol errors in drpc terms: the Go implementation
/// terminates the whole connection (for Coder: the yamux stream) on them,
/// except [`WireError::InvalidErrorData`], which Go turns into the error the
/// caller sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A varint whose first ten bytes all have the continuation bit set.
    #[error("varint too long: more than {MAX_VARINT_LEN} bytes")]
    VarintTooLong,
    /// A ten-byte varint whose value does not fit in 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// A frame id that is lower than the id of the packet being assembled, or
    /// lower than or equal to the id of the last completed packet.
    #[error("id monotonicity violation: frame {frame}, last {last}")]
    IdNotMonotonic {
        /// Id carried by the offending frame.
        frame: PacketId,
        /// Id of the packet being assembled, or of the last completed packet
        /// when none is being assembled (initially `<s:1 m:0>`).
        last: PacketId,
    },
    /// A frame that continues a packet (same id) but carries another kind.
    #[error("packet kind change: frame {frame}, packet {packet}")]
    KindChanged {
        /// Kind of the offending frame.
        frame: Kind,
        /// Kind of the packet being assembled.
        packet: Kind,
    },
    /// A packet body (received or about to be sent) larger than the limit.
    #[error("data overflow: packet of {size} bytes exceeds the limit of {limit} bytes")]
    PacketTooLarge {
        /// Size of the body (for a received packet: as far as assembled when
        /// the limit was crossed, or a frame's declared length).
        size: usize,
        /// The limit in force, usually [`MAX_MESSAGE_SIZE`].
        limit: usize,
    },
    /// A completed packet of a kind this codec does not know, without the
    /// control bit (with it, the packet is silently ignored).
    #[error("unknown packet kind {kind} ({id})")]
    UnknownKind {
        /// The raw 6-bit kind value.
        kind: u8,
        /// Id of the packet.
        id: PacketId,
    },
    /// An Error packet body shorter than its 8-byte code. Go reports this
    /// as an error whose text is the raw body followed by
    /// `" (drpcwire note: invalid error data)"`.
    #[error("invalid error data: {} bytes, need at least 8", data.len())]
    InvalidErrorData {
        /// The whole (short) body.
        data: Vec<u8>,
    },
    /// An InvokeMetadata body that does not follow the entry layout.
    #[error("malformed invoke metadata at byte {offset}: {reason}")]
    MalformedMetadata {
        /// Offset in the body where decoding failed.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
}

// ---------------------------------------------------------------------------
// Varints
// ---------------------------------------------------------------------------

/// Number of bytes [`put_varint`] writes for `value` (1 to 10).
pub const fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `value` as a protobuf (LEB128) unsigned varint.
pub fn put_varint<B: BufMut + ?Sized>(buf: &mut B, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// Decodes a protobuf unsigned varint at the start of `buf`.
///
/// Returns `Ok(Some((value, bytes_used)))`, `Ok(None)` when `buf` ends before
/// the varint does, [`WireError::VarintTooLong`] when ten bytes all carry the
/// continuation bit, and [`WireError::VarintOverflow`] when the tenth byte has
/// bits above 2^64. (Go's `ReadVarint` silently drops those high bits; we
/// refuse them, which only matters for a malformed peer.) Non-minimal
/// encodings such as `80 00` are accepted, as in Go.
pub fn decode_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, WireError> {
    let mut value = 0u64;
    for i in 0..MAX_VARINT_LEN {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        let shift = 7 * i as u32;
        if i == MAX_VARINT_LEN - 1 {
            if byte & 0x80 != 0 {
                return Err(WireError::VarintTooLong);
            }
            if byte > 1 {
                return Err(WireError::VarintOverflow);
            }
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    // Unreachable: the tenth byte either ends the varint or returns an error.
    Err(WireError::VarintTooLong)
}

// ---------------------------------------------------------------------------
// Kinds and ids
// ---------------------------------------------------------------------------

/// The kind of a packet, bits 1..=6 of a frame's control byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// 1: starts an RPC; the body is the method name, e.g.
    /// `/coder.agent.v2.Agent/GetManifest`.
    Invoke,
    /// 2: one protobuf-encoded message (possibly empty).
    Message,
    /// 3: the RPC failed; body per [`encode_error`].
    Error,
    /// 4: the sender soft-cancelled the stream; empty, sent with the control bit.
    Cancel,
    /// 5: the sender is done with the stream in both directions; empty.
    Close,
    /// 6: the sender will send no more messages (half close); empty.
    CloseSend,
    /// 7: key/value metadata for the Invoke that follows; body per
    /// [`encode_metadata`].
    InvokeMetadata,
    /// Any other 6-bit value (0 or 8..=63). Build it with [`Kind::from_u8`];
    /// an `Unknown` holding a known value encodes as that known kind.
    Unknown(u8),
}

impl Kind {
    /// The kind for a 6-bit wire value (higher bits are ignored).
    pub const fn from_u8(value: u8) -> Kind {
        match value & 0x3f {
            1 => Kind::Invoke,
            2 => Kind::Message,
            3 => Kind::Error,
            4 => Kind::Cancel,
            5 => Kind::Close,
            6 => Kind::CloseSend,
            7 => Kind::InvokeMetadata,
            other => Kind::Unknown(other),
        }
    }

    /// The 6-bit wire value of this kind.
    pub const fn as_u8(self) -> u8 {
        match self {
            Kind::Invoke => 1,
            Kind::Message => 2,
            Kind::Error => 3,
            Kind::Cancel => 4,
            Kind::Close => 5,
            Kind::CloseSend => 6,
            Kind::InvokeMetadata => 7,
            Kind::Unknown(value) => value & 0x3f,
        }
    }

    /// Whether this is one of the seven kinds drpc v0.0.34 defines.
    pub const fn is_known(self) -> bool {
        !matches!(self, Kind::Unknown(_))
    }

    /// drpc's name for the kind (`Invoke`, `CloseSend`, ...), or `Unknown`.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Invoke => "Invoke",
            Kind::Message => "Message",
            Kind::Error => "Error",
            Kind::Cancel => "Cancel",
            Kind::Close => "Close",
            Kind::CloseSend => "CloseSend",
            Kind::InvokeMetadata => "InvokeMetadata",
            Kind::Unknown(_) => "Unknown",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Unknown(value) => write!(f, "Unknown({value})"),
            known => f.write_str(known.name()),
        }
    }
}

/// A packet id: (stream id, message id), ordered by stream first, then
/// message, like drpc's `ID.Less`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PacketId {
    /// The stream (RPC) the packet belongs to; 1 on Coder's connections.
    pub stream: u64,
    /// The sender's packet counter within the stream, starting at 1.
    pub message: u64,
}

impl PacketId {
    /// An id from its two parts.
    pub const fn new(stream: u64, message: u64) -> PacketId {
        PacketId { stream, message }
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<s:{} m:{}>", self.stream, self.message)
    }
}

/// The control byte for a frame: done in bit 0, kind in bits 1..=6,
/// control in bit 7.
pub const fn control_byte(kind: Kind, done: bool, control: bool) -> u8 {
    let mut byte = kind.as_u8() << 1;
    if done {
        byte |= DONE_BIT;
    }
    if control {
        byte |= CONTROL_BIT;
    }
    byte
}

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

/// The decoded header of a frame whose data may not have arrived yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Packet kind.
    pub kind: Kind,
    /// Stream id.
    pub stream_id: u64,
    /// Message id.
    pub message_id: u64,
    /// Last frame of its packet.
    pub done: bool,
    /// Control bit.
    pub control: bool,
    /// Declared number of data bytes that follow the header.
    pub data_len: u64,
    /// Number of header bytes (4 to [`MAX_FRAME_HEADER_LEN`]).
    pub header_len: usize,
}

impl FrameHeader {
    /// The frame's (stream, message) id.
    pub const fn id(&self) -> PacketId {
        PacketId::new(self.stream_id, self.message_id)
    }
}

/// Decodes the header of the frame at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` ends inside the header, which lets a reader
/// look at `data_len` before the data is buffered (see
/// [`PacketAssembler::check_header`]).
pub fn parse_frame_header(buf: &[u8]) -> Result<Option<FrameHeader>, WireError> {
    // Like Go's ParseFrame: fewer than 4 bytes can never be a frame.
    let Some((&control, mut rest)) = buf.split_first() else {
        return Ok(None);
    };
    if buf.len() < MIN_FRAME_LEN {
        return Ok(None);
    }
    let mut header_len = 1;
    let mut fields = [0u64; 3];
    for field in &mut fields {
        let Some((value, used)) = decode_varint(rest)? else {
            return Ok(None);
        };
        *field = value;
        header_len += used;
        rest = rest.get(used..).unwrap_or_default();
    }
    let [stream_id, message_id, data_len] = fields;
    Ok(Some(FrameHeader {
        kind: Kind::from_u8((control & KIND_MASK) >> 1),
        stream_id,
        message_id,
        done: control & DONE_BIT != 0,
        control: control & CONTROL_BIT != 0,
        data_len,
        header_len,
    }))
}

/// A frame whose data borrows from the parsed buffer (see [`parse_frame`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// Packet kind.
    pub kind: Kind,
    /// Stream id.
    pub stream_id: u64,
    /// Message id.
    pub message_id: u64,
    /// Last frame of its packet.
    pub done: bool,
    /// Control bit.
    pub control: bool,
    /// The frame's data bytes.
    pub data: &'a [u8],
}

impl FrameRef<'_> {
    /// The frame's (stream, message) id.
    pub const fn id(&self) -> PacketId {
        PacketId::new(self.stream_id, self.message_id)
    }

    /// An owned copy of this frame.
    pub fn to_frame(&self) -> Frame {
        Frame {
            kind: self.kind,
            stream_id: self.stream_id,
            message_id: self.message_id,
            done: self.done,
            control: self.control,
            data: Bytes::copy_from_slice(self.data),
        }
    }
}

/// Parses the frame at the start of `buf`.
///
/// Returns `Ok(Some((frame, consumed)))` with the number of bytes the frame
/// occupies, `Ok(None)` when `buf` holds only part of a frame (read more and
/// call again with the longer buffer), or an error for a malformed varint.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(FrameRef<'_>, usize)>, WireError> {
    let Some(header) = parse_frame_header(buf)? else {
        return Ok(None);
    };
    let Ok(data_len) = usize::try_from(header.data_len) else {
        return Ok(None);
    };
    let Some(end) = header.header_len.checked_add(data_len) else {
        return Ok(None);
    };
    let Some(data) = buf.get(header.header_len..end) else {
        return Ok(None);
    };
    let frame = FrameRef {
        kind: header.kind,
        stream_id: header.stream_id,
        message_id: header.message_id,
        done: header.done,
        control: header.control,
        data,
    };
    Ok(Some((frame, end)))
}

/// Removes the frame at the start of `buf` and returns it without copying its
/// data. `Ok(None)` (need more bytes) and errors leave `buf` untouched.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
    let Some((frame, end)) = parse_frame(buf)? else {
        return Ok(None);
    };
    let header_len = end - frame.data.len();
    let (kind, stream_id, message_id, done, control) =
        (frame.kind, frame.stream_id, frame.message_id, frame.done, frame.control);
    let mut raw = buf.split_to(end);
    raw.advance(header_len);
    Ok(Some(Frame {
        kind,
        stream_id,
        message_id,
        done,
        control,
        data: raw.freeze(),
    }))
}

/// One frame: a piece of a packet as it appears on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Packet kind.
    pub kind: Kind,
    /// Stream id.
    pub stream_id: u64,
    /// Message id (shared by all frames of a packet).
    pub message_id: u64,
    /// Last frame of its packet.
    pub done: bool,
    /// Control bit.
    pub control: bool,
    /// The frame's data bytes.
    pub data: Bytes,
}

impl Frame {
    /// The frame's (stream, message) id.
    pub const fn id(&self) -> PacketId {
        PacketId::new(self.stream_id, self.message_id)
    }

    /// The control byte this frame starts with.
    pub const fn control_byte(&self) -> u8 {
        control_byte(self.kind, self.done, self.control)
    }

    /// Number of header bytes [`Frame::append_to`] writes.
    pub const fn header_len(&self) -> usize {
        1 + varint_len(self.stream_id) + varint_len(self.message_id) + varint_len(self.data.len() as u64)
    }

    /// Number of bytes [`Frame::append_to`] writes.
    pub const fn encoded_len(&self) -> usize {
        self.header_len() + self.data.len()
    }

    /// Appends the frame (header and data) to `buf`.
    pub fn append_to(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u8(self.control_byte());
        put_varint(buf, self.stream_id);
        put_varint(buf, self.message_id);
        put_varint(buf, self.data.len() as u64);
        buf.extend_from_slice(&self.data);
    }

    /// The frame as bytes.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.append_to(&mut buf);
        buf.freeze()
    }
}

// ---------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------

/// One drpc packet: the unit the protocol reasons about (an Invoke, a
/// Message, a CloseSend, ...), carried on the wire as one or more frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Packet kind.
    pub kind: Kind,
    /// Stream id.
    pub stream_id: u64,
    /// Message id: the sender's packet counter on this stream, from 1.
    pub message_id: u64,
    /// The whole body.
    pub data: Bytes,
    /// Control bit: set on every frame when sending; when receiving, set if
    /// any frame of the packet had it (as in Go's reader).
    pub control: bool,
}

impl Packet {
    /// A packet without the control bit.
    pub fn new(kind: Kind, stream_id: u64, message_id: u64, data: impl Into<Bytes>) -> Packet {
        Packet {
            kind,
            stream_id,
            message_id,
            data: data.into(),
            control: false,
        }
    }

    /// An Invoke packet naming the RPC, e.g. `/coder.agent.v2.Agent/GetManifest`.
    pub fn invoke(stream_id: u64, message_id: u64, rpc: &str) -> Packet {
        Packet::new(
            Kind::Invoke,
            stream_id,
            message_id,
            Bytes::copy_from_slice(rpc.as_bytes()),
        )
    }

    /// An InvokeMetadata packet with the given entries, in order.
    pub fn invoke_metadata<K, V>(stream_id: u64, message_id: u64, entries: impl IntoIterator<Item = (K, V)>) -> Packet
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Packet::new(Kind::InvokeMetadata, stream_id, message_id, encode_metadata(entries))
    }

    /// A Message packet carrying an encoded protobuf message.
    pub fn message(stream_id: u64, message_id: u64, data: impl Into<Bytes>) -> Packet {
        Packet::new(Kind::Message, stream_id, message_id, data)
    }

    /// An Error packet with a drpc error code (0 for none) and text.
    pub fn error(stream_id: u64, message_id: u64, code: u64, text: &str) -> Packet {
        Packet::new(Kind::Error, stream_id, message_id, encode_error(code, text))
    }

    /// A Cancel packet: empty and, as drpc always sends it, with the control bit.
    pub fn cancel(stream_id: u64, message_id: u64) -> Packet {
        Packet {
            control: true,
            ..Packet::new(Kind::Cancel, stream_id, message_id, Bytes::new())
        }
    }

    /// An empty Close packet.
    pub fn close(stream_id: u64, message_id: u64) -> Packet {
        Packet::new(Kind::Close, stream_id, message_id, Bytes::new())
    }

    /// An empty CloseSend packet.
    pub fn close_send(stream_id: u64, message_id: u64) -> Packet {
        Packet::new(Kind::CloseSend, stream_id, message_id, Bytes::new())
    }

    /// The packet's (stream, message) id.
    pub const fn id(&self) -> PacketId {
        PacketId::new(self.stream_id, self.message_id)
    }

    /// The frames drpc sends for this packet: the body cut into pieces of at
    /// most [`SPLIT_SIZE`] bytes, `done` only on the last; an empty body is a
    /// single empty frame with `done` set.
    pub fn frames(&self) -> Frames {
        self.frames_with_split(SPLIT_SIZE)
    }

    /// Like [`Packet::frames`] with another maximum frame data size (drpc's
    /// `SplitSize` option; Coder uses the default). 0 is treated as 1.
    pub fn frames_with_split(&self, max_frame_data: usize) -> Frames {
        Frames {
            kind: self.kind,
            stream_id: self.stream_id,
            message_id: self.message_id,
            control: self.control,
            rest: self.data.clone(),
            max_frame_data: max_frame_data.max(1),
            finished: false,
        }
    }

    /// Number of bytes [`Packet::append_to`] writes.
    pub fn encoded_len(&self) -> usize {
        self.frames().map(|frame| frame.encoded_len()).sum()
    }

    /// Appends all frames of the packet to `buf`.
    pub fn append_to(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        for frame in self.frames() {
            frame.append_to(buf);
        }
    }

    /// All frames of the packet as bytes.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.append_to(&mut buf);
        buf.freeze()
    }
}

/// Iterator over the frames of a packet, from [`Packet::frames`]. The frames
/// share the packet's buffer (no copy).
#[derive(Debug, Clone)]
pub struct Frames {
    kind: Kind,
    stream_id: u64,
    message_id: u64,
    control: bool,
    rest: Bytes,
    max_frame_data: usize,
    finished: bool,
}

impl Iterator for Frames {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        if self.finished {
            return None;
        }
        let take = self.rest.len().min(self.max_frame_data);
        let data = self.rest.split_to(take);
        let done = self.rest.is_empty();
        self.finished = done;
        Some(Frame {
            kind: self.kind,
            stream_id: self.stream_id,
            message_id: self.message_id,
            done,
            control: self.control,
            data,
        })
    }
}

// ---------------------------------------------------------------------------
// Reassembly
// ---------------------------------------------------------------------------

/// A packet whose last frame has not arrived yet.
#[derive(Debug)]
struct Partial {
    id: PacketId,
    kind: Kind,
    control: bool,
    data: BytesMut,
}

/// Turns frames into packets with the rules of drpc v0.0.34's
/// `drpcwire.Reader` (one assembler per transport, i.e. per yamux stream).
///
/// For each frame, in this order:
/// 1. **id monotonicity**: the frame's (stream, message) id must be at least
///    the id of the packet being assembled, or, when none is, greater than
///    the id of the last completed packet (initially `<s:1 m:0>`, so ids
///    start at stream 1, message 1); otherwise [`WireError::IdNotMonotonic`];
/// 2. a frame with a different (hence higher) id than the packet being
///    assembled **silently discards** that partial packet and starts a new
///    one; a frame with the same id and another kind is
///    [`WireError::KindChanged`];
/// 3. if the body would exceed the size limit: [`WireError::PacketTooLarge`];
/// 4. on the `done` frame the packet is complete. A packet of unknown kind is
///    then dropped (`Ok(None)`) if any of its frames had the control bit, and
///    is [`WireError::UnknownKind`] otherwise; drpc applies that rule when
///    the stream handles the packet, after reassembly, so unknown packets
///    take part in id monotonicity and the size limit like any other.
///
/// After an error the connection must be torn down (as drpc does); the
/// assembler's state is then unspecified.
#[derive(Debug)]
pub struct PacketAssembler {
    limit: usize,
    last: PacketId,
    partial: Option<Partial>,
}

impl Default for PacketAssembler {
    fn default() -> Self {
        PacketAssembler::new()
    }
}

impl PacketAssembler {
    /// An assembler accepting packets of up to [`MAX_MESSAGE_SIZE`] bytes.
    pub fn new() -> PacketAssembler {
        PacketAssembler::with_max_packet_size(MAX_MESSAGE_SIZE)
    }

    /// An assembler accepting packets of up to `limit` bytes.
    pub fn with_max_packet_size(limit: usize) -> PacketAssembler {
        PacketAssembler {
            limit,
            last: PacketId::new(1, 0),
            partial: None,
        }
    }

    /// The packet size limit in force.
    pub fn max_packet_size(&self) -> usize {
        self.limit
    }

    /// Id of the last completed packet (`<s:1 m:0>` before the first).
    pub fn last_completed(&self) -> PacketId {
        self.last
    }

    /// Whether a packet is partially assembled (some frames, not the last).
    pub fn has_partial(&self) -> bool {
        self.partial.is_some()
    }

    /// Refuses a frame, given only its header, whose declared data length
    /// alone exceeds the limit, so a reader need not buffer it. Such a frame
    /// would fail in [`PacketAssembler::push`] anyway; drpc's reader gives up
    /// once it has buffered more than the limit plus 28 bytes of one frame.
    pub fn check_header(&self, header: &FrameHeader) -> Result<(), WireError> {
        if header.data_len > self.limit as u64 {
            return Err(WireError::PacketTooLarge {
                size: usize::try_from(header.data_len).unwrap_or(usize::MAX),
                limit: self.limit,
            });
        }
        Ok(())
    }

    /// Feeds one frame; returns the packet it completes, if any.
    pub fn push(&mut self, frame: Frame) -> Result<Option<Packet>, WireError> {
        let id = frame.id();

        // 1. Monotonicity. Comparing with the last completed id (rather than
        // Go's "last + 1 message") is the same rule without Go's wrap-around
        // at message u64::MAX.
        match &self.partial {
            Some(partial) if id < partial.id => {
                return Err(WireError::IdNotMonotonic {
                    frame: id,
                    last: partial.id,
                });
            }
            None if id <= self.last => {
                return Err(WireError::IdNotMonotonic {
                    frame: id,
                    last: self.last,
                });
            }
            _ => {}
        }

        // 2. Continue the partial packet, or drop it for a new id.
        let continuing = match &self.partial {
            Some(partial) if partial.id == id => {
                if frame.kind != partial.kind {
                    return Err(WireError::KindChanged {
                        frame: frame.kind,
                        packet: partial.kind,
                    });
                }
                true
            }
            _ => {
                self.partial = None;
                false
            }
        };

        // 3. Size limit on the body assembled so far.
        let before = self.partial.as_ref().map_or(0, |p| p.data.len());
        let size = before.saturating_add(frame.data.len());
        if size > self.limit {
            return Err(WireError::PacketTooLarge {
                size,
                limit: self.limit,
            });
        }

        // 4. Completion.
        if !frame.done {
            match &mut self.partial {
                Some(partial) if continuing => {
                    partial.control |= frame.control;
                    partial.data.extend_from_slice(&frame.data);
                }
                _ => {
                    self.partial = Some(Partial {
                        id,
                        kind: frame.kind,
                        control: frame.control,
                        data: BytesMut::from(&frame.data[..]),
                    });
                }
            }
            return Ok(None);
        }

        let (kind, control, data) = match self.partial.take() {
            Some(mut partial) if continuing => {
                partial.data.extend_from_slice(&frame.data);
                (partial.kind, partial.control || frame.control, partial.data.freeze())
            }
            _ => (frame.kind, frame.control, frame.data),
        };
        self.last = id;

        if !kind.is_known() {
            if control {
                return Ok(None);
            }
            return Err(WireError::UnknownKind { kind: kind.as_u8(), id });
        }
        Ok(Some(Packet {
            kind,
            stream_id: id.stream,
            message_id: id.message,
            data,
            control,
        }))
    }
}

// ---------------------------------------------------------------------------
// Size checks for writers
// ---------------------------------------------------------------------------

/// Checks, before anything is written, that a body of `len` bytes fits the
/// [`MAX_MESSAGE_SIZE`] a Coder peer accepts.
pub fn check_message_size(len: usize) -> Result<(), WireError> {
    check_message_size_with_limit(len, MAX_MESSAGE_SIZE)
}

/// Checks that a body of `len` bytes is at most `limit` bytes.
pub fn check_message_size_with_limit(len: usize, limit: usize) -> Result<(), WireError> {
    if len > limit {
        return Err(WireError::PacketTooLarge { size: len, limit });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Error bodies
// ---------------------------------------------------------------------------

/// The body of an Error packet: the code as 8 big-endian bytes, then the
/// UTF-8 text (0 = no code; [`UNIMPLEMENTED_CODE`] = unimplemented).
pub fn encode_error(code: u64, message: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(ERROR_CODE_LEN + message.len());
    buf.put_u64(code);
    buf.extend_from_slice(message.as_bytes());
    buf.freeze()
}

/// Splits an Error packet body into code and text.
///
/// Bodies shorter than 8 bytes are [`WireError::InvalidErrorData`]. Text that
/// is not valid UTF-8 (Go does not check) is converted lossily, with U+FFFD
/// replacing invalid sequences.
pub fn decode_error(data: &[u8]) -> Result<(u64, String), WireError> {
    let (Some(code), Some(text)) = (data.get(..ERROR_CODE_LEN), data.get(ERROR_CODE_LEN..)) else {
        return Err(WireError::InvalidErrorData { data: data.to_vec() });
    };
    let mut code_bytes = [0u8; ERROR_CODE_LEN];
    code_bytes.copy_from_slice(code);
    Ok((
        u64::from_be_bytes(code_bytes),
        String::from_utf8_lossy(text).into_owned(),
    ))
}

// ---------------------------------------------------------------------------
// InvokeMetadata bodies
// ---------------------------------------------------------------------------

/// Length of a length-delimited protobuf field (tag, varint length, bytes).
const fn delimited_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// The body of an InvokeMetadata packet, entries in the given order: each is
/// `0x0a len { 0x0a len key, 0x12 len value }` (drpcmetadata's encoding of
/// its map; Go writes the entries in map order, i.e. unordered).
pub fn encode_metadata<K, V>(entries: impl IntoIterator<Item = (K, V)>) -> Bytes
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut buf = BytesMut::new();
    for (key, value) in entries {
        let (key, value) = (key.as_ref().as_bytes(), value.as_ref().as_bytes());
        buf.put_u8(TAG_FIELD1_BYTES);
        put_varint(&mut buf, (delimited_len(key.len()) + delimited_len(value.len())) as u64);
        buf.put_u8(TAG_FIELD1_BYTES);
        put_varint(&mut buf, key.len() as u64);
        buf.extend_from_slice(key);
        buf.put_u8(TAG_FIELD2_BYTES);
        put_varint(&mut buf, value.len() as u64);
        buf.extend_from_slice(value);
    }
    buf.freeze()
}

/// Reads `tag`, a varint length and that many bytes at `*pos` in `data`,
/// advances `*pos` past them and returns where the bytes start. Error
/// offsets are reported as `base + position in data`.
fn read_delimited(
    data: &[u8],
    base: usize,
    pos: &mut usize,
    tag: u8,
    wrong_tag: &'static str,
) -> Result<usize, WireError> {
    let malformed = |at: usize, reason: &'static str| WireError::MalformedMetadata {
        offset: base + at,
        reason,
    };
    match data.get(*pos) {
        Some(&found) if found == tag => {}
        Some(_) => return Err(malformed(*pos, wrong_tag)),
        None => return Err(malformed(*pos, "truncated: missing field tag")),
    }
    let len_at = *pos + 1;
    let (len, used) = match decode_varint(data.get(len_at..).unwrap_or_default()) {
        Ok(Some(found)) => found,
        Ok(None) => return Err(malformed(len_at, "truncated length varint")),
        Err(_) => return Err(malformed(len_at, "invalid length varint")),
    };
    let start = len_at + used;
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| start.checked_add(len))
        .filter(|&end| end <= data.len())
        .ok_or_else(|| malformed(len_at, "length exceeds the available bytes"))?;
    *pos = end;
    Ok(start)
}

/// Decodes an InvokeMetadata body into its entries, in wire order
/// (duplicates kept; Go's map keeps the last).
///
/// The layout is checked as strictly as drpcmetadata does: each entry must
/// hold exactly a key field then a value field. Keys and values that are not
/// valid UTF-8 (Go does not check) are converted lossily.
pub fn decode_metadata(data: &[u8]) -> Result<Vec<(String, String)>, WireError> {
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let start = read_delimited(data, 0, &mut pos, TAG_FIELD1_BYTES, "entry tag is not 0x0a")?;
        let entry = data.get(start..pos).unwrap_or_default();
        let mut inner = 0;
        let key_start = read_delimited(entry, start, &mut inner, TAG_FIELD1_BYTES, "key tag is not 0x0a")?;
        let key = entry.get(key_start..inner).unwrap_or_default();
        let value_start = read_delimited(entry, start, &mut inner, TAG_FIELD2_BYTES, "value tag is not 0x12")?;
        let value = entry.get(value_start..inner).unwrap_or_default();
        if inner != entry.len() {
            return Err(WireError::MalformedMetadata {
                offset: start + inner,
                reason: "trailing bytes after the value",
            });
        }
        entries.push((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic xorshift64* generator: the fuzz loops need no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n.max(1) as u64) as usize
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next_u64() as u8).collect()
        }
    }

    fn frame(kind: Kind, stream: u64, message: u64, done: bool, data: &[u8]) -> Frame {
        Frame {
            kind,
            stream_id: stream,
            message_id: message,
            done,
            control: false,
            data: Bytes::copy_from_slice(data),
        }
    }

    fn varint(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        out
    }

    #[test]
    fn varint_round_trips_and_lengths() {
        let values = [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            65_536,
            u64::from(u32::MAX),
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        for value in values {
            let encoded = varint(value);
            assert_eq!(encoded.len(), varint_len(value), "{value}");
            assert_eq!(decode_varint(&encoded), Ok(Some((value, encoded.len()))));
        }
        assert_eq!(varint(65_536), [0x80, 0x80, 0x04]);
        assert_eq!(varint(u64::MAX).len(), MAX_VARINT_LEN);
        // Non-minimal encodings are accepted, as in Go.
        assert_eq!(decode_varint(&[0x80, 0x00]), Ok(Some((0, 2))));
    }

    #[test]
    fn varint_truncated_needs_more() {
        let encoded = varint(u64::MAX);
        for cut in 0..encoded.len() {
            assert_eq!(decode_varint(&encoded[..cut]), Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn varint_of_eleven_bytes_is_too_long() {
        let mut eleven = vec![0xff; 10];
        eleven.push(0x01);
        assert_eq!(decode_varint(&eleven), Err(WireError::VarintTooLong));
        // Ten continuation bytes are already enough to know.
        assert_eq!(decode_varint(&eleven[..10]), Err(WireError::VarintTooLong));
    }

    #[test]
    fn varint_of_ten_bytes_overflowing_u64_is_an_error() {
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(decode_varint(&max), Ok(Some((u64::MAX, 10))));
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(decode_varint(&over), Err(WireError::VarintOverflow));
        let mut over = vec![0x80; 9];
        over.push(0x7f);
        assert_eq!(decode_varint(&over), Err(WireError::VarintOverflow));
    }

    #[test]
    fn varint_errors_surface_from_each_header_field() {
        let too_long = [0xffu8; 10];
        for field in 0..3 {
            let mut buf = vec![0x05];
            buf.extend(std::iter::repeat_n(0x01, field));
            buf.extend_from_slice(&too_long);
            assert_eq!(parse_frame(&buf), Err(WireError::VarintTooLong), "{field}");
            let mut bytes = BytesMut::from(&buf[..]);
            assert_eq!(decode_frame(&mut bytes), Err(WireError::VarintTooLong));
            assert_eq!(bytes.len(), buf.len(), "errors leave the buffer alone");
        }
    }

    #[test]
    fn frame_header_bits() {
        let f = Frame {
            kind: Kind::Cancel,
            stream_id: 1,
            message_id: 3,
            done: true,
            control: true,
            data: Bytes::new(),
        };
        assert_eq!(f.encode().as_ref(), [0x89, 0x01, 0x03, 0x00]);
        for (kind, byte) in [
            (Kind::Invoke, 0x03),
            (Kind::Message, 0x05),
            (Kind::Error, 0x07),
            (Kind::Close, 0x0b),
            (Kind::CloseSend, 0x0d),
            (Kind::InvokeMetadata, 0x0f),
        ] {
            assert_eq!(control_byte(kind, true, false), byte, "{kind}");
        }
        assert_eq!(control_byte(Kind::Message, false, false), 0x04);
        let (parsed, used) = parse_frame(&[0x89, 0x01, 0x03, 0x00]).unwrap().unwrap();
        assert_eq!(used, 4);
        assert_eq!(parsed.to_frame(), f);
    }

    #[test]
    fn kind_values_round_trip() {
        for value in 0..64u8 {
            let kind = Kind::from_u8(value);
            assert_eq!(kind.as_u8(), value);
            assert_eq!(kind.is_known(), (1..=7).contains(&value));
        }
        assert_eq!(Kind::CloseSend.to_string(), "CloseSend");
        assert_eq!(Kind::from_u8(9).to_string(), "Unknown(9)");
    }

    #[test]
    fn truncated_frame_at_every_byte_position_needs_more() {
        let f = Frame {
            kind: Kind::Message,
            stream_id: 300,
            message_id: u64::MAX,
            done: true,
            control: false,
            data: Bytes::from(vec![7u8; 200]),
        };
        let encoded = f.encode();
        assert_eq!(encoded.len(), f.encoded_len());
        for cut in 0..encoded.len() {
            assert_eq!(parse_frame(&encoded[..cut]), Ok(None), "cut {cut}");
            let mut buf = BytesMut::from(&encoded[..cut]);
            assert_eq!(decode_frame(&mut buf), Ok(None), "cut {cut}");
            assert_eq!(buf.len(), cut, "need-more leaves the buffer alone");
            if cut < f.header_len() {
                assert_eq!(parse_frame_header(&encoded[..cut]), Ok(None), "cut {cut}");
            }
        }
        let (parsed, used) = parse_frame(&encoded).unwrap().unwrap();
        assert_eq!(used, encoded.len());
        assert_eq!(parsed.to_frame(), f);
        let header = parse_frame_header(&encoded[..f.header_len()]).unwrap().unwrap();
        assert_eq!(header.data_len, 200);
        assert_eq!(header.header_len, f.header_len());
    }

    #[test]
    fn decode_frame_consumes_exactly_one_frame() {
        let mut buf = BytesMut::new();
        Packet::invoke(1, 1, "/svc/Method").append_to(&mut buf);
        Packet::message(1, 2, Bytes::from_static(b"abc")).append_to(&mut buf);
        buf.extend_from_slice(&[0x0d, 0x01]); // start of a CloseSend
        let first = decode_frame(&mut buf).unwrap().unwrap();
        assert_eq!(first.kind, Kind::Invoke);
        assert_eq!(first.data.as_ref(), b"/svc/Method");
        let second = decode_frame(&mut buf).unwrap().unwrap();
        assert_eq!((second.kind, second.message_id), (Kind::Message, 2));
        assert_eq!(second.data.as_ref(), b"abc");
        assert_eq!(decode_frame(&mut buf), Ok(None));
        buf.extend_from_slice(&[0x03, 0x00]);
        let third = decode_frame(&mut buf).unwrap().unwrap();
        assert_eq!((third.kind, third.message_id), (Kind::CloseSend, 3));
        assert!(buf.is_empty());
    }

    #[test]
    fn empty_message_is_one_empty_done_frame() {
        let packet = Packet::message(1, 2, Bytes::new());
        let frames: Vec<Frame> = packet.frames().collect();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].done && frames[0].data.is_empty());
        assert_eq!(packet.encode().as_ref(), [0x05, 0x01, 0x02, 0x00]);
        let mut assembler = PacketAssembler::new();
        assert_eq!(assembler.push(frames[0].clone()), Ok(Some(packet)));
    }

    #[test]
    fn split_at_exactly_65536_bytes_is_one_frame() {
        let packet = Packet::message(1, 2, vec![1u8; SPLIT_SIZE]);
        let frames: Vec<Frame> = packet.frames().collect();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].done);
        assert_eq!(frames[0].data.len(), 65_536);
        assert_eq!(packet.encode()[..6].as_ref(), [0x05, 0x01, 0x02, 0x80, 0x80, 0x04]);
    }

    #[test]
    fn split_at_65537_bytes_is_two_frames() {
        let data: Vec<u8> = (0..SPLIT_SIZE + 1).map(|i| i as u8).collect();
        let packet = Packet::message(1, 2, data.clone());
        let frames: Vec<Frame> = packet.frames().collect();
        assert_eq!(frames.len(), 2);
        assert!(!frames[0].done && frames[1].done);
        assert_eq!(frames[0].data.len(), 65_536);
        assert_eq!(frames[1].data.len(), 1);
        assert_eq!(frames[0].control_byte(), 0x04);
        let encoded = packet.encode();
        assert_eq!(encoded.len(), packet.encoded_len());
        assert_eq!(encoded[..6].as_ref(), [0x04, 0x01, 0x02, 0x80, 0x80, 0x04]);
        assert_eq!(encoded[6 + 65_536..6 + 65_536 + 4].as_ref(), [0x05, 0x01, 0x02, 0x01]);
        let mut assembler = PacketAssembler::new();
        assert_eq!(assembler.push(frames[0].clone()), Ok(None));
        assert!(assembler.has_partial());
        let packet_back = assembler.push(frames[1].clone()).unwrap().unwrap();
        assert_eq!(packet_back.data.as_ref(), &data[..]);
    }

    #[test]
    fn split_with_a_custom_size_and_control_bit() {
        let mut packet = Packet::message(2, 9, vec![3u8; 10]);
        packet.control = true;
        let frames: Vec<Frame> = packet.frames_with_split(4).collect();
        let sizes: Vec<usize> = frames.iter().map(|f| f.data.len()).collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert!(frames.iter().all(|f| f.control && f.id() == PacketId::new(2, 9)));
        assert_eq!(frames.iter().map(|f| f.done).collect::<Vec<_>>(), [false, false, true]);
    }

    #[test]
    fn ids_start_at_stream_1_message_1() {
        let mut a = PacketAssembler::new();
        assert!(matches!(
            a.push(frame(Kind::Invoke, 0, 5, true, b"x")),
            Err(WireError::IdNotMonotonic { .. })
        ));
        let mut a = PacketAssembler::new();
        assert_eq!(
            a.push(frame(Kind::Invoke, 1, 0, true, b"x")),
            Err(WireError::IdNotMonotonic {
                frame: PacketId::new(1, 0),
                last: PacketId::new(1, 0),
            })
        );
        let mut a = PacketAssembler::new();
        assert!(a.push(frame(Kind::Invoke, 1, 1, true, b"x")).unwrap().is_some());
        assert_eq!(a.last_completed(), PacketId::new(1, 1));
    }

    #[test]
    fn ids_going_backwards_or_repeating_are_errors() {
        let mut a = PacketAssembler::new();
        a.push(frame(Kind::Message, 1, 3, true, b"")).unwrap();
        // Same id as the last completed packet.
        assert_eq!(
            a.push(frame(Kind::Message, 1, 3, true, b"")),
            Err(WireError::IdNotMonotonic {
                frame: PacketId::new(1, 3),
                last: PacketId::new(1, 3),
            })
        );
        // Lower message id.
        let mut a = PacketAssembler::new();
        a.push(frame(Kind::Message, 1, 3, true, b"")).unwrap();
        assert!(a.push(frame(Kind::Message, 1, 2, true, b"")).is_err());
        // Lower stream id, even with a higher message id.
        let mut a = PacketAssembler::new();
        a.push(frame(Kind::Message, 2, 1, true, b"")).unwrap();
        assert!(a.push(frame(Kind::Message, 1, 9, true, b"")).is_err());
        // Gaps are fine; a higher stream restarts the message ids.
        let mut a = PacketAssembler::new();
        a.push(frame(Kind::Message, 1, 5, true, b"")).unwrap();
        a.push(frame(Kind::Message, 1, 9, true, b"")).unwrap();
        a.push(frame(Kind::Invoke, 3, 1, true, b"")).unwrap();
        // A frame below a partial packet's id is an error too.
        let mut a = PacketAssembler::new();
        a.push(frame(Kind::Message, 1, 5, false, b"ab")).unwrap();
        assert_eq!(
            a.push(frame(Kind::Message, 1, 4, true, b"")),
            Err(WireError::IdNotMonotonic {
                frame: PacketId::new(1, 4),
                last: PacketId::new(1, 5),
            })
        );
    }

    #[test]
    fn higher_id_discards_partial_packet_silently() {
        let mut a = PacketAssembler::new();
        assert_eq!(a.push(frame(Kind::Message, 1, 2, false, b"lost")), Ok(None));
        // Even a different kind is fine: it is a new packet.
        let p = a.push(frame(Kind::Error, 1, 3, true, b"kept")).unwrap().unwrap();
        assert_eq!((p.kind, p.message_id, p.data.as_ref()), (Kind::Error, 3, &b"kept"[..]));
        assert!(!a.has_partial());
        // The discarded id is now below the floor.
        assert!(a.push(frame(Kind::Message, 1, 2, true, b"")).is_err());
    }

    #[test]
    fn kind_change_mid_packet_is_an_error() {
        let mut a = PacketAssembler::new();
        a.push(frame(Kind::Message, 1, 2, false, b"ab")).unwrap();
        assert_eq!(
            a.push(frame(Kind::Error, 1, 2, true, b"cd")),
            Err(WireError::KindChanged {
                frame: Kind::Error,
                packet: Kind::Message,
            })
        );
    }

    #[test]
    fn frames_of_one_packet_concatenate_and_or_the_control_bit() {
        let mut a = PacketAssembler::new();
        a.push(frame(Kind::Message, 1, 2, false, b"ab")).unwrap();
        let mut middle = frame(Kind::Message, 1, 2, false, b"cd");
        middle.control = true;
        a.push(middle).unwrap();
        let p = a.push(frame(Kind::Message, 1, 2, true, b"ef")).unwrap().unwrap();
        assert_eq!(p.data.as_ref(), b"abcdef");
        assert!(p.control);
    }

    #[test]
    fn unknown_kind_with_control_bit_is_ignored() {
        let mut a = PacketAssembler::new();
        let mut f = frame(Kind::from_u8(9), 1, 2, true, b"future");
        f.control = true;
        assert_eq!(a.push(f), Ok(None));
        // It still counts for id monotonicity, as in Go.
        assert_eq!(a.last_completed(), PacketId::new(1, 2));
        assert!(a.push(frame(Kind::Message, 1, 3, true, b"")).unwrap().is_some());
        // Control bit on any frame of the packet is enough.
        let mut first = frame(Kind::from_u8(0), 1, 4, false, b"a");
        first.control = true;
        a.push(first).unwrap();
        assert_eq!(a.push(frame(Kind::from_u8(0), 1, 4, true, b"b")), Ok(None));
    }

    #[test]
    fn unknown_kind_without_control_bit_is_an_error() {
        let mut a = PacketAssembler::new();
        assert_eq!(
            a.push(frame(Kind::from_u8(63), 1, 2, true, b"")),
            Err(WireError::UnknownKind {
                kind: 63,
                id: PacketId::new(1, 2),
            })
        );
        // Parsed from bytes: control byte 0x11 = kind 8, done.
        let (parsed, _) = parse_frame(&[0x11, 0x01, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!(parsed.kind, Kind::Unknown(8));
        assert!(PacketAssembler::new().push(parsed.to_frame()).is_err());
        // A partial unknown packet discarded by a higher id never errors.
        let mut a = PacketAssembler::new();
        a.push(frame(Kind::from_u8(8), 1, 1, false, b"")).unwrap();
        assert!(a.push(frame(Kind::Message, 1, 2, true, b"")).unwrap().is_some());
    }

    #[test]
    fn packet_over_a_small_limit_is_an_error() {
        let mut a = PacketAssembler::with_max_packet_size(10);
        a.push(frame(Kind::Message, 1, 1, false, &[0; 6])).unwrap();
        assert_eq!(
            a.push(frame(Kind::Message, 1, 1, true, &[0; 5])),
            Err(WireError::PacketTooLarge { size: 11, limit: 10 })
        );
        let mut a = PacketAssembler::with_max_packet_size(10);
        a.push(frame(Kind::Message, 1, 1, false, &[0; 6])).unwrap();
        let p = a.push(frame(Kind::Message, 1, 1, true, &[0; 4])).unwrap().unwrap();
        assert_eq!(p.data.len(), 10);
        // The limit applies before the done frame, too.
        let mut a = PacketAssembler::with_max_packet_size(10);
        assert!(a.push(frame(Kind::Message, 1, 1, false, &[0; 11])).is_err());
        // Header-only check.
        let header = parse_frame_header(&[0x05, 0x01, 0x01, 0x0b]).unwrap().unwrap();
        assert_eq!(
            a.check_header(&header),
            Err(WireError::PacketTooLarge { size: 11, limit: 10 })
        );
        let header = parse_frame_header(&[0x05, 0x01, 0x01, 0x0a]).unwrap().unwrap();
        assert_eq!(a.check_header(&header), Ok(()));
        assert_eq!(
            check_message_size_with_limit(11, 10),
            Err(WireError::PacketTooLarge { size: 11, limit: 10 })
        );
        assert_eq!(check_message_size_with_limit(10, 10), Ok(()));
    }

    #[test]
    fn packet_of_exactly_4_mib_passes_and_one_more_byte_fails() {
        assert_eq!(MAX_MESSAGE_SIZE, 4_194_304);
        assert_eq!(check_message_size(MAX_MESSAGE_SIZE), Ok(()));
        assert_eq!(
            check_message_size(MAX_MESSAGE_SIZE + 1),
            Err(WireError::PacketTooLarge {
                size: MAX_MESSAGE_SIZE + 1,
                limit: MAX_MESSAGE_SIZE,
            })
        );

        let fits = Packet::message(1, 1, vec![0xa5u8; MAX_MESSAGE_SIZE]);
        let mut wire = fits.encode();
        assert_eq!(fits.frames().count(), 64);
        let mut a = PacketAssembler::new();
        let mut got = None;
        while !wire.is_empty() {
            let (f, used) = parse_frame(&wire).unwrap().unwrap();
            if let Some(p) = a.push(f.to_frame()).unwrap() {
                got = Some(p);
            }
            wire.advance(used);
        }
        assert_eq!(got.unwrap().data.len(), MAX_MESSAGE_SIZE);

        let too_big = Packet::message(1, 2, vec![0x5au8; MAX_MESSAGE_SIZE + 1]);
        let mut result = Ok(None);
        for f in too_big.frames() {
            result = a.push(f);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(
            result,
            Err(WireError::PacketTooLarge {
                size: MAX_MESSAGE_SIZE + 1,
                limit: MAX_MESSAGE_SIZE,
            })
        );
    }

    #[test]
    fn error_body_round_trips() {
        let body = encode_error(UNIMPLEMENTED_CODE, "Unimplemented");
        assert_eq!(hex_of(&body), "000000000000000c556e696d706c656d656e746564");
        assert_eq!(decode_error(&body), Ok((12, "Unimplemented".to_string())));
        assert_eq!(decode_error(&[0; 8]), Ok((0, String::new())));
        let code = u64::MAX - 7;
        assert_eq!(decode_error(&encode_error(code, "é")), Ok((code, "é".into())));
    }

    #[test]
    fn error_body_shorter_than_8_bytes_is_invalid() {
        for len in 0..8 {
            let data = vec![1u8; len];
            assert_eq!(
                decode_error(&data),
                Err(WireError::InvalidErrorData { data: data.clone() })
            );
        }
    }

    #[test]
    fn error_text_with_invalid_utf8_is_lossy() {
        let mut body = encode_error(0, "").to_vec();
        body.extend_from_slice(&[b'a', 0xff, b'b']);
        assert_eq!(decode_error(&body), Ok((0, "a\u{fffd}b".to_string())));
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn metadata_round_trips() {
        let long = "v".repeat(200);
        let entries = [("trace-id", "00-abc"), ("", ""), ("k", long.as_str())];
        let body = encode_metadata(entries);
        let decoded = decode_metadata(&body).unwrap();
        let expected: Vec<(String, String)> = entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(decoded, expected);
        assert_eq!(hex_of(&encode_metadata([("a", "b")])), "0a060a0161120162");
        assert_eq!(decode_metadata(&[]), Ok(vec![]));
        let packet = Packet::invoke_metadata(1, 1, [("a", "b")]);
        assert_eq!(packet.kind, Kind::InvokeMetadata);
        assert_eq!(packet.encode()[0], 0x0f);
    }

    #[test]
    fn malformed_metadata_is_an_error() {
        let good = encode_metadata([("key", "value")]).to_vec();
        // Every strict prefix is truncated.
        for cut in 1..good.len() {
            assert!(
                matches!(decode_metadata(&good[..cut]), Err(WireError::MalformedMetadata { .. })),
                "cut {cut}"
            );
        }
        let cases: [(&[u8], usize); 7] = [
            (&[0x12, 0x00], 0),                               // wrong entry tag
            (&[0x0a, 0x02, 0x12, 0x00], 2),                   // wrong key tag
            (&[0x0a, 0x04, 0x0a, 0x00, 0x0a, 0x00], 4),       // wrong value tag
            (&[0x0a, 0x05, 0x0a, 0x00, 0x12, 0x00, 0x00], 6), // trailing byte
            (&[0x0a, 0x09], 1),                               // entry longer than body
            (&[0x0a, 0x04, 0x0a, 0x05, 0x12, 0x00], 3),       // key longer than entry
            (&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 1),
        ];
        for (body, offset) in cases {
            match decode_metadata(body) {
                Err(WireError::MalformedMetadata { offset: at, .. }) => {
                    assert_eq!(at, offset, "{body:02x?}")
                }
                other => panic!("{body:02x?}: {other:?}"),
            }
        }
    }

    #[test]
    fn random_packets_round_trip_through_bytes() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut wire = BytesMut::new();
        let mut sent = Vec::new();
        let mut message = 0;
        for _ in 0..200 {
            message += 1 + rng.below(3) as u64;
            let len = match rng.below(4) {
                0 => 0,
                1 => rng.below(40),
                2 => rng.below(300),
                _ => rng.below(3 * SPLIT_SIZE),
            };
            let kind = Kind::from_u8(1 + rng.below(7) as u8);
            let mut packet = Packet::new(kind, 1, message, rng.bytes(len));
            packet.control = rng.below(4) == 0;
            let split = [SPLIT_SIZE, 1 + rng.below(100)][rng.below(2)];
            for f in packet.frames_with_split(split) {
                f.append_to(&mut wire);
            }
            sent.push(packet);
        }
        let mut a = PacketAssembler::new();
        let mut received = Vec::new();
        // Feed the bytes in random-sized chunks as a reader would.
        let mut pending = BytesMut::new();
        while !wire.is_empty() {
            let chunk = (1 + rng.below(5000)).min(wire.len());
            pending.extend_from_slice(&wire.split_to(chunk));
            while let Some(f) = decode_frame(&mut pending).unwrap() {
                if let Some(p) = a.push(f).unwrap() {
                    received.push(p);
                }
            }
        }
        assert!(pending.is_empty());
        assert_eq!(received, sent);
    }

    #[test]
    fn random_frame_sequences_never_panic() {
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        for _ in 0..2_000 {
            let mut a = PacketAssembler::with_max_packet_size(1 + rng.below(64));
            for _ in 0..50 {
                let len = rng.below(40);
                let f = Frame {
                    kind: Kind::from_u8(rng.below(10) as u8),
                    stream_id: rng.below(3) as u64,
                    message_id: [rng.below(6) as u64, u64::MAX - rng.below(2) as u64][usize::from(rng.below(8) == 0)],
                    done: rng.below(3) != 0,
                    control: rng.below(4) == 0,
                    data: Bytes::from(rng.bytes(len)),
                };
                let before = a.last_completed();
                match a.push(f.clone()) {
                    Ok(Some(p)) => {
                        assert!(p.id() > before && p.kind.is_known());
                        assert!(p.data.len() <= a.max_packet_size());
                    }
                    Ok(None) => assert!(!f.done || f.control || a.has_partial()),
                    Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x0123_4567_89ab_cdef);
        for round in 0..20_000 {
            let len = rng.below(64);
            let mut input = rng.bytes(len);
            // Bias towards plausible headers so the assembler sees frames.
            if round % 2 == 0 && !input.is_empty() {
                input[0] &= 0x8f;
                for b in input.iter_mut().skip(1).take(3) {
                    *b &= 0x07;
                }
            }
            let _ = decode_varint(&input);
            let _ = parse_frame_header(&input);
            let _ = decode_error(&input);
            let _ = decode_metadata(&input);
            let mut meta = vec![0x0a];
            meta.extend_from_slice(&input);
            let _ = decode_metadata(&meta);

            let mut a = PacketAssembler::with_max_packet_size(1 + rng.below(100));
            let mut buf = BytesMut::from(&input[..]);
            while let Ok(Some(f)) = decode_frame(&mut buf) {
                if a.push(f).is_err() {
                    break;
                }
            }
            let mut rest = &input[..];
            while let Ok(Some((f, used))) = parse_frame(rest) {
                assert!(used >= MIN_FRAME_LEN && used <= rest.len());
                assert!(f.to_frame().encoded_len() <= used);
                rest = &rest[used..];
            }
        }
    }
}
