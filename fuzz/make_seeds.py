#!/usr/bin/env python3
"""Writes the seed inputs under fuzz/seeds/<target>/ from the project's own
wire recordings (tests/vectors, path given as the first argument) and
from hand-written cases. Re-run after changing a target's input layout:

    python3 fuzz/make_seeds.py tests/vectors

Input layouts are documented on each target in fuzz/src/targets.rs.
"""
import json, os, struct, sys

VEC = sys.argv[1] if len(sys.argv) > 1 else "tests/vectors"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
MAX_SEED = 4096  # keep seeds small: libFuzzer's default max_len follows them


def put(target, name, data):
    if len(data) > MAX_SEED:
        return
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def load(path):
    with open(os.path.join(VEC, path)) as f:
        return json.load(f)


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# --- drpc_wire / drpc_payloads ------------------------------------------------
drpc_files = sorted(f for f in os.listdir(os.path.join(VEC, "drpc")) if f.endswith(".json") and f != "protobuf_messages.json")
for f in drpc_files:
    d = load(os.path.join("drpc", f))
    base = f[:-5]
    for side in ("client_to_server_hex", "server_to_client_hex"):
        raw = bytes.fromhex(d.get(side, ""))
        if not raw:
            continue
        tag = side.split("_")[0]
        put("drpc_wire", f"{base}.{tag}.whole", b"\x00" + raw)
        put("drpc_wire", f"{base}.{tag}.bytewise", b"\x01" + raw)
        put("drpc_wire", f"{base}.{tag}.split7", b"\x07" + raw)
    for side in ("client_frames", "server_frames"):
        for i, fr in enumerate(d.get(side, [])):
            data = bytes.fromhex(fr.get("data_hex", "") or "")
            if fr.get("kind") in (3, 4):  # Error, InvokeMetadata bodies
                put("drpc_payloads", f"{base}.{side}.{i}", data)
# hostile framing
put("drpc_wire", "varint_11_bytes", b"\x00\x03" + b"\xff" * 10 + b"\x01")
put("drpc_wire", "frame_announces_1gib", b"\x00\x05\x01\x01" + varint(1 << 30))
put("drpc_wire", "unknown_kind_no_control", b"\x00" + bytes([0x3F << 1 | 1, 1, 1, 0]))
put("drpc_wire", "unknown_kind_control", b"\x00" + bytes([0x80 | 0x3F << 1 | 1, 1, 1, 0]))
put("drpc_wire", "id_goes_backwards", b"\x00" + bytes([0x05, 1, 2, 0, 0x05, 1, 1, 0]))
put("drpc_wire", "kind_change_mid_packet", b"\x00" + bytes([0x04, 1, 1, 1, 0x41, 0x03, 1, 1, 0]))
put("drpc_wire", "eof_inside_packet", b"\x03" + bytes([0x04, 1, 1, 3]) + b"abc")
put("drpc_payloads", "error_short", b"\x00\x00\x01")
put("drpc_payloads", "error_code12", struct.pack(">Q", 12) + b"Unimplemented")
put("drpc_payloads", "varint_max", b"\xff" * 9 + b"\x01")
put("drpc_payloads", "metadata_two", b"\x0a\x08\x0a\x01k\x12\x03val" + b"\x0a\x06\x0a\x01a\x12\x01b")

# --- yamux_session / ws_bytes ---------------------------------------------------
yamux_streams = []
for f in sorted(os.listdir(os.path.join(VEC, "yamux"))):
    if not f.endswith(".json"):
        continue
    d = load(os.path.join("yamux", f))
    raw = bytes.fromhex(d.get("server_to_client_hex", "") or "")
    if raw:
        yamux_streams.append((f[:-5], raw))
        put("yamux_session", f[:-5] + ".whole", b"\x00" + raw)
        put("yamux_session", f[:-5] + ".split5", b"\x05" + raw)


def hdr(typ, flags, sid, length):
    return struct.pack(">BBHII", 0, typ, flags, sid, length)


put("yamux_session", "goaway_first", b"\x00" + hdr(3, 0, 0, 2))
put("yamux_session", "bad_version", b"\x00" + b"\x01" + hdr(2, 1, 0, 7)[1:])
put("yamux_session", "length_ffffffff", b"\x00" + hdr(0, 0, 1, 0xFFFFFFFF))
put("yamux_session", "window_update_max", b"\x00" + hdr(1, 2, 1, 0xFFFFFFFF))
put("yamux_session", "data_unopened_stream", b"\x00" + hdr(0, 0, 9, 3) + b"abc")
put("yamux_session", "even_syn_from_server", b"\x03" + hdr(1, 1, 2, 0) + hdr(0, 0, 2, 2) + b"hi")
put("yamux_session", "ping_then_goaway", b"\x02" + hdr(2, 1, 0, 42) + hdr(3, 0, 0, 1))


def ws_frame(opcode, payload, fin=True, mask=None):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    m = 0x80 if mask is not None else 0
    if n < 126:
        h = bytes([b0, m | n])
    elif n < 65536:
        h = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if mask is not None:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        h += bytes(mask)
    return h + payload


