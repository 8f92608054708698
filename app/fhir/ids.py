"""Logical ids: the FHIR id rule, and server-assigned ids that sort by creation time (random ids
scatter inserts across the (type, id) index; time-ordered ones append to it)."""

from __future__ import annotations

import os
import re
import time
import uuid

from app.fhir.errors import BadRequestError

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def new_id() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def is_valid_id(resource_id: str) -> bool:
    """The FHIR id rule, and not only dots: `.` and `..` match the rule, but as path segments
    they are resolved away by clients (`Patient/..` is the base)."""
    return _ID.fullmatch(resource_id) is not None and resource_id.strip(".") != ""


def check_id(resource_id: str, where: str = "id") -> str:
    if not is_valid_id(resource_id):
        raise BadRequestError(
            f"{resource_id!r} is not a valid FHIR id (1-64 of A-Z a-z 0-9 - ., not only dots)",
            (where,),
        )
    return resource_id
