"""The on-disk format of adjit's object-code cache (no llvmlite here: files only).

An entry is ``MAGIC``, one JSON header line (the content key, lengths and sha256 of the
object code and of the optimized IR), then the two bodies.  Entries are written to a
temporary file in the cache directory and renamed into place, so a reader never sees a
partial entry; :func:`read_entry` checks every field and hash and says why it rejects
an entry.  :mod:`.target` computes the key and decides hit or miss.

Trust (:func:`usable_cache_dir`): anyone who can write an entry can run code in our
process, so, as ssh does for its files, every component of the directory's path is
checked with ``lstat``: a symbolic link must be owned by this user (or root), a directory
owned by this user or root and not writable by others unless sticky (``/tmp``), and the
cache directory itself owned by this user and not group/world writable (created 0700).
An entry is only read if it is a regular file owned by this user (``lstat``, then
``O_NOFOLLOW | O_NONBLOCK`` and ``fstat`` of the same file): a FIFO, device or link in
its place is never opened.

Size: after each write the directory is kept under ``$ADJIT_CACHE_MAX_BYTES`` (default
256 MiB; suffixes K, M, G) by removing the least recently used entries (a hit touches its
entry's mtime).
"""
from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import stat
import struct
import tempfile
import time

MAGIC = b"ADJITOBJ1\n"
ENTRY_SUFFIX = ".adjitobj"


def cache_dir() -> str:
    """The per-user cache directory: $ADJIT_CACHE_DIR, else $XDG_CACHE_HOME/adjit, else
    ~/.cache/adjit.  Not created here."""
    d = os.environ.get("ADJIT_CACHE_DIR")
    if d:
        return os.path.abspath(os.path.expanduser(d))
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "adjit")


def cache_switch(cache: bool | None) -> str | None:
    """Why the cache is off (``cache`` False, or None with ``ADJIT_CACHE=0``), or None
    when it is on: the one reading of the switch for every layer of the cache."""
    if cache is False:
        return "disabled by argument cache=False"
    if cache is None and os.environ.get("ADJIT_CACHE", "1").strip() == "0":
        return "disabled by ADJIT_CACHE=0"
    return None


DEFAULT_MAX_BYTES = 256 << 20
_STALE_TMP_S = 3600          # a temp file this old was left by a writer that died
_UID = os.getuid() if hasattr(os, "getuid") else None


def _trusted_owner(uid: int) -> bool:
    return _UID is None or uid in (_UID, 0)


def _path_problem(path: str) -> str | None:
    """Why a directory at ``path`` (absolute, normalized) cannot be trusted, or None.
    Every existing component is checked with lstat; a symlink is followed (after its
    own check) and its target's components checked the same way."""
    seen = 0
    parts = [p for p in path.split(os.sep) if p]
    cur = os.sep
    while parts:
        nxt = os.path.join(cur, parts.pop(0))
        try:
            st = os.lstat(nxt)
        except FileNotFoundError:
            return None            # the rest does not exist yet (created below)
        if stat.S_ISLNK(st.st_mode):
            if not _trusted_owner(st.st_uid):
                return f"{nxt} is a symbolic link owned by another user (uid {st.st_uid})"
            seen += 1
            if seen > 40:
                return f"too many symbolic links in {path}"
            target = os.path.join(cur, os.readlink(nxt))
            parts = [p for p in os.path.normpath(target).split(os.sep) if p] + parts
            cur = os.sep
            continue
        if not stat.S_ISDIR(st.st_mode):
            return f"{nxt} is not a directory"
        if not _trusted_owner(st.st_uid):
            return f"{nxt} is owned by another user (uid {st.st_uid})"
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX and parts:
            return f"{nxt} is writable by others (and not sticky)"
        cur = nxt
    return None


def usable_cache_dir() -> tuple[str | None, str]:
    """Create (mode 0o700) and check the cache directory; return (path, "") or (None, why)."""
    d = os.path.normpath(cache_dir())
    why = _path_problem(d)
    if why is None:
        try:
            if not os.path.lexists(d):
                os.makedirs(d, mode=0o700, exist_ok=True)
                os.chmod(d, 0o700)        # makedirs' mode is filtered by the umask
            why = _path_problem(d)        # again: what exists now, links included
            st = os.stat(d)
        except OSError as e:
            return None, f"cache dir unusable ({e.strerror})"
    if why is not None:
        return None, f"cache dir refused: {why}"
    if _UID is not None and st.st_uid != _UID:
        return None, f"cache dir {d} not owned by this user"
    if st.st_mode & 0o022:
        return None, f"cache dir {d} is group/world writable"
    return d, ""


def is_entry(path: str) -> bool:
    """Whether something (of any kind: read_entry decides) is stored at ``path``."""
    return os.path.lexists(path)


