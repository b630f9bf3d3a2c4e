"""Protocol messages <-> stored records, and resource names <-> OrbitMQ names.

Owns: validating what a RocketMQ 5 client sends (body, type against its properties, tag, keys,
user properties, delivery time, digest), the property names a record carries for the protocol's
system properties, and building the protocol `Message` a consumer receives (CRC32 body digest,
receipt handle, attempt, invisible time). Namespaces: a resource in namespace `ns` is the OrbitMQ
topic/group `ns%name`. No I/O.
"""

from __future__ import annotations

import hashlib
import zlib

from google.protobuf.timestamp_pb2 import Timestamp

from orbitmq.broker import names
from orbitmq.broker.pop_service import PROP_DELIVER_MS, PROP_MSG_GROUP
from orbitmq.broker.store.record import Message as Record
from orbitmq.protos import rocketmq_v2_definition_pb2 as d
from orbitmq.proxy.errors import ProxyError

PROP_TYPE = "__MSG_TYPE"
PROP_ENCODING = "__BODY_ENCODING"
PROP_TRACE = "__TRACE_CONTEXT"
PROP_TX_CHECK_S = "__TX_CHECK_S"
RESERVED = {PROP_MSG_GROUP, PROP_DELIVER_MS, PROP_TYPE, PROP_ENCODING, PROP_TRACE, PROP_TX_CHECK_S,
            "ORIGIN_TOPIC", "DLQ_DELIVERY_ATTEMPTS", "TAGS", "KEYS", "UNIQ_KEY"}
MAX_DELAY_MS = 365 * 24 * 3600 * 1000


def internal_name(res: d.Resource, what: str = "topic") -> str:
    """The OrbitMQ name of a resource (namespace `ns` -> `ns%name`); ProxyError if empty or bad."""
    if not res.name:
        raise ProxyError("ILLEGAL_TOPIC" if what == "topic" else "ILLEGAL_CONSUMER_GROUP", f"{what} name is empty")
    name = f"{res.resource_namespace}%{res.name}" if res.resource_namespace else res.name
    try:
        (names.validate_topic if what == "topic" else names.validate_group)(name)
    except ValueError as e:
        raise ProxyError("ILLEGAL_TOPIC" if what == "topic" else "ILLEGAL_CONSUMER_GROUP", str(e)) from None
    return name


def resource(name: str, namespace: str) -> d.Resource:
    if namespace and name.startswith(namespace + "%"):
        name = name[len(namespace) + 1:]
    return d.Resource(resource_namespace=namespace, name=name)


def _ms(ts: Timestamp) -> int:
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def _ts(ms: int) -> Timestamp:
    return Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def check_digest(m: d.Message) -> None:
    dg = m.system_properties.body_digest
    if dg.type == d.DIGEST_TYPE_UNSPECIFIED or not dg.checksum:
        return
    if dg.type == d.CRC32:
        ok = format(zlib.crc32(m.body) & 0xFFFFFFFF, "08X") == dg.checksum.upper()
    elif dg.type == d.MD5:
        ok = hashlib.md5(m.body).hexdigest().upper() == dg.checksum.upper()
    else:
        ok = hashlib.sha1(m.body).hexdigest().upper() == dg.checksum.upper()
    if not ok:
        raise ProxyError("MESSAGE_CORRUPTED", "body digest does not match the body")