# ws_bytes seed: bit 0 = role (0 client: unmasked frames from a server,
# 1 server: masked frames from a client), the rest the chunking.
for name, raw in yamux_streams:
    frames = b"".join(ws_frame(2, raw[i:i + 300]) for i in range(0, len(raw), 300))
    put("ws_bytes", name + ".client", b"\x00" + frames)
    put("ws_bytes", name + ".client_split", b"\x0e" + frames)
    masked = b"".join(ws_frame(2, raw[i:i + 300], mask=b"\x12\x34\x56\x78") for i in range(0, len(raw), 300))
    put("ws_bytes", name + ".server", b"\x01" + masked)
put("ws_bytes", "ping_pong_close", b"\x00" + ws_frame(9, b"1") + ws_frame(10, b"1") + ws_frame(2, b"data") + ws_frame(8, b"\x03\xe8"))
put("ws_bytes", "text_message", b"\x00" + ws_frame(2, b"ok") + ws_frame(1, b"hello"))
put("ws_bytes", "fragmented", b"\x04" + ws_frame(2, b"ab", fin=False) + ws_frame(0, b"cd"))
put("ws_bytes", "unmasked_to_server", b"\x01" + ws_frame(2, b"nomask"))
put("ws_bytes", "huge_length", b"\x00" + bytes([0x82, 127]) + b"\x7f" + b"\xff" * 7)

# --- sse -------------------------------------------------------------------------
reinit = json.dumps({"workspace_id": "0fa2c9b6-7a9e-4a4c-9a8e-3f0b8c1d2e4f", "reason": "prebuild_claimed"})
put("sse", "ping", b"\x02event: ping\n\n")
put("sse", "reinit", ("\x05event: data\ndata: " + reinit + "\n\n").encode())
put("sse", "crlf_bom_comment", b"\x07\xef\xbb\xbf: hi\r\nevent: data\r\ndata: a\r\ndata: b\r\n\r\nretry: 10\rid: 7\r\r")
put("sse", "small_limit_overflow", b"\x00data: " + b"x" * 40 + b"\n\n")
put("sse", "error_event", b"\x02event: error\ndata: {\"message\":\"boom\"}\n\n")

# --- api_error ---------------------------------------------------------------------
def api(status, ct, body):
    return struct.pack(">H", status) + bytes([ct]) + body

put("api_error", "json_400_validations", api(400, 1, b'{"message":"Unknown or unsupported API version","validations":[{"field":"version","detail":"invalid"}]}'))
put("api_error", "json_no_message_401", api(401, 2, b'{"detail":"x"}'))
put("api_error", "html_502", api(502, 3, b"<html>bad gateway</html>"))
put("api_error", "json_bad", api(500, 4, b"{not json"))
put("api_error", "empty_body", api(404, 1, b"  \n"))
put("api_error", "custom_ct", api(413, 12, b"text/html;q=1" + b"\xff\xfe"))

# --- version -----------------------------------------------------------------------
for i, v in enumerate(["2.0", "2.8", "2.x", "99999999999999999999.1", "-1.0", "2.8.1", "", "+2.+1", "02.08", "3.0", "1.9"]):
    put("version", f"v{i}", bytes([8]) + v.encode())

# --- settings ----------------------------------------------------------------------
S = b"\xff"
put("settings", "token", b"https://coder.example.com" + S + b"token" + S + b"abcdefghijklmnop" + S + S + b"agent" + S + b"8")
put("settings", "aws", b"http://127.0.0.1:3000/sub/" + S + b"aws-instance-identity" + S + S + b"http://169.254.169.254" + S + S)
put("settings", "bad_scheme", b"ftp://x" + S + b"google-instance-identity")
put("settings", "bad_auth", b"https://c" + S + b"kerberos" + S + b"tok")
put("settings", "token_newline", b"https://c" + S + S + b"tok\r\nX: y")

# --- convert -----------------------------------------------------------------------
SEL = {
    "coder.agent.v2.Manifest": 0, "coder.agent.v2.WorkspaceApp": 1, "coder.agent.v2.WorkspaceAgentScript": 2,
    "coder.agent.v2.WorkspaceAgentMetadata.Description": 3, "coder.agent.v2.WorkspaceAgentDevcontainer": 4,
    "coder.agent.v2.Lifecycle": 5, "coder.agent.v2.Startup": 6, "coder.agent.v2.UpdateAppStatusRequest": 7,
    "coder.agent.v2.Log": 8, "coder.agent.v2.WorkspaceAgentMetadata.Result": 9, "coder.agent.v2.Metadata": 10,
    "coder.agent.v2.ServiceBanner": 11, "coder.agent.v2.BannerConfig": 12, "coder.tailnet.v2.DERPMap": 13,
    "coder.agent.v2.Stats": 14, "coder.agent.v2.Stats.Metric": 15, "coder.agent.v2.BatchUpdateAppHealthRequest": 16,
    "coder.agent.v2.UpdateLifecycleRequest": None,
}
pm = load("drpc/protobuf_messages.json")
for i, m in enumerate(pm["messages"]):
    sel = SEL.get(m["proto_type"])
    if sel is not None:
        put("convert", f"{i}.{m['proto_type'].split('.')[-1]}", bytes([sel]) + bytes.fromhex(m["canonical_hex"]))
for sel in range(18):
    put("convert", f"empty.{sel}", bytes([sel]))
put("convert", "log_bytes", bytes([17]) + b"out\x00put \xff\xfe ok")
