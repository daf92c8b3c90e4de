"""KV (memcached binary protocol) connection handler.

One ``KvConnection`` per accepted TCP connection, running entirely on the server loop:
``run()`` reads requests in order and answers each before reading the next. After
DCP_OPEN the connection also becomes a DCP producer (``dcp.DcpProducer``), which writes
DCP messages from its own tasks on the same loop and receives the DCP requests and the
client's responses (NOOP replies) from this reader.

Handshake as the SDK does it (see couchbase-wire.md): HELLO, SASL_LIST_MECHS, SASL_AUTH /
SASL_STEP (SCRAM-SHA512/256/1, PLAIN), GET_ERROR_MAP, SELECT_BUCKET, GET_CLUSTER_CONFIG,
GET_COLLECTION_ID. Data commands need authentication (else EACCESS) and a selected bucket
(else NO_BUCKET).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct

from . import scram
from . import subdoc as sd
from .context import ServerContext
from .data import Item, KvError
from .manifest import ManifestError
from .protocol import (
    HEADER_LEN,
    SUPPORTED_FEATURES,
    Datatype,
    Feature,
    Frame,
    Opcode,
    ProtocolError,
    Status,
    decode,
    leb128_decode,
    parse_frame_infos,
    parse_header,
    response,
)

ERROR_MAP = json.dumps({"version": 2, "revision": 1, "errors": {}}).encode()
_NO_AUTH_NEEDED = {Opcode.HELLO, Opcode.SASL_LIST_MECHS, Opcode.SASL_AUTH, Opcode.SASL_STEP,
                   Opcode.GET_ERROR_MAP, Opcode.NOOP, Opcode.VERSION}
_DCP_OPS = {Opcode.DCP_OPEN, Opcode.DCP_STREAM_REQ, Opcode.DCP_CLOSE_STREAM,
            Opcode.DCP_CONTROL, Opcode.DCP_BUFFER_ACK, Opcode.DCP_GET_FAILOVER_LOG,
            Opcode.DCP_NOOP}
_PRESERVE_TTL_FRAME = 5


class KvConnection:
    """Serves one client connection; see the module docstring."""

    def __init__(self, ctx: ServerContext, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.ctx = ctx
        self.reader = reader
        self.writer = writer
        self.features: set[int] = set()
        self.agent = ""
        self.authenticated = False
        self.bucket_selected = False
        self._scram: scram.ScramServer | None = None
        self.dcp: object | None = None  # dcp.DcpProducer after DCP_OPEN

    # -- I/O ------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def abort(self) -> None:
        transport = self.writer.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    def has(self, feature: Feature) -> bool:
        return feature in self.features

    async def run(self) -> None:
        self.ctx.writers.add(self.writer)
        try:
            while True:
                header = await self.reader.readexactly(HEADER_LEN)
                bodylen = parse_header(header)[7]
                body = await self.reader.readexactly(bodylen) if bodylen else b""
                frame = decode(header, body)
                if frame.is_response:
                    if self.dcp is not None:
                        self.dcp.on_response(frame)  # type: ignore[attr-defined]
                    continue
                await self.dispatch(frame)
                if self.writer.transport.get_write_buffer_size() > 1 << 20:
                    await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError):
            pass
        finally:
            self.ctx.writers.discard(self.writer)
            if self.dcp is not None:
                self.dcp.close()  # type: ignore[attr-defined]
            self.abort()
            with contextlib.suppress(Exception):
                self.writer.close()

    # -- dispatch ---------------------------------------------------------------------------
    async def dispatch(self, req: Frame) -> None:
        op = req.opcode
        if not self.authenticated and op not in _NO_AUTH_NEEDED:
            self.write(response(req, Status.EACCESS))
            return
        if op in _DCP_OPS or op in (Opcode.GET_ALL_VB_SEQNOS, Opcode.GET_FAILOVER_LOG):
            if not self.bucket_selected:
                self.write(response(req, Status.NO_BUCKET))
                return
            from .dcp_commands import handle_dcp_request

            handle_dcp_request(self, req)
            return
        handler = _HANDLERS.get(Opcode(op)) if op in _KNOWN_OPS else None
        if handler is None:
            self.write(response(req, Status.UNKNOWN_COMMAND))
            return
        if op not in _NO_AUTH_NEEDED and op not in _BUCKETLESS and not self.bucket_selected:
            self.write(response(req, Status.NO_BUCKET))
            return
        try:
            handler(self, req)
        except KvError as err:
            self.write(self.error(req, err.status))

    def error(self, req: Frame, status: Status) -> bytes:
        value = b""
        if status == Status.NOT_MY_VBUCKET:
            value = self.ctx.config_bytes()
        elif status in (Status.UNKNOWN_COLLECTION, Status.UNKNOWN_SCOPE):
            with self.ctx.store.lock:
                uid = self.ctx.store.manifest.uid
            value = json.dumps({"manifest_uid": f"{uid:x}"}).encode()
        return response(req, status, value=value)

    def json_datatype(self, is_json: bool) -> int:
        return Datatype.JSON if is_json and self.has(Feature.JSON) else Datatype.RAW

    # -- handshake --------------------------------------------------------------------------
    def hello(self, req: Frame) -> None:
        self.agent = req.key.decode(errors="replace")
        wanted = [struct.unpack_from(">H", req.value, i)[0] for i in range(0, len(req.value), 2)]
        accepted: list[int] = []
        for f in wanted:
            if f in SUPPORTED_FEATURES and f not in accepted:
                accepted.append(f)
        self.features = set(accepted)
        self.write(response(req, value=b"".join(struct.pack(">H", f) for f in accepted)))

    def list_mechs(self, req: Frame) -> None:
        self.write(response(req, value=" ".join(scram.MECHANISMS).encode()))

    def sasl_auth(self, req: Frame) -> None:
        mech = req.key.decode()
        if req.opcode == Opcode.SASL_AUTH:
            with self.ctx.lock:
                self.ctx.auth_mechanisms.append(mech)
        try:
            if req.opcode == Opcode.SASL_AUTH:
                if mech == "PLAIN":
                    scram.check_plain(req.value, self.ctx.username, self.ctx.password)
                    self.authenticated = True
                    self.write(response(req))
                    return
                self._scram = scram.ScramServer(mech, self.ctx.username, self.ctx.password)
                self.write(response(req, Status.AUTH_CONTINUE, value=self._scram.first(req.value)))
                return
            if self._scram is None:
                raise scram.AuthError("SASL_STEP without SASL_AUTH")
            final = self._scram.final(req.value)
            self._scram = None
            self.authenticated = True
            self.write(response(req, value=final))
        except (scram.AuthError, UnicodeDecodeError, ValueError):
            self._scram = None
            self.write(response(req, Status.AUTH_ERROR, value=b"Auth failure"))

    def error_map(self, req: Frame) -> None:
        self.write(response(req, value=ERROR_MAP, datatype=self.json_datatype(True)))

    def select_bucket(self, req: Frame) -> None:
        if req.key.decode() != self.ctx.bucket:
            self.write(response(req, Status.KEY_ENOENT))
            return
        self.bucket_selected = True
        self.write(response(req))

    def cluster_config(self, req: Frame) -> None:
        value = self.ctx.config_bytes(with_bucket=self.bucket_selected)
        self.write(response(req, value=value, datatype=self.json_datatype(True)))

    def noop(self, req: Frame) -> None:
        self.write(response(req))

    def version(self, req: Frame) -> None:
        self.write(response(req, value=self.ctx.version_string.encode()))

    # -- collections --------------------------------------------------------------------------
    def collection_id(self, req: Frame) -> None:
        path = (req.value or req.key).decode()
        store = self.ctx.store
        try:
            if req.opcode == Opcode.GET_SCOPE_ID:
                with store.lock:
                    scope = store.manifest.scopes.get(path.split(".")[0])
                    uid = store.manifest.uid
                if scope is None:
                    raise KvError(Status.UNKNOWN_SCOPE)
                self.write(response(req, extras=struct.pack(">QI", uid, scope.sid)))
                return
            scope_name, _, coll_name = path.partition(".")
            with store.lock:
                info = store.manifest.lookup(scope_name or "_default", coll_name or "_default")
                uid = store.manifest.uid
            self.write(response(req, extras=struct.pack(">QI", uid, info.cid)))
        except ManifestError as err:
            status = Status.UNKNOWN_SCOPE if err.kind == "scope" else Status.UNKNOWN_COLLECTION
            self.write(self.error(req, status))

    def manifest(self, req: Frame) -> None:
        with self.ctx.store.lock:
            body = json.dumps(self.ctx.store.manifest.to_json()).encode()
        self.write(response(req, value=body, datatype=self.json_datatype(True)))

    # -- documents ----------------------------------------------------------------------------
    def doc_key(self, req: Frame) -> tuple[int, bytes]:
        """Collection id and key of a request; checks the vBucket and NMVB faults."""
        if self.has(Feature.COLLECTIONS):
            try:
                cid, n = leb128_decode(req.key)
            except ProtocolError as exc:
                raise KvError(Status.EINVAL) from exc
            key = req.key[n:]
        else:
            cid, key = 0, req.key
        if not key or len(key) > 250:
            raise KvError(Status.EINVAL)
        with self.ctx.store.lock:
            if self.ctx.store.manifest.by_id(cid) is None:
                raise KvError(Status.UNKNOWN_COLLECTION)
        if req.vbucket != self.ctx.store.vbucket_of(key):
            raise KvError(Status.NOT_MY_VBUCKET)
        if self.ctx.faults.take_not_my_vbucket(req.vbucket):
            raise KvError(Status.NOT_MY_VBUCKET)
        if self.ctx.faults.take_tmpfail(req.vbucket):
            raise KvError(Status.ETMPFAIL)
        return cid, key

    def token(self, item: Item) -> bytes:
        if not self.has(Feature.MUTATION_SEQNO):
            return b""
        uuid = self.ctx.store.vb_state(item.vbucket)[1][0][0]
        return struct.pack(">QQ", uuid, item.seqno)

    def preserve_ttl(self, req: Frame) -> bool:
        return any(fid == _PRESERVE_TTL_FRAME for fid, _ in parse_frame_infos(req.framing_extras))

    def get(self, req: Frame) -> None:
        cid, key = self.doc_key(req)
        store = self.ctx.store
        if req.opcode == Opcode.GAT:
            (expiry,) = struct.unpack(">I", req.extras[:4])
            item: Item | None = store.touch(cid, key, expiry)
        else:
            item = store.lookup(cid, key)
        if item is None:
            raise KvError(Status.KEY_ENOENT)
        self.write(response(req, extras=struct.pack(">I", item.flags), value=item.body,
                            cas=item.cas, datatype=self.json_datatype(item.is_json)))

    def touch(self, req: Frame) -> None:
        cid, key = self.doc_key(req)
        (expiry,) = struct.unpack(">I", req.extras[:4])
        item = self.ctx.store.touch(cid, key, expiry)
        self.write(response(req, cas=item.cas, extras=self.token(item)))

    def get_meta(self, req: Frame) -> None:
        cid, key = self.doc_key(req)
        item = self.ctx.store.lookup(cid, key, include_deleted=True)
        if item is None:
            raise KvError(Status.KEY_ENOENT)
        extras = struct.pack(">IIIQ", int(item.deleted), item.flags, item.expiry, item.rev_seqno)
        if req.extras[:1] == b"\x02":
            dtype = (Datatype.JSON if item.is_json else 0) | (Datatype.XATTR if item.xattrs else 0)
            extras += bytes([dtype])
        self.write(response(req, extras=extras, cas=item.cas))

    def store_doc(self, req: Frame) -> None:
        cid, key = self.doc_key(req)
        if req.datatype & (Datatype.SNAPPY | Datatype.XATTR) or len(req.extras) != 8:
            raise KvError(Status.EINVAL)
        flags, expiry = struct.unpack(">II", req.extras)
        mode = {Opcode.SET: "set", Opcode.ADD: "add", Opcode.REPLACE: "replace"}[
            Opcode(req.opcode)]
        item = self.ctx.store.store(cid, key, req.value, mode=mode, cas=req.cas, flags=flags,
                                    expiry=expiry, preserve_expiry=self.preserve_ttl(req))
        self.write(response(req, cas=item.cas, extras=self.token(item)))

    def delete(self, req: Frame) -> None:
        cid, key = self.doc_key(req)
        item = self.ctx.store.delete(cid, key, cas=req.cas)
        self.write(response(req, cas=item.cas, extras=self.token(item)))

    # -- sub-document ---------------------------------------------------------------------------
    def multi(self, req: Frame) -> None:
        cid, key = self.doc_key(req)
        mutation = req.opcode == Opcode.SUBDOC_MULTI_MUTATION
        extras = req.extras
        if len(extras) not in ((0, 1, 4, 5) if mutation else (0, 1)):
            raise KvError(Status.EINVAL)
        expiry = struct.unpack(">I", extras[:4])[0] if len(extras) >= 4 else 0
        doc_flags = extras[-1] if len(extras) in (1, 5) else 0
        try:
            specs = sd.parse_specs(req.value, mutation)
        except (struct.error, UnicodeDecodeError) as exc:
            raise KvError(Status.EINVAL) from exc
        if mutation:
            reply = sd.mutate_in(self.ctx.store, cid, key, doc_flags=doc_flags, cas=req.cas,
                                 expiry=expiry, preserve_expiry=self.preserve_ttl(req),
                                 specs=specs)
        else:
            reply = sd.lookup_in(self.ctx.store, cid, key, doc_flags, specs)
        cas = reply.item.cas if reply.item is not None else 0
        token = self.token(reply.item) if (mutation and reply.item is not None) else b""
        self.write(response(req, reply.status, extras=token, value=reply.value, cas=cas))

    def single(self, req: Frame) -> None:
        """Single-path subdoc commands: run as a one-spec multi command."""
        cid, key = self.doc_key(req)
        if len(req.extras) not in (3, 4, 7, 8):
            raise KvError(Status.EINVAL)
        pathlen, flags = struct.unpack(">HB", req.extras[:3])
        expiry = struct.unpack(">I", req.extras[3:7])[0] if len(req.extras) >= 7 else 0
        doc_flags = req.extras[-1] if len(req.extras) in (4, 8) else 0
        path = req.value[:pathlen].decode()
        spec = sd.Spec(req.opcode, flags, path, req.value[pathlen:])
        if req.opcode in (Opcode.SUBDOC_GET, Opcode.SUBDOC_EXISTS, Opcode.SUBDOC_GET_COUNT):
            reply = sd.lookup_in(self.ctx.store, cid, key, doc_flags, [spec])
            if reply.status in (Status.SUCCESS, Status.SUBDOC_MULTI_PATH_FAILURE):
                status, vlen = struct.unpack_from(">HI", reply.value)
                value = reply.value[6 : 6 + vlen]
                cas = reply.item.cas if reply.item else 0
                self.write(response(req, Status(status), value=value, cas=cas))
                return
            self.write(response(req, reply.status))
            return
        reply = sd.mutate_in(self.ctx.store, cid, key, doc_flags=doc_flags, cas=req.cas,
                             expiry=expiry, preserve_expiry=self.preserve_ttl(req), specs=[spec])
        if reply.status == Status.SUBDOC_MULTI_PATH_FAILURE:
            self.write(response(req, Status(struct.unpack_from(">BH", reply.value)[1])))
            return
        if reply.item is None:
            self.write(response(req, reply.status))
            return
        value = reply.value[7:] if reply.value else b""
        self.write(response(req, extras=self.token(reply.item), value=value,
                            cas=reply.item.cas))


_KNOWN_OPS = {int(o) for o in Opcode}
_BUCKETLESS = {Opcode.GET_CLUSTER_CONFIG, Opcode.SELECT_BUCKET}
_HANDLERS = {
    Opcode.HELLO: KvConnection.hello,
    Opcode.SASL_LIST_MECHS: KvConnection.list_mechs,
    Opcode.SASL_AUTH: KvConnection.sasl_auth,
    Opcode.SASL_STEP: KvConnection.sasl_auth,
    Opcode.GET_ERROR_MAP: KvConnection.error_map,
    Opcode.SELECT_BUCKET: KvConnection.select_bucket,
    Opcode.GET_CLUSTER_CONFIG: KvConnection.cluster_config,
    Opcode.NOOP: KvConnection.noop,
    Opcode.VERSION: KvConnection.version,
    Opcode.GET_COLLECTION_ID: KvConnection.collection_id,
    Opcode.GET_SCOPE_ID: KvConnection.collection_id,
    Opcode.GET_COLLECTIONS_MANIFEST: KvConnection.manifest,
    Opcode.GET: KvConnection.get,
    Opcode.GAT: KvConnection.get,
    Opcode.TOUCH: KvConnection.touch,
    Opcode.GET_META: KvConnection.get_meta,
    Opcode.SET: KvConnection.store_doc,
    Opcode.ADD: KvConnection.store_doc,
    Opcode.REPLACE: KvConnection.store_doc,
    Opcode.DELETE: KvConnection.delete,
    Opcode.SUBDOC_MULTI_LOOKUP: KvConnection.multi,
    Opcode.SUBDOC_MULTI_MUTATION: KvConnection.multi,
    **{op: KvConnection.single for op in (
        Opcode.SUBDOC_GET, Opcode.SUBDOC_EXISTS, Opcode.SUBDOC_GET_COUNT,
        Opcode.SUBDOC_DICT_ADD, Opcode.SUBDOC_DICT_UPSERT, Opcode.SUBDOC_DELETE,
        Opcode.SUBDOC_REPLACE, Opcode.SUBDOC_ARRAY_PUSH_LAST, Opcode.SUBDOC_ARRAY_PUSH_FIRST,
        Opcode.SUBDOC_ARRAY_INSERT, Opcode.SUBDOC_ARRAY_ADD_UNIQUE, Opcode.SUBDOC_COUNTER)},
}
