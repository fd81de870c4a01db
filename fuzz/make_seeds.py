#!/usr/bin/env python3
"""Rebuilds fuzz/seeds/<target>/ from the nghq vectors in interop/vectors/nghq.

Run from anywhere: python3 fuzz/make_seeds.py. Only writes under fuzz/seeds/.
The seeds are committed; this script documents how they were made and remakes
them if the input formats of the targets change. Files named regression-* are
inputs that once crashed a target (see fuzz/README.md); they are left alone.
"""

import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
VECTORS = ROOT / "interop" / "vectors" / "nghq"
SEEDS = ROOT / "fuzz" / "seeds"


def datagrams(name):
    """The UDP payloads of a .datagrams file (4-byte BE length + bytes)."""
    raw = (VECTORS / f"{name}.datagrams").read_bytes()
    out, pos = [], 0
    while pos < len(raw):
        (n,) = struct.unpack_from(">I", raw, pos)
        out.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def expected(name):
    return json.loads((VECTORS / f"{name}.expected.json").read_text())


def varint(buf, pos):
    first = buf[pos]
    n = 1 << (first >> 6)
    v = first & 0x3F
    for b in buf[pos + 1 : pos + n]:
        v = (v << 8) | b
    return v, pos + n


def stream_bytes(name):
    """Each stream's bytes, reassembled from the STREAM frames of the vector."""
    exp = expected(name)
    sid_len = exp["session_id_len"]
    streams = {}
    for dgram in datagrams(name):
        pos = 1 + sid_len + (dgram[0] & 3) + 1
        while pos < len(dgram):
            ty, pos = varint(dgram, pos)
            if ty == 0x00:
                continue
            if ty == 0x01:
                continue
            if ty == 0x04:
                for _ in range(3):
                    _, pos = varint(dgram, pos)
                continue
            if not 0x08 <= ty <= 0x0F:
                break
            sid, pos = varint(dgram, pos)
            off = 0
            if ty & 4:
                off, pos = varint(dgram, pos)
            if ty & 2:
                n, pos = varint(dgram, pos)
            else:
                n = len(dgram) - pos
            buf = streams.setdefault(sid, bytearray())
            if len(buf) < off + n:
                buf.extend(b"\0" * (off + n - len(buf)))
            buf[off : off + n] = dgram[pos : pos + n]
            pos += n
    return streams


