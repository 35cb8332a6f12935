"""Starting a job's program without holding the GIL: glibc's ``posix_spawn`` through ctypes.

CPython 3.11's ``os.posix_spawn`` (like ``_posixsubprocess``'s vfork) keeps the GIL while the
runner waits for the child to reach ``exec`` (vfork semantics). That wait is not CPU of the
runner but, on a busy machine, about a millisecond per job in which the courier thread
(:mod:`.courier`, the embedded store's completions) cannot run either: measured in a 4,000-job
run, 0.11 ms of CPU and 0.91 ms of wall time per spawn. ctypes releases the GIL around a foreign
call, so :func:`posix_spawn` here lets the courier work while the child execs.

Same effect as ``os.posix_spawn(path, argv, env, file_actions=[open 0, 1, 2], setsid=True,
setsigdef=signals)``: the child gets stdin from /dev/null, stdout/stderr truncated into the given
files, its own session, and the given signals back at their default action. Only on Linux with
glibc ≥ 2.26 (``POSIX_SPAWN_SETSID``); :data:`AVAILABLE` is False elsewhere and the caller uses
``os.posix_spawn``.

Raises OSError (errno of the failed open or exec, as ``os.posix_spawn``) and ValueError (a NUL
byte in an argument, path or environment entry).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable

#: glibc's flag values (<spawn.h>).
_SETSIGDEF = 0x04
_SETSID = 0x80
#: Room for the opaque ``posix_spawn_file_actions_t`` / ``posix_spawnattr_t`` (glibc x86-64:
#: 80 / 336 bytes; generous for every glibc architecture).
_OPAQUE = 1024
#: Bytes of a ``sigset_t`` (glibc: 1024 bits).
_SIGSET = 128
#: Encoded environment entries, by (name, value): most entries are the same for every job.
_ENTRIES: dict[tuple[str, str], bytes] = {}
_MAX_ENTRIES = 4096


def _glibc_at_least(major: int, minor: int) -> bool:
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return False
    name, _, number = version.partition(" ")
    try:
        have = tuple(int(p) for p in number.split(".")[:2])
    except ValueError:
        return False
    return name == "glibc" and have >= (major, minor)


def _load() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or not _glibc_at_least(2, 26):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


_libc = _load()
AVAILABLE = _libc is not None
_attrs: dict[tuple[int, ...], ctypes.Array] = {}  # spawn attributes, by the signals to default


def _attr(signals: Iterable[int]) -> ctypes.Array:
    """The (immutable, shared) spawn attributes: new session, ``signals`` at default."""
    key = tuple(sorted(int(s) for s in signals))
    attr = _attrs.get(key)
    if attr is None:
        assert _libc is not None
        attr = ctypes.create_string_buffer(_OPAQUE)
        sigset = ctypes.create_string_buffer(_SIGSET)
        _libc.sigemptyset(sigset)
        for sig in key:
            _libc.sigaddset(sigset, sig)
        _libc.posix_spawnattr_init(attr)
        _libc.posix_spawnattr_setsigdefault(attr, sigset)
        _libc.posix_spawnattr_setflags(attr, ctypes.c_short(_SETSID | _SETSIGDEF))
        _attrs[key] = attr
    return attr


def _c_string(text: str) -> bytes:
    data = os.fsencode(text)
    if b"\0" in data:
        raise ValueError("embedded null byte")
    return data


def _environment(env: dict[str, str]) -> ctypes.Array:
    """``env`` as a NULL-terminated ``char *envp[]``."""
    entries = []
    for item in env.items():
        entry = _ENTRIES.get(item)
        if entry is None:
            name, value = item
            if "=" in name:
                raise ValueError("illegal environment variable name")
            entry = _c_string(f"{name}={value}")
            if len(_ENTRIES) >= _MAX_ENTRIES:
                _ENTRIES.clear()
            _ENTRIES[item] = entry
        entries.append(entry)
    entries.append(None)
    return (ctypes.c_char_p * len(entries))(*entries)


def posix_spawn(path: str, argv: list[str], env: dict[str, str], stdin: str, stdout: str,
                stderr: str, open_flags: int, signals: Iterable[int]) -> int:
    """Start ``path`` with ``argv`` and ``env`` (see the module docstring); its pid. The GIL is
    released while glibc waits for the child's exec. Raises OSError, ValueError."""
    assert _libc is not None
    program = _c_string(path)
    args = [_c_string(a) for a in argv]
    args.append(None)
    c_argv = (ctypes.c_char_p * len(args))(*args)
    envp = _environment(env)
    attr = _attr(signals)
    actions = ctypes.create_string_buffer(_OPAQUE)
    err = _libc.posix_spawn_file_actions_init(actions)
    if err:
        raise OSError(err, os.strerror(err))
    try:
        for fd, name, flags in ((0, stdin, os.O_RDONLY), (1, stdout, open_flags),
                                (2, stderr, open_flags)):
            err = _libc.posix_spawn_file_actions_addopen(actions, fd, _c_string(name), flags,
                                                         0o666)
            if err:
                raise OSError(err, os.strerror(err))
        pid = ctypes.c_int(0)
        err = _libc.posix_spawn(ctypes.byref(pid), program, actions, attr, c_argv, envp)
    finally:
        _libc.posix_spawn_file_actions_destroy(actions)
    if err:
        raise OSError(err, os.strerror(err), path)
    return pid.value
