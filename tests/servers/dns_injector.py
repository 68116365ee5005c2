"""An on-path DNS injector for the censor lab, run inside the censor (router) namespace: it
watches the queries crossing one interface (an AF_PACKET socket: it sees, it does not
stop) and, for a query naming the blocked domain, sends a forged reply from the resolver's
address at once. The real query goes on to the resolver, whose reply arrives second — the
race the GFW's injector runs. NFQUEUE is not needed: injection never holds the packet.

    python -m tests.servers.dns_injector IFACE DOMAIN FORGED_IP

Prints "ready" once listening; stops when its stdin closes. Needs root (CAP_NET_RAW).
"""

from __future__ import annotations

import select
import socket
import struct
import sys

import dns.exception
import dns.message
import dns.rrset

ETH_P_IP = 0x0800
_MAX_TURNS = 100000  # packets looked at before giving up (a test lasts far fewer)


def _forged(packet: bytes, domain: str, forged_ip: str) -> bytes | None:
    """The forged IPv4/UDP reply to `packet` if it is a query for `domain`, else None."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_UDP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    src, dst = packet[12:16], packet[16:20]
    sport, dport = struct.unpack("!HH", packet[ihl : ihl + 4])
    if dport != 53:
        return None
    try:
        query = dns.message.from_wire(packet[ihl + 8 :])
    except dns.exception.DNSException:
        return None
    if not query.question or query.question[0].name.to_text().rstrip(".") != domain:
        return None
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text(query.question[0].name, 300, "IN", "A", forged_ip))
    payload = reply.to_wire()
    udp = struct.pack("!HHHH", 53, sport, 8 + len(payload), 0) + payload  # checksum 0: none (IPv4 allows it)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0, dst, src)
    return header + udp  # the kernel fills the header checksum for IP_HDRINCL


def main(iface: str, domain: str, forged_ip: str) -> None:
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sniffer.bind((iface, ETH_P_IP))
    sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    print("ready", flush=True)
    for _ in range(_MAX_TURNS):
        readable, _, _ = select.select([sniffer, sys.stdin], [], [], 5)
        if sys.stdin in readable and not sys.stdin.read(1):
            break  # the parent closed our stdin
        if sniffer in readable:
            packet, (_, _, pkttype, _, _) = sniffer.recvfrom(65535)
            if pkttype == socket.PACKET_OUTGOING:
                continue
            forged = _forged(packet, domain, forged_ip)
            if forged is not None:
                sender.sendto(forged, (socket.inet_ntoa(forged[16:20]), 0))


if __name__ == "__main__":
    main(*sys.argv[1:4])