def write(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(bytes(data))


def packet_open():
    for name, largest in [("s01-hello-v4", None), ("s13-crafted-minimal", None), ("s15-crafted-grease", 999)]:
        exp = expected(name)
        for i, dgram in enumerate(datagrams(name)[:2]):
            flags = 0 if largest is None else 1
            head = bytes([exp["session_id_len"], flags]) + struct.pack(">Q", largest or 0)
            write("packet_open", f"{name}-{i}", head + dgram)


def receiver():
    # [sid_len] [sid] [config] then [dt * 20 ms] [len u16 BE] [datagram] records.
    cases = [
        ("s01-hello-v4", 0x00),
        ("s06-hello-nossl-v4", 0x00),
        ("s04-dir3-v4", 0x21),  # one push at a time, 8 KiB buffered in total
        ("s09-dir3-custom-sid-port-url", 0x00),
        ("s12-nested-early-close-nossl-v4", 0x00),
        ("s13-crafted-minimal", 0x00),
        ("s14-crafted-goaway", 0x00),
        ("s15-crafted-grease", 0xC8),  # small header blocks and gap limit
        ("s16-crafted-control", 0x00),
        ("s18-crafted-empty-bodies", 0x04),
    ]
    for name, cfg in cases:
        exp = expected(name)
        sid = bytes.fromhex(exp["session_id_hex"])
        out = bytearray([len(sid)]) + sid + bytes([cfg])
        prev = 0
        for pkt, dgram in zip(exp["packets"], datagrams(name)):
            dt = min(255, round((pkt["time_us"] - prev) / 20_000))
            prev = pkt["time_us"]
            out += bytes([dt]) + struct.pack(">H", len(dgram)) + dgram
        write("receiver", name, out)


def h3_frames():
    for name in ["s01-hello-v4", "s13-crafted-minimal", "s15-crafted-grease", "s16-crafted-control"]:
        exp = expected(name)
        streams = stream_bytes(name)
        for s in exp["streams"]:
            frames = s.get("h3_frames") or []
            if not frames:
                continue
            start = min(f["offset"] for f in frames)
            data = bytes(streams[s["stream_id"]][start:])[:4096]
            write("h3_frames", f"{name}-stream{s['stream_id']}", data)
    # SETTINGS, CANCEL_PUSH, GOAWAY, MAX_PUSH_ID, DATA_WITH_OFFSET, grease.
    crafted = bytes.fromhex("0404 0106 0700" "0301 05" "0701 00" "0d01 08" "4d00 06 0a 68656c6c6f" "2100")
    write("h3_frames", "crafted-control", crafted)


def qpack_decode():
    seen = set()
    for name in ["s01-hello-v4", "s13-crafted-minimal", "s15-crafted-grease", "s18-crafted-empty-bodies"]:
        for s in expected(name)["streams"]:
            for f in s.get("h3_frames") or []:
                fs = f.get("field_section")
                if not fs:
                    continue
                section = bytes.fromhex("0000" + "".join(x["wire_hex"] for x in fs["fields"]))
                if section in seen:
                    continue
                seen.add(section)
                write("qpack_decode", f"{name}-{len(seen)}", section)


ALTSVC = [
    'h3m-07="232.0.0.1:2000"; session-id=53657373696f6e204944; source-address="10.0.0.1"',
    'h3m-07="[ff3e::8000:1]:2000"; source-address="2001:db8::10"; session-id=2a; session-idle-timeout=60000; '
    "max-concurrent-resources=8; peak-flow-rate=4000000; cipher-suite=1301; key=00112233445566778899aabbccddeeff; "
    "iv=0123456789abcdef01234567; digest-algorithm=SHA-256; signature-algorithm=rsa-sha256; ma=3600",
    'h3=":443", h3m-07="232.0.0.1:2000"; source-address="10.0.0.1"; session-id=53657373696f6e204944',
    'Alt-Svc: h3m-09-data-offset=232.1.2.3:4433; session-id=0xcafe0001; extensions="0020=01,0021"; '
    'persist=1; x-note="a \\"quoted\\" value"; digest-algorithm=sha-256; digest-algorithm=SHA-256',
    "h3m=\"[ff0e::1]:443\"; cipher-suite=1303; source-address=2001:db8::1; ma=99999999999999999999999;;",
    "clear",
]


def altsvc_parse():
    for i, text in enumerate(ALTSVC):
        write("altsvc_parse", f"altsvc-{i}", text.encode())


def capture():
    for name in ["s01-hello-v4.pcap", "s01-hello-v4.datagrams", "s08-dir3-v6.pcap", "s13-crafted-minimal.pcap"]:
        write("capture", name, (VECTORS / name).read_bytes())
    # The first records of the IPv6 fragmented capture, cut at a record boundary.
    raw = (VECTORS / "s17-data100k-v6-fragmented.pcap").read_bytes()
    pos = 24
    while pos + 16 <= len(raw):
        (incl,) = struct.unpack_from("<I" if raw[:4] == b"\xd4\xc3\xb2\xa1" else ">I", raw, pos + 8)
        if pos + 16 + incl > 8192:
            break
        pos += 16 + incl
    write("capture", "s17-first-records.pcap", raw[:pos])
    for name in ["s01-hello-v4", "s08-dir3-v6"]:
        write("capture", f"{name}.pcapng", pcap_to_pcapng((VECTORS / f"{name}.pcap").read_bytes()))


def pcap_records(raw):
    """(seconds, microseconds, captured bytes, original length) of each record of a classic pcap."""
    endian = "<" if raw[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    pos = 24
    while pos + 16 <= len(raw):
        sec, usec, incl, orig = struct.unpack_from(endian + "IIII", raw, pos)
        yield sec, usec, raw[pos + 16 : pos + 16 + incl], orig
        pos += 16 + incl


def pcapng_block(block_type, body):
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", block_type, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def pcap_to_pcapng(raw):
    """A classic microsecond pcap as pcapng, as `editcap -F pcapng` writes it:
    one little-endian section, one interface (default microsecond units), an
    Enhanced Packet Block per record."""
    endian = "<" if raw[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    (linktype,) = struct.unpack_from(endian + "I", raw, 20)
    out = pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += pcapng_block(1, struct.pack("<HHI", linktype & 0xFFFF, 0, 0))
    for sec, usec, data, orig in pcap_records(raw):
        ts = sec * 1_000_000 + usec
        out += pcapng_block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), orig) + data)
    return out


def ip():
    # Whole IP packets (the Ethernet header of the vectors taken off): the
    # first IPv4 and IPv6 datagrams, and IPv6 fragments back to back.
    for name in ["s01-hello-v4", "s08-dir3-v6"]:
        _, _, frame, _ = next(pcap_records((VECTORS / f"{name}.pcap").read_bytes()))
        write("ip", f"{name}-first-packet", frame[14:])
    # The fragment sequence format of the target: [id] [offset / 8] [more] [len] [bytes].
    seq = bytearray()
    for offset, more, piece in [(0, 1, bytes(range(16))), (2, 1, bytes(16)), (4, 0, b"tail")]:
        seq += bytes([7, offset, more, len(piece)]) + piece
    write("ip", "fragments", seq)


def main():
    # Inputs named regression-* reproduce fixed bugs and are kept as they are.
    for p in SEEDS.rglob("*"):
        if p.is_file() and not p.name.startswith("regression-"):
            p.unlink()
    packet_open()
    receiver()
    h3_frames()
    qpack_decode()
    altsvc_parse()
    capture()
    ip()
    total = sum(p.stat().st_size for p in SEEDS.rglob("*") if p.is_file())
    print(f"{sum(1 for p in SEEDS.rglob('*') if p.is_file())} seed files, {total} bytes")


if __name__ == "__main__":
    main()