def to_record(m: d.Message, topic: str, queue_id: int, max_size: int, now_ms: int) -> Record:
    """Validate a sent message and build the record to store (ProxyError on bad input)."""
    n = len(m.body)
    if n == 0:
        raise ProxyError("MESSAGE_BODY_EMPTY", "message body is empty")
    if n > max_size:
        raise ProxyError("MESSAGE_BODY_TOO_LARGE", f"message body of {n} bytes exceeds the limit of {max_size}")
    check_digest(m)
    sp = m.system_properties
    props: dict[str, str] = {}
    for k, v in m.user_properties.items():
        if k in RESERVED or k.startswith("__"):
            raise ProxyError("ILLEGAL_MESSAGE_PROPERTY_KEY", f"user property {k!r} is reserved")
        try:
            names.validate_property(k, v)
        except ValueError as e:
            raise ProxyError("ILLEGAL_MESSAGE_PROPERTY_KEY", str(e)) from None
        props[k] = v
    mtype = sp.message_type or d.NORMAL
    group = sp.message_group if sp.HasField("message_group") else ""
    has_delay = sp.HasField("delivery_timestamp")
    if mtype == d.FIFO and not group:
        raise ProxyError("MESSAGE_PROPERTY_CONFLICT_WITH_TYPE", "a FIFO message needs a message group")
    if mtype == d.DELAY and not has_delay:
        raise ProxyError("MESSAGE_PROPERTY_CONFLICT_WITH_TYPE", "a DELAY message needs a delivery timestamp")
    if mtype not in (d.FIFO,) and group:
        raise ProxyError("MESSAGE_PROPERTY_CONFLICT_WITH_TYPE", "only FIFO messages carry a message group")
    if mtype != d.DELAY and has_delay:
        raise ProxyError("MESSAGE_PROPERTY_CONFLICT_WITH_TYPE", "only DELAY messages carry a delivery timestamp")
    if mtype not in (d.NORMAL, d.FIFO, d.DELAY, d.TRANSACTION):
        raise ProxyError("UNSUPPORTED", f"message type {d.MessageType.Name(mtype)} is not supported")
    if group:
        if len(group) > 255 or any(ord(c) < 32 for c in group):
            raise ProxyError("ILLEGAL_MESSAGE_GROUP", "message group must be 1..255 printable characters")
        props[PROP_MSG_GROUP] = group
    if has_delay:
        at = _ms(sp.delivery_timestamp)
        if at - now_ms > MAX_DELAY_MS:
            raise ProxyError("ILLEGAL_DELIVERY_TIME", "delivery timestamp is more than 365 days ahead")
        if at > now_ms:
            props[PROP_DELIVER_MS] = str(at)
    props[PROP_TYPE] = str(mtype)
    if sp.body_encoding == d.GZIP:
        props[PROP_ENCODING] = "GZIP"
    if sp.HasField("trace_context") and sp.trace_context:
        props[PROP_TRACE] = sp.trace_context[:1024]
    if sp.HasField("orphaned_transaction_recovery_duration"):
        props[PROP_TX_CHECK_S] = str(max(1, sp.orphaned_transaction_recovery_duration.seconds))
    tag = sp.tag if sp.HasField("tag") else ""
    try:
        if tag:
            names.validate_tag(tag)
        for k in sp.keys:
            names.validate_key(k)
    except names.NameError_ as e:
        raise ProxyError("ILLEGAL_MESSAGE_TAG" if e.code == "BAD_TAG" else "ILLEGAL_MESSAGE_KEY", str(e)) from None
    msg_id = sp.message_id
    if msg_id and (len(msg_id) > 128 or not msg_id.isalnum()):
        raise ProxyError("ILLEGAL_MESSAGE_ID", f"message id {msg_id[:64]!r} is not 1..128 letters and digits")
    return Record(topic, m.body, queue_id, tag, list(sp.keys), props, msg_id,
                  born_timestamp=_ms(sp.born_timestamp) or now_ms, born_host=sp.born_host[:64])


def message_type(r: Record) -> int:
    try:
        return int(r.properties.get(PROP_TYPE, d.NORMAL))
    except ValueError:
        return d.NORMAL


def to_pb(r: Record, namespace: str, handle: str | None = None, attempt: int = 0,
          invisible_ms: int = 0) -> d.Message:
    """A stored record as the protocol message a consumer receives."""
    props = r.properties
    out = d.Message(topic=resource(r.topic, namespace), body=r.body)
    for k, v in props.items():
        if k not in RESERVED and not k.startswith("__"):
            out.user_properties[k] = v
    sp = out.system_properties
    if r.tags:
        sp.tag = r.tags
    sp.keys.extend(r.keys)
    sp.message_id = r.msg_id
    sp.body_digest.type = d.CRC32
    sp.body_digest.checksum = format(zlib.crc32(r.body) & 0xFFFFFFFF, "08X")
    sp.body_encoding = d.GZIP if props.get(PROP_ENCODING) == "GZIP" else d.IDENTITY
    sp.message_type = message_type(r)
    sp.born_timestamp.CopyFrom(_ts(r.born_timestamp))
    sp.born_host = r.born_host
    sp.store_timestamp.CopyFrom(_ts(r.store_timestamp))
    sp.store_host = r.store_host
    if PROP_DELIVER_MS in props:
        sp.delivery_timestamp.CopyFrom(_ts(int(props[PROP_DELIVER_MS])))
    if PROP_MSG_GROUP in props:
        sp.message_group = props[PROP_MSG_GROUP]
    if PROP_TRACE in props:
        sp.trace_context = props[PROP_TRACE]
    sp.queue_id = r.queue_id
    sp.queue_offset = r.queue_offset
    if handle is not None:
        sp.receipt_handle = handle
        sp.delivery_attempt = attempt
        sp.invisible_duration.seconds = invisible_ms // 1000
        sp.invisible_duration.nanos = (invisible_ms % 1000) * 1_000_000
    return out
