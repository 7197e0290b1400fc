"""Where each key of a TOML text is written: tomllib gives values without positions, so
``KeyLines`` scans the (already valid) text once and maps each key path, e.g.
``("nhrp", "nhs", 1, "nbma")``, to the line it is written on, for ``FILE:LINE: KEY``
messages."""

from __future__ import annotations

import itertools
import re
import tomllib

from .schema import KeyPath

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^,\]}\n#]*")


class KeyLines:
    """The line each key path is written on, for a text tomllib has accepted.

    Tables and array-of-tables entries map to their header line, keys (also inside inline
    tables) to their own line, array elements to the line the element starts on.
    """

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1
        self.lines: dict[KeyPath, int] = {}
        self._aot: dict[KeyPath, int] = {}        # array of tables -> entries so far
        self._scan()

    def line_of(self, path: KeyPath) -> int:
        """Line of path, or of its nearest written parent (a missing key: its table)."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return 1

    # scanning primitives (the text is valid TOML: no error handling needed)
    def _advance(self, n: int = 1) -> None:
        self.line += self.text.count("\n", self.pos, self.pos + n)
        self.pos += n

    def _skip(self, newlines: bool = True) -> None:
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self._advance()
            elif c == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def _string(self) -> str:
        """Skip a string of any of the four kinds; return its source text."""
        start, quote = self.pos, self.text[self.pos]
        delim = quote * 3 if self.text.startswith(quote * 3, self.pos) else quote
        self._advance(len(delim))
        while not self.text.startswith(delim, self.pos):
            self._advance(2 if quote == '"' and self.text[self.pos] == "\\" else 1)
        self._advance(len(delim))
        while len(delim) == 3 and self.text.startswith(quote, self.pos):
            self._advance()                       # """a""""" ends with content quotes
        return self.text[start:self.pos]

    def _key(self) -> tuple[str, ...]:
        parts = []
        while True:
            self._skip(newlines=False)
            if self.text[self.pos] in "\"'":
                parts.append(tomllib.loads("k = " + self._string())["k"])
            else:
                bare = _BARE_KEY.match(self.text, self.pos).group()
                parts.append(bare)
                self._advance(len(bare))
            self._skip(newlines=False)
            if not self.text.startswith(".", self.pos):
                return tuple(parts)
            self._advance()

    def _value(self, path: KeyPath) -> None:
        c = self.text[self.pos]
        if c in "\"'":
            self._string()
        elif c == "[":
            self._advance()
            for index in itertools.count():
                self._skip()
                if self.text[self.pos] == "]":
                    break
                self.lines.setdefault(path + (index,), self.line)
                self._value(path + (index,))
                self._skip()
                if self.text[self.pos] == ",":
                    self._advance()
            self._advance()
        elif c == "{":
            self._advance()
            while True:
                self._skip()
                if self.text[self.pos] == "}":
                    break
                self._keyval(path)
                self._skip()
                if self.text[self.pos] == ",":
                    self._advance()
            self._advance()
        else:
            self._advance(len(_SCALAR.match(self.text, self.pos).group()))

    def _keyval(self, table: KeyPath) -> None:
        line, key = self.line, self._key()
        for i in range(1, len(key) + 1):
            self.lines.setdefault(table + key[:i], line)
        self._advance()                           # "="
        self._skip(newlines=False)
        self._value(table + key)

    def _resolve(self, key: tuple[str, ...], line: int) -> KeyPath:
        """A header's key path, with each array of tables resolved to its last entry."""
        path: KeyPath = ()
        for part in key:
            path += (part,)
            self.lines.setdefault(path, line)
            if path in self._aot:
                path += (self._aot[path] - 1,)
        return path

    def _scan(self) -> None:
        table: KeyPath = ()
        while True:
            self._skip()
            if self.pos >= len(self.text):
                return
            line = self.line
            if self.text.startswith("[[", self.pos):
                self._advance(2)
                key = self._key()
                self._advance(2)
                array = self._resolve(key[:-1], line) + key[-1:]
                self.lines.setdefault(array, line)
                index = self._aot.get(array, 0)
                self._aot[array] = index + 1
                table = array + (index,)
                self.lines[table] = line
            elif self.text[self.pos] == "[":
                self._advance()
                key = self._key()
                self._advance()
                table = self._resolve(key, line)
                self.lines[table] = line
            else:
                self._keyval(table)
