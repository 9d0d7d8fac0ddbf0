"""Istio's certificate service on the wire: `istio.v1.auth.IstioCertificateService/CreateCertificate`.

No package ships this small proto, so its descriptor is written here from Istio's published field numbers
(security/proto/istioca.proto):

    message IstioCertificateRequest { string csr = 1; string subject_id = 2; int64 validity_duration = 3;
                                      google.protobuf.Struct metadata = 4; }
    message IstioCertificateResponse { repeated string cert_chain = 1; }   // leaf first, root last

Callers authenticate with gRPC metadata `authorization: Bearer <service-account token>`. The typed codec below
is the only way the rest of the mesh touches these messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, struct_pb2

PACKAGE = "istio.v1.auth"
SERVICE = f"{PACKAGE}.IstioCertificateService"
METHOD = f"/{SERVICE}/CreateCertificate"
DEFAULT_PORT = 8060


def _file() -> descriptor_pb2.FileDescriptorProto:
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="isthmus/istio/v1/auth/ca.proto",
        package=PACKAGE,
        syntax="proto3",
        dependency=["google/protobuf/struct.proto"],
    )
    request = proto.message_type.add(name="IstioCertificateRequest")
    request.field.add(name="csr", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    request.field.add(name="subject_id", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    request.field.add(name="validity_duration", number=3, type=field.TYPE_INT64, label=field.LABEL_OPTIONAL)
    request.field.add(
        name="metadata",
        number=4,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_OPTIONAL,
        type_name=".google.protobuf.Struct",
    )
    response = proto.message_type.add(name="IstioCertificateResponse")
    response.field.add(name="cert_chain", number=1, type=field.TYPE_STRING, label=field.LABEL_REPEATED)
    service = proto.service.add(name="IstioCertificateService")
    service.method.add(
        name="CreateCertificate",
        input_type=f".{PACKAGE}.IstioCertificateRequest",
        output_type=f".{PACKAGE}.IstioCertificateResponse",
    )
    return proto


def _classes() -> tuple[Any, Any]:
    pool = descriptor_pool.DescriptorPool()
    struct_file = descriptor_pb2.FileDescriptorProto()
    struct_pb2.DESCRIPTOR.CopyToProto(struct_file)
    pool.Add(struct_file)
    pool.Add(_file())
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.IstioCertificateRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.IstioCertificateResponse")),
    )


_Request, _Response = _classes()


class ProtocolError(ValueError):
    """Bytes that are not the message they should be."""


@dataclass(frozen=True)
class CertificateRequest:
    csr: str
    validity_seconds: int = 0  # 0: the CA's default
    cluster_id: str = ""  # metadata ClusterID, informational

    def encode(self) -> bytes:
        message = _Request(csr=self.csr, validity_duration=self.validity_seconds)
        if self.cluster_id:
            message.metadata.fields["ClusterID"].string_value = self.cluster_id
        data: bytes = message.SerializeToString()
        return data

    @classmethod
    def decode(cls, data: bytes) -> CertificateRequest:
        message = _Request()
        try:
            message.ParseFromString(data)
        except Exception as exc:  # protobuf's DecodeError and friends
            raise ProtocolError(f"not an IstioCertificateRequest: {exc}") from None
        cluster = message.metadata.fields.get("ClusterID")
        return cls(
            csr=message.csr,
            validity_seconds=int(message.validity_duration),
            cluster_id=cluster.string_value if cluster is not None else "",
        )


@dataclass(frozen=True)
class CertificateResponse:
    cert_chain: tuple[str, ...]  # PEM, leaf first, root last

    def encode(self) -> bytes:
        data: bytes = _Response(cert_chain=list(self.cert_chain)).SerializeToString()
        return data

    @classmethod
    def decode(cls, data: bytes) -> CertificateResponse:
        message = _Response()
        try:
            message.ParseFromString(data)
        except Exception as exc:
            raise ProtocolError(f"not an IstioCertificateResponse: {exc}") from None
        return cls(tuple(message.cert_chain))
