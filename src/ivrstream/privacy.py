"""Caller privacy: redact an event's ``data`` before anything stores it.

Rules this module keeps:

- One :class:`Redactor` decides what every store sees — journal data, audit, quarantine and
  dead letters alike. Nothing here does I/O except :func:`load_key`.
- :meth:`Redactor.redact` never mutates its input and never raises for any JSON- or
  MessagePack-shaped value (a subtree nested deeper than 128 levels is replaced by a placeholder).
  It is idempotent: a store that redacts already-redacted data (an audit record or dead letter
  built from a journal row) changes nothing — ``hash`` leaves a value that is already a hash.
- A rule names a dotted path relative to ``data``: ``flow.name``; ``*`` is exactly one key (a
  map key, or any element of a list: ``callbackNumbers.*``); ``**`` is any number of keys, none
  included (``**.ani`` is ``ani`` at any depth). List elements are reached only through ``*``
  and ``**`` — never by position, which a ``drop`` would shift — and so are map keys that are
  not strings (MessagePack allows them). A key containing a dot cannot be named. Rules never
  apply to ``data`` itself.
- **Precedence**: when several rules match one path, the most specific decides: the one with
  more literal segments, then the one with more ``*`` (a ``*`` pins the depth, ``**`` does not);
  between equally specific rules the first listed wins. So ``attributes.AccountRef: keep`` beats
  ``attributes.*: mask`` wherever it is listed, and a user's ``ani: keep`` beats the default
  ``ani: hash`` when user rules are listed before :data:`DEFAULT_RULES` (put them first).
- Actions: ``hash`` replaces the value by ``"hmac-sha256:"`` + the first 32 hex digits of
  HMAC-SHA256(key, value) — a string's UTF-8, anything else's canonical JSON — so the same
  caller hashes the same in every event and across restarts with the same key (joins work),
  and differently under another key. ``mask`` keeps the last ``keep_last`` digits of a string
  (or number, which becomes a string) and writes ``*`` over every other digit, non-digits kept:
  ``tel:+15555550520`` → ``tel:+*******0520``. ``drop`` removes the key (or list element).
  ``keep`` leaves the value as it is. ``hash`` and ``drop`` on a map or list decide for the
  whole subtree; ``mask`` on a map or list masks every string and number inside, and ``keep``
  stops an outer ``mask``, while deeper rules still decide for their own paths.
- **Card scan** (``scan_cards``, on by default): every string value anywhere in ``data`` — not
  only ``attributes`` — that holds a Luhn-valid run of 13–19 digits has that run masked to its
  last 4 digits (``4111 1111 1111 1111`` → ``**** **** **** 1111``). A run is digits separated
  by at most one space or dash; when a whole run is not a card, every stretch of whole groups
  inside it is tried too, so ``4111111111111111 123`` (card, then CVV) is caught while a
  non-Luhn 16-digit id is left alone. A card glued to other digits (``74111…``) is not a card;
  a run of more than 256 digits is masked whole (it is no IVR value, and hostile input must
  not cost seconds).
  Digits are Unicode decimal digits (a card in full-width digits is caught). The scan skips
  map keys, non-string values (an epoch-ms integer is never a card), the output of ``hash``
  (its hex could look like digits), and any path a ``keep`` rule matches exactly — to exempt a
  subtree, keep ``subtree.**``.
- :func:`scrub_bytes` is for quarantined frames that could not be parsed: card runs are masked
  as above and phone numbers replaced, byte for byte, by placeholders of the same length, so
  byte offsets in the quarantine reason and MessagePack length prefixes still line up.

The defaults (:data:`DEFAULT_RULES`, all ``hash``) cover every field the reference shapes use
for a caller's number or name, so joins on them still work:

- ``ani``, ``dnis``: Event Streams snapshots, Notifications detail events and flow-metric
  records. DNIS is hashed too: on an outbound call it is the customer's number.
- ``addressFrom``, ``addressTo``: the detail events' common fields (for voice the same numbers;
  for messaging the customer's phone or handle).
- ``callbackNumbers.*``, ``callbackUserName``: customer/ACD start events; the numbers a caller
  asked to be called back on and the name they gave.
- ``address``, ``participants.*.address``, ``participants.*.calls.*.self.*``,
  ``participants.*.calls.*.other.*``, ``participants.*.callbacks.*.callbackNumbers.*``,
  ``participants.*.callbacks.*.callbackUserName``: queue conversation snapshots (the
  customer participant's ``address`` is the ANI).
- ``participants.*.sessions.*.`` + ``ani``, ``dnis``, ``sessionDnis``, ``addressFrom``,
  ``addressTo``, ``addressSelf``, ``addressOther``, ``remote``, ``callbackNumbers.*``,
  ``callbackUserName``, ``flow.entryReason``: analytics conversations (backfill), where a
  DNIS entry's ``entryReason`` is the dialled number.

Not hashed by default, because they name the contact centre's side rather than the caller:
``participants.*.name`` (a flow or queue name except on the customer), ``transferTargetAddress``.
Attributes are left to the card scan; a flow that copies the caller's number into an attribute
needs its own rule, e.g. ``Rule("attributes.CallerNumber", "hash")``.

To change the defaults, list your rules before them — ``Redactor([*mine, *DEFAULT_RULES], key)``
— or leave them out entirely: ``Redactor(mine, key)``, which no longer hashes caller numbers
unless ``mine`` says so. In the service's TOML, ``[privacy]`` holds ``rules`` (tables of
``path``, ``action``, ``keep_last``: ``{path = "ani", action = "mask", keep_last = 4}``),
``scan_cards`` and ``key_file``; the key comes from ``IVRSTREAM_PRIVACY_KEY`` when that is set.

Cost, with the defaults on emulator Event Streams snapshots (CPython 3.11, the dev container;
``pytest -s tests/test_privacy.py -k speed`` prints it): about 5 µs per event for the
emulator's traffic mix (2% of calls carry a card), about 23 µs for a snapshot that holds a
card, about 5.5 µs per Notifications detail body. The rules are compiled into an automaton over
path segments, so the walk visits only keys some rule can reach; before walking, ``data`` is
encoded once with msgspec and the text checked for a Luhn-valid digit run (in C, save for the
few stretches of 13 or more digits). Only when there is one does the walk visit every string.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from ivrstream.errors import ConfigError

__all__ = [
    "DEFAULT_RULES",
    "KEY_ENV",
    "Action",
    "Redactor",
    "Rule",
    "load_key",
    "luhn_valid",
    "scrub_bytes",
]

Action = Literal["keep", "mask", "hash", "drop"]
KEY_ENV = "IVRSTREAM_PRIVACY_KEY"
HASH_PREFIX = "hmac-sha256:"
MIN_KEY_BYTES = 16
MAX_DEPTH = 128
TOO_DEEP = "[removed: nested deeper than 128 levels]"


class Rule(msgspec.Struct, frozen=True):
    """What to do with the value at ``path`` (dotted, relative to the event's ``data``)."""

    path: str
    action: Action
    keep_last: int = 4  # digits ``mask`` leaves visible


_CALLER_FIELDS = (
    "ani",
    "dnis",
    "addressFrom",
    "addressTo",
    "callbackNumbers.*",
    "callbackUserName",
)
_SESSION_FIELDS = (
    *_CALLER_FIELDS,
    "sessionDnis",
    "addressSelf",
    "addressOther",
    "remote",
    "flow.entryReason",
)

DEFAULT_RULES: tuple[Rule, ...] = (
    *(Rule(path, "hash") for path in _CALLER_FIELDS),
    Rule("address", "hash"),
    Rule("participants.*.address", "hash"),
    Rule("participants.*.calls.*.self.*", "hash"),
    Rule("participants.*.calls.*.other.*", "hash"),
    Rule("participants.*.callbacks.*.callbackNumbers.*", "hash"),
    Rule("participants.*.callbacks.*.callbackUserName", "hash"),
    *(Rule(f"participants.*.sessions.*.{path}", "hash") for path in _SESSION_FIELDS),
)


# -- Luhn and card runs --------------------------------------------------------------------------

_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")  # a digit doubled, digits summed
_RUN = re.compile(r"\d(?:[ -]?\d){12,}")  # a run of at least 13 digits
_SEPARATOR = re.compile(r"[ -]")
_DIGIT = re.compile(r"\d")
_CARD_MIN, _CARD_MAX, _CARD_VISIBLE = 13, 19, 4
_LONG_RUN = 256  # a run of more digits is masked whole


def luhn_valid(digits: str) -> bool:
    """Whether ``digits`` (decimal digits only, any length) passes the Luhn check."""
    if not digits.isdecimal():  # also refuses ""
        return False
    if not digits.isascii():
        digits = "".join(str(int(ch)) for ch in digits)  # another script's digits
    raw = digits.encode("ascii")
    total = sum(raw[-1::-2]) + sum(raw[-2::-2].translate(_DOUBLED)) - 0x30 * len(raw)
    return total % 10 == 0


def _card_spans(groups: list[str]) -> list[tuple[int, int]]:
    """Digit-index spans [start, end) of whole-group stretches that are Luhn-valid cards."""
    bounds = [0]
    for group in groups:
        bounds.append(bounds[-1] + len(group))
    digits = "".join(groups)
    spans = []
    for i in range(len(groups)):
        for j in range(i + 1, len(groups) + 1):
            length = bounds[j] - bounds[i]
            if length > _CARD_MAX:
                break
            if length >= _CARD_MIN and luhn_valid(digits[bounds[i] : bounds[j]]):
                spans.append((bounds[i], bounds[j]))
    return spans


def _mask_run(match: re.Match[str]) -> str:
    run = match.group()
    groups = _SEPARATOR.split(run)
    if len(run) - len(groups) + 1 > _LONG_RUN:  # digits: no value has this many
        return _mask(run, _CARD_VISIBLE)  # and checking every stretch would cost too much
    spans = _card_spans(groups)
    if not spans:
        return run
    hidden: set[int] = set()
    for start, end in spans:
        hidden.update(range(start, end - _CARD_VISIBLE))
    out = []
    index = 0
    for ch in run:
        if ch == " " or ch == "-":
            out.append(ch)
        else:
            out.append("*" if index in hidden else ch)
            index += 1
    return "".join(out)


# Python's regex engine pays ~20 ns per character to look for a digit run, so long texts are
# first reduced, in C, to a "shape": digits, spaces and dashes become "0", anything else "x".
# A card needs 13 zeros in a row there; most texts have none, and the rest are searched only
# inside those stretches.
_SHAPE = bytes(0x30 if b in b"0123456789 -" else 0x78 for b in range(256))
_ZEROS = b"0" * _CARD_MIN
_ASCII = bytes(range(128))


def _candidate_stretches(raw: bytes) -> Iterator[tuple[int, int]]:
    """[start, end) of each stretch of ASCII digits, spaces and dashes that may hold a card."""
    shape = raw.translate(_SHAPE)
    start = shape.find(_ZEROS)
    while start != -1:
        end = shape.find(b"x", start)
        end = len(shape) if end == -1 else end
        yield start, end
        start = shape.find(_ZEROS, end)


def _mask_cards(text: str) -> str:
    """``text`` with every card run masked to its last 4 digits."""
    if len(text) < _CARD_MIN:
        return text
    if text.isascii() and _ZEROS not in text.encode("ascii").translate(_SHAPE):
        return text
    while True:  # masking can expose a new run's edge; stop once nothing changes
        masked = _RUN.sub(_mask_run, text)
        if masked == text:
            return masked
        text = masked


def _may_hold_card(raw: bytes) -> bool:
    """Whether any 13–19 digits in a row in ``raw`` (UTF-8), separators ignored, pass Luhn.

    True for every encoded text holding a string that :func:`_mask_cards` would change, since
    JSON never escapes digits, spaces or dashes; also true for some that hold none.
    """
    if not raw.isascii():
        foreign = raw.translate(None, _ASCII).decode("utf-8", "replace")
        if _DIGIT.search(foreign):
            return True  # digits of another script: too rare to be clever about
    for start, end in _candidate_stretches(raw):
        if end - start > 2 * _LONG_RUN:
            return True  # let the walk deal with it
        for match in _RUN.finditer(raw[start:end].decode("ascii")):
            digits = _SEPARATOR.sub("", match.group())
            if len(digits) > _LONG_RUN:
                return True
            for first in range(len(digits) - _CARD_MIN + 1):
                for last in range(first + _CARD_MIN, min(first + _CARD_MAX, len(digits)) + 1):
                    if luhn_valid(digits[first:last]):
                        return True
    return False


def _mask(text: str, keep_last: int) -> str:
    excess = len(_DIGIT.findall(text)) - keep_last
    return _DIGIT.sub("*", text, count=excess) if excess > 0 else text


# -- Compiled rules: a small automaton over path segments ----------------------------------------


class _Decision(msgspec.Struct, frozen=True, gc=False):
    rank: tuple[int, int, int]  # (literal segments, * segments, -position): higher decides
    action: Action
    keep_last: int


class _Node:
    """One segment position of the rule trie; ``loop`` nodes stand for ``**``."""

    __slots__ = ("decision", "dstar", "lit", "loop", "star")

    def __init__(self, *, loop: bool = False) -> None:
        self.lit: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.dstar: _Node | None = None
        self.loop = loop
        self.decision: _Decision | None = None


class _State:
    """A set of trie nodes the walk can be at: ``lit[key]`` or ``other`` is the next set."""

    __slots__ = ("_live", "decision", "lit", "other")

    def __init__(self) -> None:
        self.lit: dict[str, _State | None] = {}
        self.other: _State | None = None
        self.decision: _Decision | None = None
        self._live: tuple[tuple[str, _State], ...] | None = None

    @property
    def live(self) -> tuple[tuple[str, _State], ...]:
        """The keys some rule continues through, with where they lead (built on first use,
        once the automaton is complete)."""
        if self._live is None:
            self._live = tuple((k, s) for k, s in self.lit.items() if s is not None)
        return self._live


def _check_rule(position: int, rule: Rule) -> list[str]:
    field = f"privacy.rules[{position}]"
    if rule.action not in ("keep", "mask", "hash", "drop"):
        raise ConfigError(field, f"action must be keep, mask, hash or drop, not {rule.action!r}")
    if isinstance(rule.keep_last, bool) or not isinstance(rule.keep_last, int):
        raise ConfigError(field, "keep_last must be a whole number")
    if rule.keep_last < 0:
        raise ConfigError(field, f"keep_last must be ≥ 0, got {rule.keep_last}")
    segments = rule.path.split(".")
    for segment in segments:
        if not segment:
            raise ConfigError(field, f"path {rule.path!r} has an empty segment")
        if "*" in segment and segment not in ("*", "**"):
            raise ConfigError(field, f"path {rule.path!r}: * and ** must be whole segments")
    return segments


def _trie(rules: Iterable[Rule]) -> _Node:
    root = _Node()
    for position, rule in enumerate(rules):
        node = root
        segments = _check_rule(position, rule)
        for segment in segments:
            if segment == "*":
                node.star = node.star or _Node()
                node = node.star
            elif segment == "**":
                node.dstar = node.dstar or _Node(loop=True)
                node = node.dstar
            else:
                node = node.lit.setdefault(segment, _Node())
        literals = sum(s not in ("*", "**") for s in segments)
        decision = _Decision(
            (literals, segments.count("*"), -position), rule.action, rule.keep_last
        )
        if node.decision is None or decision.rank > node.decision.rank:
            node.decision = decision
    return root


def _closure(nodes: Iterable[_Node]) -> frozenset[_Node]:
    """``nodes`` plus every ``**`` reachable by matching it against no key at all."""
    seen: set[_Node] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            if node.dstar is not None:
                stack.append(node.dstar)
    return frozenset(seen)


def _automaton(root: _Node) -> _State:
    states: dict[frozenset[_Node], _State] = {}

    def state(nodes: frozenset[_Node]) -> _State | None:
        if not nodes:
            return None
        if nodes in states:
            return states[nodes]
        made = states[nodes] = _State()
        decisions = [n.decision for n in nodes if n.decision is not None]
        made.decision = max(decisions, key=lambda d: d.rank, default=None)
        anything = [n.star for n in nodes if n.star is not None] + [n for n in nodes if n.loop]
        made.other = state(_closure(anything))
        for key in {key for n in nodes for key in n.lit}:
            made.lit[key] = state(_closure(anything + [n.lit[key] for n in nodes if key in n.lit]))
        return made

    start = state(_closure([root]))
    assert start is not None  # the root set is never empty
    return start


# -- The redactor --------------------------------------------------------------------------------

_DROP: Any = object()
_ABSENT: Any = object()
_HASHED = re.compile(HASH_PREFIX + "[0-9a-f]{32}")  # already hashed: redacting twice is harmless
_MEMO_SIZE = 4096


def _canonical(value: Any) -> bytes:
    """JSON with sorted keys when possible; failing that, any stable text for ``value``."""
    with contextlib.suppress(Exception):
        return msgspec.json.encode(value, order="deterministic")
    with contextlib.suppress(Exception):  # non-string keys
        return msgspec.json.encode(value)
    with contextlib.suppress(Exception):  # surrogates, unknown types
        return repr(value).encode("utf-8", "surrogatepass")
    return b"<unencodable>"  # nested past the interpreter's recursion limit


class Redactor:
    """Applies ``rules`` (compiled once) and the card scan to one event's ``data`` at a time.

    ``key`` is the HMAC key for ``hash`` (at least 16 bytes; see :func:`load_key`).
    """

    def __init__(self, rules: Iterable[Rule], key: bytes, *, scan_cards: bool = True) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the privacy key must be at least {MIN_KEY_BYTES} bytes")
        rules = list(rules)
        self._hmac = hmac.new(bytes(key), digestmod=hashlib.sha256)
        # a call's ANI recurs in each of its events and a flow's DNIS in every call: remember
        # recent hashes (in memory only, where the raw event is anyway)
        self._memo: dict[str, str] = {}
        self._root = _automaton(_trie(rules))
        self._scan_cards = scan_cards
        # masking never makes digits, so the pre-check is exact unless a mask keeps ≥ 13
        self._precheck = all(r.action != "mask" or r.keep_last < _CARD_MIN for r in rules)

    def redact(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A new dict: ``data`` with the rules applied and card numbers masked."""
        scan = self._scan_cards and self._needs_scan(data)
        out = self._map(data, self._root, None, scan, 0)
        return dict(out) if out is data else out

    def hash(self, value: Any) -> str:
        """What ``hash`` writes for ``value``: to look a caller up in redacted stores."""
        if isinstance(value, str):
            known = self._memo.get(value)
            if known is not None:
                return known
            payload = value.encode("utf-8", "surrogatepass")
        else:
            payload = _canonical(value)
        mac = self._hmac.copy()
        mac.update(payload)
        digest = HASH_PREFIX + mac.hexdigest()[:32]
        if isinstance(value, str):
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[value] = digest
        return digest

    def _needs_scan(self, data: Mapping[str, Any]) -> bool:
        if not self._precheck:
            return True
        try:
            raw = msgspec.json.encode(data)
        except Exception:
            return True  # not JSON-encodable: walk everything
        return _may_hold_card(raw)

    def _map(
        self, data: Mapping[Any, Any], st: _State | None, mask: int | None, scan: bool, depth: int
    ) -> Any:
        """``data`` itself when nothing inside changes, else a changed copy."""
        out: dict[Any, Any] | None = None
        if not scan and mask is None:
            if st is None:
                return data
            if st.other is None:
                # the common case (rules only, no scan): visit just the keys a rule names
                for key, child in st.live:
                    value = data.get(key, _ABSENT)
                    if value is not _ABSENT:
                        new = self._value(value, child, None, False, depth)
                        if new is not value:
                            out = _with(out, data, key, new)
                return data if out is None else out
        lit = st.lit if st is not None else {}
        other = st.other if st is not None else None
        for key, value in data.items():
            state = lit.get(key, other)
            if state is None and mask is None:
                new = _scan(value, depth) if scan else value
            else:
                new = self._value(value, state, mask, scan, depth)
            if new is not value:
                out = _with(out, data, key, new)
        return data if out is None else out

    def _seq(
        self,
        items: list[Any] | tuple[Any, ...],
        st: _State | None,
        mask: int | None,
        scan: bool,
        depth: int,
    ) -> Any:
        child = st.other if st is not None else None
        if child is None and mask is None and not scan:
            return items
        out: list[Any] | None = None
        for i, value in enumerate(items):
            if child is not None or mask is not None:
                new = self._value(value, child, mask, scan, depth)
            else:
                new = _scan(value, depth) if scan else value
            if out is None and new is not value:
                out = list(items[:i])
            if out is not None and new is not _DROP:
                out.append(new)
        if out is None:
            return items
        return tuple(out) if isinstance(items, tuple) else out

    def _value(
        self, value: Any, st: _State | None, mask: int | None, scan: bool, depth: int
    ) -> Any:
        exempt = False
        if st is not None and st.decision is not None:
            action = st.decision.action
            if action == "drop":
                return _DROP
            if action == "hash":
                hashed = (
                    isinstance(value, str)
                    and value.startswith(HASH_PREFIX)
                    and _HASHED.fullmatch(value) is not None
                )
                return value if hashed else self.hash(value)
            if action == "mask":
                mask = st.decision.keep_last
            else:
                mask, exempt = None, True
        if mask is not None and type(value) in (int, float):
            value = repr(value)  # a masked number is a string
        if isinstance(value, str):
            if mask is not None:
                value = _mask(value, mask)
            return _mask_cards(value) if scan and not exempt else value
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                return TOO_DEEP
            return self._map(value, st, mask, scan, depth + 1)
        if isinstance(value, list | tuple):
            if depth >= MAX_DEPTH:
                return TOO_DEEP
            return self._seq(value, st, mask, scan, depth + 1)
        return value


def _with(
    out: dict[Any, Any] | None, data: Mapping[Any, Any], key: Any, new: Any
) -> dict[Any, Any]:
    """``out`` (a copy of ``data``, made now if need be) with ``key`` set to ``new`` (or gone)."""
    if out is None:
        out = dict(data)
    if new is _DROP:
        del out[key]
    else:
        out[key] = new
    return out


def _scan(value: Any, depth: int) -> Any:
    """The card scan alone, for subtrees no rule reaches: ``value`` itself when unchanged."""
    if isinstance(value, str):
        return _mask_cards(value)
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        changed: dict[Any, Any] | None = None
        for key, item in value.items():
            new = _scan(item, depth + 1)
            if new is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = new
        return value if changed is None else changed
    if isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        items = [_scan(item, depth + 1) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return tuple(items) if isinstance(value, tuple) else items
    return value


# -- Raw bytes -----------------------------------------------------------------------------------

_PHONE = re.compile(rb"(tel:\+?|\+)([0-9]+)")
_PHONE_MIN_BARE = 8  # a bare "+" needs 8–15 digits to count as a number
_PHONE_MAX_BARE = 15
_PLACEHOLDER = b"[phone"


def _phone_placeholder(match: re.Match[bytes]) -> bytes:
    prefix, digits = match.group(1), match.group(2)
    if prefix == b"+" and not _PHONE_MIN_BARE <= len(digits) <= _PHONE_MAX_BARE:
        return match.group()
    if len(digits) < len(_PLACEHOLDER) + 1:
        return prefix + b"#" * len(digits)
    return prefix + _PLACEHOLDER + b"#" * (len(digits) - len(_PLACEHOLDER) - 1) + b"]"


def scrub_bytes(raw: bytes) -> bytes:
    """``raw`` with card runs masked and phone numbers replaced; the length never changes.

    For frames that could not be parsed (invalid JSON or MessagePack), so the rules cannot
    apply. Only ASCII digits count. A card run becomes ``************1111``; ``tel:`` (with or
    without ``+``) and its digits, or ``+`` and 8–15 digits, keep the prefix while the digits
    become ``[phone####]`` — as many ``#`` as it takes to keep the length (``#`` alone for
    fewer than 7 digits): ``"tel:+15555550520"`` → ``"tel:+[phone####]"``. A number written
    with spaces (``+1 555 555 0520``) is not recognised as one; its digits stay.
    """
    out = bytearray(raw)
    for start, end in _candidate_stretches(raw):
        out[start:end] = _mask_cards(raw[start:end].decode("ascii")).encode("ascii")
    return _PHONE.sub(_phone_placeholder, bytes(out))


# -- The key -------------------------------------------------------------------------------------

_FIELD = "privacy.key_file"
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


def _decode_env_key(value: str) -> bytes:
    text = value.strip()
    if _HEX.fullmatch(text):
        key = bytes.fromhex(text)
    else:
        b64 = text.replace("-", "+").replace("_", "/")
        try:
            key = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(
                _FIELD, f"{KEY_ENV} is neither hex nor base64 (e.g. `openssl rand -hex 32`)"
            ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            _FIELD, f"{KEY_ENV} holds {len(key)} bytes; the key needs at least {MIN_KEY_BYTES}"
        )
    return key


def _create_key(path: Path) -> None:
    """Write 32 random bytes to ``path`` (mode 0600) all at once, unless it appeared meanwhile."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    temp = Path(name)
    try:
        os.write(fd, os.urandom(32))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)  # atomic, and refuses to replace a key another process just wrote
    except FileExistsError:
        pass
    finally:
        temp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_key(path: Path, env_value: str | None) -> bytes:
    """The HMAC key: ``env_value`` (from ``IVRSTREAM_PRIVACY_KEY``; hex or base64) when set,
    else the raw bytes of the file at ``path``, created with 32 random bytes if absent.

    Keep the key file (or the variable) for as long as hashes must join: a new key gives
    every caller a new hash. A variable that is set but empty is an error, not a reason to
    fall back to the file (that would change every hash without a word).

    Raises :class:`~ivrstream.errors.ConfigError` naming ``privacy.key_file`` when the key is
    unreadable, malformed or shorter than 16 bytes; the message never contains the key. The
    file holds raw bytes: to use one key in both places, write the variable as the file's hex.
    """
    if env_value is not None:
        return _decode_env_key(env_value)
    try:
        if not path.exists():
            _create_key(path)
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(_FIELD, f"cannot read or create {path}: {exc.strerror or exc}") from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            _FIELD,
            f"{path} holds {len(key)} bytes; a key needs at least {MIN_KEY_BYTES} "
            "(delete the file to have a new one made, which changes every hash)",
        )
    return key
