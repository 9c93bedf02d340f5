"""LabVIEW "Cluster" XML, the form in which ISISDAE exchanges its settings (DAESETTINGS,
TCBSETTINGS, HARDWAREPERIODS, UPDATESETTINGS) with IBEX, genie_python and ibex_bluesky_core:

    <Cluster><Name>Time Channels</Name><NumElts>2</NumElts>
      <DBL><Name>TR1 From 1</Name><Val>10</Val></DBL>
      <EW><Name>Period Type</Name><Choice>Software</Choice>...<Val>0</Val></EW> ...

Clients find elements by their exact Name (some begin with a space) and parse some DBL values
with int(), so whole numbers are written without a decimal point. TCBSETTINGS alone travels
zlib-compressed and hex-encoded."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass

# what a compressed document may inflate to: a TCB that unpacks to gigabytes is refused, not
# unpacked (the records' NELM, 10000, bounds what a client puts)
MAX_INFLATED_BYTES = 1_000_000


class SettingsError(ValueError):
    """A settings document that cannot be taken; the message says why."""


@dataclass(frozen=True)
class Element:
    kind: str  # I32, U16, U32, DBL, String, EW, Boolean
    name: str
    value: object
    choices: tuple[str, ...] = ()


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SettingsError(f"{value} is not a finite number")
        return str(int(value)) if value == int(value) else repr(value)
    return str(value)


def to_xml(cluster: str, elements: list[Element]) -> str:
    root = ET.Element("Cluster")
    ET.SubElement(root, "Name").text = cluster
    ET.SubElement(root, "NumElts").text = str(len(elements))
    for e in elements:
        node = ET.SubElement(root, e.kind)
        ET.SubElement(node, "Name").text = e.name
        for choice in e.choices:
            ET.SubElement(node, "Choice").text = choice
        ET.SubElement(node, "Val").text = _text(e.value)
    return '<?xml version="1.0"?>\n' + ET.tostring(root, encoding="unicode")


def parse(text: str, cluster: str) -> dict[str, str]:
    """Name -> value text of a cluster's elements. Anything after the last '>' is dropped, as
    ISISDAE does (clients send a trailing NUL)."""
    text = text[:text.rfind(">") + 1] if ">" in text else text
    if len(text) > MAX_INFLATED_BYTES:
        raise SettingsError(f"the {cluster} document is {len(text)} bytes, over the limit")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise SettingsError(f"the {cluster} document is not XML: {exc}") from None
    name = root.findtext("Name")
    if root.tag != "Cluster" or name != cluster:
        raise SettingsError(f"expected a <Cluster> named {cluster!r}, got <{root.tag}> {name!r}")
    values: dict[str, str] = {}
    for node in root:
        element_name = node.findtext("Name")
        if node.tag in ("Name", "NumElts") or element_name is None:
            continue
        values[element_name] = (node.findtext("Val") or "").strip()
    return values


def number(values: dict[str, str], name: str, low: float, high: float) -> float:
    """A finite number within [low, high] from a parsed document; SettingsError otherwise."""
    try:
        text = values[name]
    except KeyError:
        raise SettingsError(f"{name!r} is missing") from None
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name!r} is {text!r}, not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise SettingsError(f"{name!r} is {text}, must be within {low:g}..{high:g}")
    return value


def whole(values: dict[str, str], name: str, low: int, high: int) -> int:
    value = number(values, name, low, high)
    if value != int(value):
        raise SettingsError(f"{name!r} is {value}, must be a whole number")
    return int(value)


def compress_hex(text: str) -> str:
    """zlib, then lowercase hex: how ISISDAE serves TCBSETTINGS."""
    return zlib.compress(text.encode()).hex()


def compress_hex_json(value: object) -> str:
    """IBEX's encoding of lists (users, table files): JSON, zlib-compressed, hex-encoded."""
    return compress_hex(json.dumps(value))


def dehex_decompress(text: str) -> str:
    text = text.strip().rstrip("\0")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise SettingsError("not hex-encoded (TCBSETTINGS is zlib-compressed, then hex)") \
            from None
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(raw, MAX_INFLATED_BYTES)
    except zlib.error as exc:
        raise SettingsError(f"not zlib-compressed: {exc}") from None
    if inflater.unconsumed_tail:
        raise SettingsError(f"inflates to over {MAX_INFLATED_BYTES} bytes")
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise SettingsError("not UTF-8 text") from None
