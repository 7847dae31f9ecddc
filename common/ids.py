"""Typed ids and their generation. Ids cross Redis and HTTP, so they are plain strings."""

from __future__ import annotations

import os
import re
import socket
import uuid
from typing import NewType

ReqId = NewType("ReqId", str)
WorkerId = NewType("WorkerId", str)
GroupId = NewType("GroupId", str)

# Client-supplied ids (X-Request-Id) are used as keys: keep them short and printable.
REQ_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_req_id() -> ReqId:
    return ReqId(f"req-{uuid.uuid4().hex}")


def new_worker_id() -> WorkerId:
    return WorkerId(f"w-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")


def is_valid_req_id(raw: str) -> bool:
    return bool(REQ_ID_RE.match(raw))
