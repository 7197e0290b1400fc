"""Reading and writing configuration files: `load`/`loads` (TOML through tomllib, every
problem one ConfigError line with file, line and key) and `render_toml` (through tomli-w,
every default written out, `loads(render_toml(cfg)) == cfg`)."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

import tomli_w

from .lines import KeyLines
from .schema import ConfigError, NodeConfig
from .validation import read

# --- entry points -----------------------------------------------------------------------

_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def _syntax_error(source: str, text: str, exc: tomllib.TOMLDecodeError) -> ConfigError:
    message = str(exc)
    match = _TOML_POSITION.search(message)
    if match and match[1]:
        line, where = int(match[1]), f" (column {match[2]})"
    else:
        line, where = text.count("\n") + (not text.endswith("\n")), " (at end of file)"
    message = message[:match.start()] if match else message
    return ConfigError(source, max(line, 1), _key_on_line(text, line),
                       f"TOML syntax error: {message[:1].lower()}{message[1:]}{where}")


def _key_on_line(text: str, line: int) -> str:
    """Best effort: the key written on a line tomllib refused, with its table."""
    lines = text.split("\n")                 # TOML (and tomllib) end lines at \n only
    if not 1 <= line <= len(lines):
        return ""
    key = re.match(r"\s*([A-Za-z0-9_.-]+)\s*=", lines[line - 1])
    if not key:
        return ""
    for above in reversed(lines[:line - 1]):
        header = re.match(r"\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]", above)
        if header:
            return f"{header[1]}.{key[1]}"
    return key[1]


MAX_DEPTH = 16                 # tables, arrays and keys inside each other (a node's: 4)


def _depth(doc: object) -> int:
    """How deep tables and arrays go in doc, without recursion (stops past MAX_DEPTH)."""
    deepest, todo = 0, [(doc, 0)]
    while todo:
        value, depth = todo.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(value, dict):
            todo.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            todo.extend((v, depth + 1) for v in value)
    return deepest


def loads(text: str, source: str = "<string>") -> NodeConfig:
    """The configuration in TOML text; ConfigError names source, line and key."""
    try:
        doc = tomllib.loads(text)
        if _depth(doc) > MAX_DEPTH:
            raise RecursionError           # a dotted key of 20,000 parts is valid TOML
        lines = KeyLines(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(source, text, exc) from None
    except RecursionError:
        raise ConfigError(source, None, "", "TOML nested too deeply (tables, arrays or keys "
                                            "inside each other): not a node configuration") \
            from None
    except ValueError as exc:       # a value tomllib refuses past the syntax, e.g. an
        raise ConfigError(source, None, "", "TOML value not readable: "   # integer too long
                          + str(exc).split("\n")[0]) from None
    return read(doc, source, lines)


MAX_CONFIG_BYTES = 1 << 20     # a node configuration is a few kB; 1 MiB is far past any


def _read_config(path: str) -> bytes:
    """The bytes of a regular file of at most MAX_CONFIG_BYTES. A FIFO, a device (/dev/zero)
    or a directory is refused at once: read, it would hang the caller (a running daemon
    reloads on SIGHUP) or fill its memory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(path, None, "", f"cannot read ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(path, None, "", "not a regular file (a node configuration is "
                                              "a TOML file)")
        chunks, size = [], 0
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(path, None, "", f"larger than {MAX_CONFIG_BYTES >> 20} MiB: "
                                              "not a node configuration")
        return b"".join(chunks)
    except OSError as exc:
        raise ConfigError(path, None, "", f"cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)


def load(path: str | Path) -> NodeConfig:
    """The configuration in a TOML file."""
    data = _read_config(str(path))
    try:
        text = data.decode("utf-8-sig")          # a BOM some editors write is not TOML
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(str(path), line, "", "not UTF-8 text (TOML files are UTF-8)") from None
    return loads(text, str(path))


# --- writing a configuration back -------------------------------------------------------

_ARRAYS_OF_TABLES = {"nhrp": ("nhs", "map"), "ipsec": ("identities",)}


def render_toml(cfg: NodeConfig) -> str:
    """cfg as a TOML file, every default written out (absent values, None, left out), in
    the order of the key tables; arrays of tables as [[section.key]] blocks after their
    section. loads() gives cfg back."""
    doc = cfg.to_dict()
    out = [tomli_w.dumps({"role": doc.pop("role")})]
    for section, body in doc.items():
        if body is None:
            continue
        arrays = {k: body.pop(k) for k in _ARRAYS_OF_TABLES.get(section, ())}
        out.append(tomli_w.dumps({section: {k: v for k, v in body.items() if v is not None}}))
        for key, entries in arrays.items():
            for entry in entries:
                out.append(f"[[{section}.{key}]]\n" + tomli_w.dumps(entry))
    return "\n".join(out)
