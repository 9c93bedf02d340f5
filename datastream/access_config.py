"""EPICS access security configuration (the ACF format), parsed once for every service that
serves setpoints: the run-control IOC over CA (ioc.access_security), the live view over PVA.
A site reuses the access configuration file it already has:

    UAG(operators) {alice, bob}
    HAG(beamline)  {localhost, ndxdemo}
    ASG(DEFAULT)    { RULE(1, READ) }
    ASG(RUNCONTROL) { RULE(1, READ)  RULE(1, WRITE, TRAPWRITE) { UAG(operators) HAG(beamline) } }

A rule applies when the client's user is in one of its UAGs (or it names none) and its host
in one of its HAGs (or it names none); the client gets the highest access of the rules that
apply. With no file, the built-in default lets only this host write."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path


def log_field(text: str | None) -> str:
    """A client's host or user name as one put-log field: control characters escaped, so a
    name can never make one line look like two (or hide what follows)."""
    text = text or "?"
    return "".join(c if c.isprintable() and c != " " else f"\\x{ord(c):02x}"
                   if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text)


class AcfError(ValueError):
    """The access configuration cannot be parsed; the message says where."""


class Access(IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2


@dataclass(frozen=True)
class Rule:
    access: Access
    uags: tuple[str, ...] = ()
    hags: tuple[str, ...] = ()
    # EPICS's access security level: a rule of level 1 applies to every field, one of level 0
    # to the ASL0 fields only (a record's value and .PROC); the other fields are ASL1
    level: int = 1


@dataclass
class AccessConfig:
    uags: dict[str, frozenset[str]] = field(default_factory=dict)
    hags: dict[str, frozenset[str]] = field(default_factory=dict)
    asgs: dict[str, list[Rule]] = field(default_factory=dict)

    def group_for_writable(self) -> str:
        return "RUNCONTROL" if "RUNCONTROL" in self.asgs else "DEFAULT"

    def access(self, asg: str, user: str | None, host: str | None, asl: int = 0) -> Access:
        """The access a client gets to a field of access security level `asl` of the
        records in `asg`."""
        rules = self.asgs.get(asg, self.asgs.get("DEFAULT", []))
        best = Access.NONE
        for rule in rules:
            if rule.level < asl:
                continue
            if rule.uags and not any(user in self.uags.get(u, ()) for u in rule.uags):
                continue
            if rule.hags and not any(_host(host) in self.hags.get(h, ()) for h in rule.hags):
                continue
            best = max(best, rule.access)
        return best


def _host(name: str | None) -> str:
    return (name or "").strip().lower()


def local_host_names() -> frozenset[str]:
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    return frozenset(_host(n) for n in names)


def default_config() -> AccessConfig:
    """Everyone reads; only clients on this host write."""
    return AccessConfig(hags={"LOCAL": local_host_names()},
                        asgs={"DEFAULT": [Rule(Access.READ), Rule(Access.WRITE,
                                                                  hags=("LOCAL",))]})


_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([A-Za-z0-9_:.\-+$*/]+)|([(){},]))')


def _tokens(text: str) -> list[tuple[str, int]]:
    out, pos, line = [], 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise AcfError(f"line {line}: cannot read {text[pos:pos + 20]!r}")
        line += text[pos:m.end()].count("\n")
        pos = m.end()
        if m.group(1):
            continue
        word = m.group(2)[1:-1] if m.group(2) else (m.group(3) or m.group(4))
        out.append((word, line))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        if self.i >= len(self.tokens):
            raise AcfError(f"unexpected end of file (expected {expected or 'more'})")
        word, line = self.tokens[self.i]
        if expected is not None and word != expected:
            raise AcfError(f"line {line}: expected {expected!r}, found {word!r}")
        self.i += 1
        return word

    def names(self, close: str) -> list[str]:
        out = []
        while self.peek() != close:
            out.append(self.take())
            if self.peek() == ",":
                self.take(",")
        self.take(close)
        return out

    def parse(self) -> AccessConfig:
        config = AccessConfig()
        while self.peek() is not None:
            kind = self.take()
            self.take("(")
            name = self.take()
            self.take(")")
            if kind in ("UAG", "HAG"):
                self.take("{")
                members = frozenset(self.names("}"))
                if kind == "UAG":
                    config.uags[name] = members
                else:
                    config.hags[name] = frozenset(_host(m) for m in members)
            elif kind == "ASG":
                config.asgs[name] = self.rules()
            else:
                raise AcfError(f"line {self.tokens[self.i - 4][1]}: unknown {kind!r} "
                               "(UAG, HAG or ASG)")
        return config

    def rules(self) -> list[Rule]:
        rules: list[Rule] = []
        self.take("{")
        while self.peek() != "}":
            word = self.take()
            if word.startswith("INP"):  # INPx(pv): inputs of CALC rules, not used here
                self.take("(")
                self.names(")")
                continue
            if word != "RULE":
                raise AcfError(f"expected RULE, found {word!r}")
            self.take("(")
            args = self.names(")")
            if len(args) < 2 or args[1] not in ("NONE", "READ", "WRITE", "RPC"):
                raise AcfError(f"RULE({', '.join(args)}): needs a level and NONE, READ or "
                               "WRITE")
            access = Access.WRITE if args[1] == "RPC" else Access[args[1]]
            if args[0] not in ("0", "1"):
                raise AcfError(f"RULE({', '.join(args)}): the level is 0 or 1")
            uags: list[str] = []
            hags: list[str] = []
            if self.peek() == "{":
                self.take("{")
                while self.peek() != "}":
                    what = self.take()
                    self.take("(")
                    members = self.names(")")
                    if what == "UAG":
                        uags += members
                    elif what == "HAG":
                        hags += members
                    elif what == "CALC":
                        raise AcfError("CALC conditions are not supported here")
                    else:
                        raise AcfError(f"unknown rule condition {what!r}")
                self.take("}")
            rules.append(Rule(access, tuple(uags), tuple(hags), int(args[0])))
        self.take("}")
        return rules


def parse_acf(text: str) -> AccessConfig:
    config = _Parser(text).parse()
    for rules in config.asgs.values():
        for rule in rules:
            unknown = [u for u in rule.uags if u not in config.uags] + [
                h for h in rule.hags if h not in config.hags]
            if unknown:
                raise AcfError(f"rule names undefined groups: {', '.join(unknown)}")
    if "DEFAULT" not in config.asgs:
        raise AcfError("no ASG(DEFAULT): EPICS needs it for every record without another")
    return config


def load_acf(path: Path) -> AccessConfig:
    try:
        return parse_acf(path.read_text())
    except OSError as exc:
        raise AcfError(f"cannot read {path}: {exc.strerror}") from exc
    except AcfError as exc:
        raise AcfError(f"{path}: {exc}") from exc