def _open_regular(path: str) -> int:
    """A read-only descriptor of ``path`` if it is a regular file owned by this user;
    OSError otherwise (a FIFO, device, directory or link is never opened)."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EPERM, "not a regular file")
    if _UID is not None and st.st_uid != _UID:
        raise OSError(errno.EPERM, "owned by another user")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    fst = os.fstat(fd)
    if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise OSError(errno.EPERM, "replaced while opened")
    return fd


def read_entry(path: str, key: str) -> tuple[bytes, str] | str:
    """Return (object bytes, optimized IR) or a string saying why the entry is bad
    (OSError, with the reason as strerror, for what is not a regular file of ours).
    A good entry's mtime is set to now: the size bound evicts the least recently used."""
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        data = f.read()
        ok = _parse(data, key)
        if isinstance(ok, tuple):
            try:
                os.utime(f.fileno())
            except (OSError, NotImplementedError):
                pass
    return ok


def _parse(data: bytes, key: str) -> tuple[bytes, str] | str:
    if not data.startswith(MAGIC):
        return "bad header"
    nl = data.find(b"\n", len(MAGIC))
    if nl < 0:
        return "bad header"
    try:
        hdr = json.loads(data[len(MAGIC):nl])
        n_obj, n_ir = int(hdr["obj_len"]), int(hdr["ir_len"])
    except (ValueError, KeyError, TypeError):
        return "bad header"
    if not isinstance(hdr, dict) or hdr.get("key") != key:
        return "bad header"
    body = data[nl + 1:]
    if len(body) != n_obj + n_ir:
        return "truncated" if len(body) < n_obj + n_ir else "trailing bytes"
    obj, ir = body[:n_obj], body[n_obj:]
    if (hashlib.sha256(obj).hexdigest() != hdr.get("obj_sha256")
            or hashlib.sha256(ir).hexdigest() != hdr.get("ir_sha256")):
        return "hash mismatch"
    return obj, ir.decode()


def write_entry(path: str, key: str, obj: bytes, opt_ir: str) -> None:
    """Write atomically: temp file in the same directory, then os.replace."""
    ir = opt_ir.encode()
    hdr = {"key": key, "obj_len": len(obj), "obj_sha256": hashlib.sha256(obj).hexdigest(),
           "ir_len": len(ir), "ir_sha256": hashlib.sha256(ir).hexdigest()}
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=ENTRY_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + json.dumps(hdr, sort_keys=True).encode() + b"\n" + obj + ir)
        os.replace(tmp, path)     # replaces whatever was there (a link: the link itself)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def max_bytes() -> int:
    """The size bound of the cache directory: ``$ADJIT_CACHE_MAX_BYTES`` (bytes, or with a
    K/M/G suffix, powers of 1024), default 256 MiB.  ValueError if it cannot be read."""
    raw = os.environ.get("ADJIT_CACHE_MAX_BYTES", "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(raw[-1].upper(), 1)
    digits = raw[:-1] if scale > 1 else raw
    if not digits.isdigit():
        raise ValueError(f"ADJIT_CACHE_MAX_BYTES must be a number of bytes (suffix K, M or "
                         f"G allowed), got {raw!r}")
    return int(digits) * scale


def enforce_limit(d: str, keep: str | None = None) -> int:
    """Remove the least recently used entries (oldest mtime first) of directory ``d``
    until its entries take at most :func:`max_bytes`; never ``keep`` (the entry just
    written).  Temp files of writers that died long ago go too.  Returns bytes removed."""
    limit, now = max_bytes(), time.time()
    files, total, freed = [], 0, 0
    with os.scandir(d) as it:
        for e in it:
            if not e.name.startswith((".tmp-",)) and not e.name.endswith(_SUFFIXES):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if e.name.startswith(".tmp-"):
                if now - st.st_mtime > _STALE_TMP_S:
                    freed += _remove(e.path, st.st_size)
                continue
            total += st.st_size
            if e.path != keep:
                files.append((st.st_mtime, e.path, st.st_size))
    for _, path, size in sorted(files):
        if total <= limit:
            break
        got = _remove(path, size)
        total -= got
        freed += got
    return freed


def _remove(path: str, size: int) -> int:
    try:
        os.unlink(path)
    except OSError:
        return 0
    return size


_SUFFIXES = (ENTRY_SUFFIX, ".adjitfn", ".adjitlib")   # every kind of entry adjit writes


# several object files in one entry (a compile split over threads; see target)
_OBJS_MAGIC = b"ADJITOBJS\n"


def pack_objects(objs: list[bytes]) -> bytes:
    """One object as itself; several as _OBJS_MAGIC, count, lengths, then the objects."""
    if len(objs) == 1:
        return objs[0]
    return _OBJS_MAGIC + struct.pack(f"<I{len(objs)}Q", len(objs), *map(len, objs)) + b"".join(objs)


def unpack_objects(blob: bytes) -> list[bytes] | None:
    """The objects of :func:`pack_objects`'s payload, or None when it is inconsistent."""
    if not blob.startswith(_OBJS_MAGIC):
        return [blob]
    try:
        (n,) = struct.unpack_from("<I", blob, len(_OBJS_MAGIC))
        lens = struct.unpack_from(f"<{n}Q", blob, len(_OBJS_MAGIC) + 4)
    except struct.error:
        return None
    ends = list(itertools.accumulate(lens, initial=len(_OBJS_MAGIC) + 4 + 8 * n))
    return [blob[a:b] for a, b in zip(ends, ends[1:])] if n and ends[-1] == len(blob) else None
