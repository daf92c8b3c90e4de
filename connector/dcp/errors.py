"""Errors the DCP client raises, under the project root `CbembedError`.

    CbembedError
    └── DcpError                      anything the DCP client raises on purpose
        ├── DcpConnectionError        socket closed, timed out or dead (retriable)
        ├── DcpAuthError              SASL failed: wrong credentials or mechanism (not retriable)
        ├── DcpProtocolError          the server sent something the protocol does not allow
        ├── KvStatusError             a request answered with a non-success status
        │   └── UnknownCollectionError   "scope.collection" does not exist (not retriable)
        └── DcpStreamError            a vbucket stream failed for good (bad offset, no access)

`retriable` on the class says whether trying again later may succeed.
"""

from __future__ import annotations

from connector.dcp.opcodes import Opcode, Status
from connector.errors import CbembedError


class DcpError(CbembedError):
    retriable = False


class DcpConnectionError(DcpError):
    retriable = True


class DcpAuthError(DcpError):
    retriable = False


class DcpProtocolError(DcpError):
    retriable = False


class KvStatusError(DcpError):
    """A response with a non-success status; `status` and `opcode` are the raw codes."""

    def __init__(self, opcode: int, status: int, detail: str = "") -> None:
        self.opcode = opcode
        self.status = status
        try:
            op = Opcode(opcode).name
        except ValueError:
            op = f"opcode 0x{opcode:02x}"
        msg = f"{op} failed: {Status.describe(status)}"
        super().__init__(f"{msg}: {detail}" if detail else msg)
        self.retriable = status in (Status.ETMPFAIL, Status.EBUSY, Status.NOT_MY_VBUCKET)


class UnknownCollectionError(KvStatusError):
    def __init__(self, path: str, bucket: str) -> None:
        super().__init__(
            Opcode.GET_COLLECTION_ID,
            Status.UNKNOWN_COLLECTION,
            f"collection {path!r} does not exist in bucket {bucket!r} "
            "(expected 'scope.collection', e.g. 'inventory.hotels')",
        )
        self.path = path


class DcpStreamError(DcpError):
    """A vbucket stream cannot continue: `vb` and the server's `status`."""

    def __init__(self, vb: int, status: int, detail: str = "") -> None:
        self.vb = vb
        self.status = status
        super().__init__(
            f"stream for vbucket {vb} failed: {Status.describe(status)}"
            + (f": {detail}" if detail else "")
        )
