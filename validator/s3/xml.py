"""S3's XML: responses built as strings (escaped), and the two request bodies S3 clients
send us (CompleteMultipartUpload, Delete) parsed with the standard library's expat, whose
entity expansion is bounded since Python 3.9 (expat >= 2.4)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import datetime
from xml.sax.saxutils import escape

from validator.s3.errors import S3Error

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
MAX_DELETE = 1000  # keys per DeleteObjects, as S3


def element(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def document(root: str, body: Iterable[str]) -> bytes:
    return f'{HEAD}<{root} xmlns="{NS}">{"".join(body)}</{root}>'.encode()


def error(code: str, message: str, resource: str, request_id: str) -> bytes:
    parts = [element("Code", code), element("Message", message)]
    if resource:
        parts.append(element("Resource", resource))
    parts.append(element("RequestId", request_id))
    return f"{HEAD}<Error>{''.join(parts)}</Error>".encode()


def timestamp(when: datetime) -> str:
    """ISO 8601 with milliseconds and Z, as S3 lists them."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _parse(body: bytes, root: str) -> ET.Element:
    try:
        tree = ET.fromstring(body)  # noqa: S314 - expat bounds entity expansion (see above)
    except ET.ParseError:
        raise S3Error("MalformedXML", "the XML you sent is not well-formed") from None
    if _local(tree.tag) != root:
        raise S3Error("MalformedXML", f"expected a <{root}> document")
    return tree


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(node: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in node if _local(child.tag) == name]


def _text(node: ET.Element, name: str) -> str | None:
    found = _children(node, name)
    return None if not found else (found[0].text or "")


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """(part number, etag) in the order given."""
    parts = []
    for part in _children(_parse(body, "CompleteMultipartUpload"), "Part"):
        number, etag = _text(part, "PartNumber"), _text(part, "ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise S3Error("MalformedXML", "each <Part> needs a <PartNumber> and an <ETag>")
        parts.append((int(number), etag.strip()))
    if not parts:
        raise S3Error("MalformedXML", "name at least one <Part>")
    return parts


def parse_delete(body: bytes) -> tuple[list[str], bool]:
    """(keys, quiet)."""
    tree = _parse(body, "Delete")
    keys = []
    for obj in _children(tree, "Object"):
        key = _text(obj, "Key")
        if not key:
            raise S3Error("MalformedXML", "each <Object> needs a <Key>")
        keys.append(key)
    if not keys or len(keys) > MAX_DELETE:
        raise S3Error("MalformedXML", f"name 1..{MAX_DELETE} objects to delete")
    quiet = (_text(tree, "Quiet") or "").strip().lower() == "true"
    return keys, quiet
