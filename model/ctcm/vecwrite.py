"""Writing the files of a vector: temporary names renamed together, large
vectors streamed in chunks and split over two processes (fork) on two cores.

The bytes are the same whichever path writes them (tested).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import queue
import shutil
import sys
import tempfile
import threading
import traceback

from typing import TYPE_CHECKING

from .pcapio import new_file_mode, pcapng_record_chunks
from .vecrender import (
    _HEX_TITLE, _expected_records, _expected_rows, _hex_lines, _port_index, _stimulus_records,
    _stimulus_rows, _yaml_parts,
)

if TYPE_CHECKING:
    from .vectors import Vector

# --- the files of one vector -------------------------------------------------------

FORMATS = ("yaml", "pcapng", "hex")
_SUFFIXES = {"yaml": (".yaml",), "pcapng": (".stimulus.pcapng", ".expected.pcapng"),
             "hex": (".stimulus.hex", ".expected.hex")}


class _Outputs:
    """The files of one vector: written under temporary names in the output
    directory, then renamed into place together once all are complete
    (:meth:`commit`), or removed when the ``with`` block ends without a
    commit. A failure anywhere leaves the previous files of the vector as they
    were. Work may be handed to forked processes (:meth:`fork`); none is left
    running when the block ends."""

    def __init__(self, outdir: str, name: str, formats):
        bad = set(formats) - set(FORMATS)
        if bad:
            raise ValueError(f"unknown vector format(s) {', '.join(sorted(bad))} (yaml, pcapng, hex)")
        os.makedirs(outdir, exist_ok=True)
        self.outdir, self.name = outdir, name
        self.final: dict[str, str] = {}
        self.tmp: dict[str, str] = {}
        self.parts: list[str] = []
        self.waits: list = []
        try:
            for fmt in FORMATS:
                if fmt in formats:
                    for suffix in _SUFFIXES[fmt]:
                        self.final[suffix] = os.path.join(outdir, name + suffix)
                        self.tmp[suffix] = self._temp(suffix)
        except BaseException:
            self.discard()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.discard()
        return False

    def _temp(self, suffix: str) -> str:
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{self.name}{suffix}.", dir=self.outdir)
        os.close(fd)
        return tmp

    def path(self, suffix: str) -> str | None:
        """Where to write the file ``suffix`` (None: not wanted)."""
        return self.tmp.get(suffix)

    def scratch(self, suffix: str) -> str:
        """A temporary file for a part of a file; removed at the end."""
        tmp = self._temp(suffix)
        self.parts.append(tmp)
        return tmp

    def fork(self, fn) -> None:
        """Run ``fn()`` in a forked copy of this process (see :func:`_forked`)."""
        self.waits.append(_forked(fn))

    def join(self) -> None:
        """Wait for the forked work; raises the first error of a child."""
        while self.waits:
            self.waits.pop(0)()

    def commit(self) -> list[str]:
        self.join()
        mode = new_file_mode()
        for suffix, tmp in self.tmp.items():
            os.chmod(tmp, mode)
            os.replace(tmp, self.final[suffix])
        self.tmp = {}
        self.discard()
        return list(self.final.values())

    def discard(self) -> None:
        for wait in self.waits:  # after an error: never leave a child writing
            with contextlib.suppress(BaseException):
                wait()
        self.waits = []
        for tmp in [*self.tmp.values(), *self.parts]:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.tmp, self.parts = {}, []


def _write_text(path: str, title: str | None, parts) -> None:
    """Write text parts to ``path`` (a background thread does the writing)."""
    with _BackgroundWriter() as w, open(path, "wb") as f:
        try:
            if title:
                w.write(f, title.encode())
            for text in parts:
                w.write(f, text.encode())
        finally:
            w.drain()  # no file closes under a pending write


def _write_bytes(path: str, parts) -> None:
    with _BackgroundWriter() as w, open(path, "wb") as f:
        try:
            for part in parts:
                w.write(f, part)
        finally:
            w.drain()


def _write_side(out: _Outputs, side: str, ports: dict, title: str, records, rows) -> None:
    """The pcapng and hex files of one side ("stimulus" or "expected"):
    ``records(idx)`` gives its pcapng records, ``rows()`` its hex rows."""
    names, idx = _port_index(ports)
    if out.path(f".{side}.pcapng"):
        _write_bytes(out.path(f".{side}.pcapng"), pcapng_record_chunks(records(idx), names))
    if out.path(f".{side}.hex"):
        _write_text(out.path(f".{side}.hex"), _HEX_TITLE.format(title), _hex_lines(rows()))


def _write_stimulus_files(name: str, ports: dict, stimulus, out: _Outputs) -> None:
    _write_side(out, "stimulus", ports, f"{name}: stimulus", lambda idx: _stimulus_records(stimulus, idx),
                lambda: _stimulus_rows(stimulus))


def _write_expected_files(vec: Vector, out: _Outputs) -> None:
    _write_side(out, "expected", vec.ports, f"{vec.name}: expected output, in order",
                lambda idx: _expected_records(vec, idx), lambda: _expected_rows(vec))


def _write_yaml(vec: Vector, out: _Outputs) -> None:
    if out.path(".yaml"):
        _write_text(out.path(".yaml"), None, _yaml_parts(vec))


def _append_file(dst_path: str, src_path: str) -> None:
    """Append the bytes of ``src_path`` to ``dst_path`` (copied in the kernel
    where it can: copy_file_range)."""
    with open(src_path, "rb") as src, open(dst_path, "r+b") as dst:  # (copy_file_range refuses O_APPEND)
        dst.seek(0, os.SEEK_END)
        size = os.fstat(src.fileno()).st_size
        left = size
        copy = getattr(os, "copy_file_range", None)
        while left and copy is not None:
            try:
                done = copy(src.fileno(), dst.fileno(), left)
            except OSError as e:
                if left < size or e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                done = 0  # not on this file system: copy through user space
            if not done:
                break
            left -= done
        if left:
            src.seek(size - left)
            dst.seek(0, os.SEEK_END)
            shutil.copyfileobj(src, dst, 1 << 20)


# Share of the YAML packets this process renders while the forked one writes
# the expected-output files and then renders the rest: about even work when
# the expected files take half as long as the YAML file (measured).
_YAML_SHARE = 0.75


def _parallel(n: int) -> bool:
    return n >= _PARALLEL_MIN and _can_fork()


def _start_stimulus_files(name: str, ports: dict, stimulus, out: _Outputs, parallel: bool) -> None:
    """The stimulus files: by a forked process when ``parallel``."""
    if not parallel:
        _write_stimulus_files(name, ports, stimulus, out)
    elif out.path(".stimulus.pcapng") or out.path(".stimulus.hex"):
        out.fork(lambda: _write_stimulus_files(name, ports, stimulus, out))


def _write_run_files(vec: Vector, out: _Outputs, parallel: bool) -> None:
    """The files that need the run's outputs: the expected files and the YAML.
    When ``parallel``, a forked process writes the expected files and then the
    YAML text of the last packets into a part file, appended after this
    process's part."""
    if not (parallel and out.path(".yaml")):
        _write_expected_files(vec, out)
        _write_yaml(vec, out)
        return
    has_exp = out.path(".expected.pcapng") or out.path(".expected.hex")
    split = int(len(vec.packets) * (_YAML_SHARE if has_exp else 0.5))
    part = out.scratch(".part")

    def rest():
        _write_expected_files(vec, out)
        _write_text(part, None, _yaml_parts(vec, split))

    out.fork(rest)
    _write_text(out.path(".yaml"), None, _yaml_parts(vec, 0, split))
    out.join()
    _append_file(out.path(".yaml"), part)


