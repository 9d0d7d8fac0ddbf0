"""Cluster DNS (what CoreDNS does on a real cluster), built on dnslib, answering from the node's Service cache.

Answers, for this cluster only (other clusters' Services are unknown here, as on real clusters):
- `<svc>.<ns>.svc.<domain>`: A of the ClusterIP, or the ready endpoint addresses of a headless Service;
- `<hostname>.<svc>.<ns>.svc.<domain>`: A of the endpoint with that hostname (StatefulSets);
- `_<port>._<proto>.<svc>.<ns>.svc.<domain>`: SRV;
- `<a-b-c-d>.<ns>.pod.<domain>`: A of that pod IP;
- the run's API server names (`clusterN.<run>.isthmus.internal`), so pods reach what the kubeconfig names.
Everything else is NXDOMAIN: nothing is forwarded off the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, SOA, SRV, A, DNSRecord

from isthmus.local.node.config import NodeConfig
from isthmus.local.node.services import ServiceCache

log = logging.getLogger(__name__)
TTL = 5


class ClusterDns:
    def __init__(self, config: NodeConfig, cache: ServiceCache) -> None:
        self.config = config
        self.cache = cache
        self.domain = config.cluster_domain.strip(".").lower()
        self.names = {name.lower().strip("."): address for name, address in config.api_hostnames.items()}
        self._servers: list[Any] = []

    def lookup(self, name: str, qtype: str) -> tuple[int, list[RR]]:
        """(rcode, answers) for one question."""
        name = name.lower().rstrip(".")
        if name in self.names:
            return RCODE.NOERROR, [RR(name, QTYPE.A, rdata=A(self.names[name]), ttl=TTL)] if qtype in (
                "A",
                "ANY",
            ) else []
        suffix = "." + self.domain
        if not name.endswith(suffix):
            return RCODE.NXDOMAIN, []
        labels = name[: -len(suffix)].split(".")
        if len(labels) >= 3 and labels[-1] == "svc":
            return self._service(name, labels[:-1], qtype)
        if len(labels) == 3 and labels[-1] == "pod":
            try:
                address = ipaddress.IPv4Address(labels[0].replace("-", "."))
            except ValueError:
                return RCODE.NXDOMAIN, []
            return RCODE.NOERROR, [RR(name, QTYPE.A, rdata=A(str(address)), ttl=TTL)] if qtype in (
                "A",
                "ANY",
            ) else []
        if labels in (["svc"], [""]) or (len(labels) == 2 and labels[-1] == "svc"):
            return RCODE.NOERROR, []  # an existing subtree (ndots search walks these)
        return RCODE.NXDOMAIN, []

    def _service(self, name: str, labels: list[str], qtype: str) -> tuple[int, list[RR]]:
        if labels[0].startswith("_") and len(labels) == 4:
            port_name, protocol, svc, namespace = labels[0][1:], labels[1][1:], labels[2], labels[3]
            return self._srv(name, svc, namespace, port_name, protocol, qtype)
        if len(labels) == 2:
            svc, namespace, hostname = labels[0], labels[1], None
        elif len(labels) == 3:
            hostname, svc, namespace = labels
        else:
            return RCODE.NXDOMAIN, []
        service = self.cache.services.get((namespace, svc))
        if service is None:
            return RCODE.NXDOMAIN, []
        spec = service.get("spec", {})
        if spec.get("type") == "ExternalName" and hostname is None:
            from dnslib import CNAME

            target = str(spec.get("externalName", ""))
            return RCODE.NOERROR, [RR(name, QTYPE.CNAME, rdata=CNAME(target), ttl=TTL)]
        if qtype not in ("A", "ANY"):
            return RCODE.NOERROR, []
        ip = spec.get("clusterIP")
        if hostname is None and ip and ip != "None":
            return RCODE.NOERROR, [RR(name, QTYPE.A, rdata=A(ip), ttl=TTL)]
        answers: list[RR] = []
        for _, endpoint in self.cache.endpoints_of(namespace, svc):
            if (endpoint.get("conditions") or {}).get("ready", True) is False and not spec.get(
                "publishNotReadyAddresses"
            ):
                continue
            if hostname is not None and endpoint.get("hostname") != hostname:
                continue
            answers.extend(RR(name, QTYPE.A, rdata=A(a), ttl=TTL) for a in endpoint.get("addresses") or [])
        if not answers and hostname is not None:
            return RCODE.NXDOMAIN, []
        return RCODE.NOERROR, answers

    def _srv(
        self, name: str, svc: str, namespace: str, port_name: str, protocol: str, qtype: str
    ) -> tuple[int, list[RR]]:
        service = self.cache.services.get((namespace, svc))
        if service is None:
            return RCODE.NXDOMAIN, []
        ports = [
            p
            for p in service.get("spec", {}).get("ports") or []
            if p.get("name") == port_name and str(p.get("protocol", "TCP")).lower() == protocol
        ]
        if not ports:
            return RCODE.NXDOMAIN, []
        if qtype not in ("SRV", "ANY"):
            return RCODE.NOERROR, []
        target = f"{svc}.{namespace}.svc.{self.domain}"
        return RCODE.NOERROR, [
            RR(name, QTYPE.SRV, rdata=SRV(0, 100, int(p["port"]), target), ttl=TTL) for p in ports
        ]

    def answer(self, data: bytes) -> bytes | None:
        try:
            request = DNSRecord.parse(data)
        except Exception:
            return None
        reply = request.reply()
        for question in request.questions:
            qtype = QTYPE[question.qtype]
            rcode, answers = self.lookup(str(question.qname), qtype)
            reply.header.rcode = rcode
            for rr in answers:
                reply.add_answer(rr)
            if rcode == RCODE.NXDOMAIN or not answers:
                soa = SOA(f"ns.dns.{self.domain}", f"hostmaster.{self.domain}", (1, 7200, 1800, 86400, TTL))
                reply.add_auth(RR(self.domain, QTYPE.SOA, rdata=soa, ttl=TTL))
        reply.header.aa = 1
        reply.header.ra = 0
        return bytes(reply.pack())

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        dns = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                reply = dns.answer(data)
                if reply is not None:
                    self.transport.sendto(reply, addr)  # type: ignore[attr-defined]

        async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    reply = dns.answer(await reader.readexactly(size))
                    if reply is None:
                        break
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
            writer.close()

        host = self.config.dns_address
        transport, _ = await loop.create_datagram_endpoint(Udp, local_addr=(host, 53))
        server = await asyncio.start_server(tcp, host, 53)
        self._servers = [transport, server]
        log.info("cluster DNS on %s:53", host)

    def stop(self) -> None:
        for server in self._servers:
            server.close()


__all__ = ["AAAA", "ClusterDns"]
