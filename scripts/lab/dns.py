#!/usr/bin/env python3
"""The lab's DNS resolver: answers A and AAAA queries for a few fixed names over UDP.

usage: dns.py --listen ADDR [--listen ADDR...] --name NAME=IP[,IP...] [--name ...]

Run by scripts/lab.sh in the master's namespace, as the course's cluster DNS runs on a
node: a pod resolving a lab name needs its queries to reach another node and the
answers to come back, which is the cross-node traffic the inter-node routes (or a
host-gw or VXLAN guest) carry. Unknown names get NXDOMAIN; nothing is forwarded.
"""
import argparse
import ipaddress
import selectors
import socket
import struct


def parse_query(data):
    """(id, flags, qname in lower case, qtype, end of the question) or None."""
    if len(data) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    labels, i = [], 12
    while i < len(data):
        n = data[i]
        i += 1
        if n == 0:
            break
        if n > 63 or i + n > len(data):
            return None
        labels.append(data[i:i + n].decode("ascii", "replace").lower())
        i += n
    if i + 4 > len(data):
        return None
    qtype, _qclass = struct.unpack("!HH", data[i:i + 4])
    return qid, flags, ".".join(labels), qtype, i + 4


def answer(data, names):
    q = parse_query(data)
    if q is None:
        return None
    qid, flags, qname, qtype, end = q
    rd = flags & 0x0100
    addrs = names.get(qname.rstrip("."))
    if addrs is None:  # NXDOMAIN, authoritative
        return struct.pack("!HHHHHH", qid, 0x8403 | rd, 1, 0, 0, 0) + data[12:end]
    want = {1: 4, 28: 6}.get(qtype)
    rrs = [a for a in addrs if a.version == want]
    out = struct.pack("!HHHHHH", qid, 0x8400 | rd, 1, len(rrs), 0, 0) + data[12:end]
    for a in rrs:
        out += struct.pack("!HHHIH", 0xC00C, qtype, 1, 60, len(a.packed)) + a.packed
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", action="append", required=True)
    ap.add_argument("--name", action="append", required=True)
    ap.add_argument("--port", type=int, default=53)
    args = ap.parse_args()
    names = {}
    for spec in args.name:
        name, _, ips = spec.partition("=")
        names[name.lower().rstrip(".")] = [ipaddress.ip_address(x) for x in ips.split(",")]
    sel = selectors.DefaultSelector()
    for addr in args.listen:
        fam = socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.bind((addr, args.port))
        sel.register(s, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            data, peer = key.fileobj.recvfrom(512)
            reply = answer(data, names)
            if reply is not None:
                key.fileobj.sendto(reply, peer)


if __name__ == "__main__":
    main()