_PARALLEL_MIN = 50_000  # packets from which writing is split over two processes


def _can_fork() -> bool:
    # Linux only (fork is the default there and safe for this work); never with
    # other threads running (a forked child has only the calling thread).
    return sys.platform.startswith("linux") and threading.active_count() == 1 and (os.cpu_count() or 1) > 1


def _forked(fn):
    """Run ``fn()`` in a forked child process; returns a function that waits
    for it and raises the child's exception, if any, in this process."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(r)
            fn()
        except BaseException as e:
            code = 1
            try:
                data = pickle.dumps(e)
            except Exception:
                data = pickle.dumps(RuntimeError(traceback.format_exc()))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(code)
    os.close(w)

    def wait():
        with os.fdopen(r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if status:
            if data:
                raise pickle.loads(data)
            raise RuntimeError(f"writing vector files: child process ended with status {status:#x}")

    return wait


class _BackgroundWriter:
    """File writes done by one background thread, in order: the disk works
    (writes release the GIL) while the next chunk is rendered. The first
    error is raised again by :meth:`write` or :meth:`drain`."""

    def __init__(self, depth: int = 16):
        self._queue: queue.Queue = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ctcm-writer", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._queue.put(None)
        self._thread.join()

    def _run(self):
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    try:
                        item[0].write(item[1])
                    except BaseException as e:  # re-raised in the caller's thread
                        self._error = e
            finally:
                self._queue.task_done()

    def _check(self):
        if self._error is not None:
            raise self._error

    def write(self, f, data: bytes) -> None:
        self._check()
        self._queue.put((f, data))

    def drain(self) -> None:
        """Wait until every queued write is done."""
        self._queue.join()
        self._check()


