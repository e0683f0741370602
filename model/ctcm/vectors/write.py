"""Writing the files of a vector: temporary names renamed together, large
vectors streamed in chunks and split over two processes (fork) on two cores.

The bytes are the same whichever path writes them (tested).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import struct
import sys
import tempfile
import threading
import traceback

from ctcm.io.pcapio import new_file_mode
from ctcm.vectors.render import SUFFIXES, Renderer

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
        self.made = _makedirs(outdir)  # directories this made (removed again when nothing is committed)
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
        self.made = []
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
        for d in reversed(self.made):
            with contextlib.suppress(OSError):
                os.rmdir(d)
        self.made = []


class _Files:
    """Some files of a vector being written: each a temporary file of
    :class:`_Outputs` with a background writer thread; the renderer gives the
    bytes of each part (head, then one body per chunk, then tail)."""

    def __init__(self, out: _Outputs, renderer: Renderer, suffixes):
        self.r = renderer
        self.files: list = []  # (suffix, file, writer)
        try:
            for suffix in suffixes:
                path = out.path(suffix)
                if path:
                    f = open(path, "wb")
                    w = _BackgroundWriter()
                    self.files.append((suffix, f, w))
                    w.__enter__()
                    w.write(f, renderer.head(suffix))
        except BaseException:
            self.abort()
            raise

    def feed(self, packets: list) -> None:
        body = self.r.body
        for suffix, f, w in self.files:
            for part in body(suffix, packets):
                w.write(f, part)

    def finish(self) -> None:
        """Write the tails and wait for every write; the files are closed."""
        try:
            for suffix, f, w in self.files:
                tail = self.r.tail(suffix)
                if tail:
                    w.write(f, tail)
            for _suffix, _f, w in self.files:
                w.drain()
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop the writers (pending writes done first) and close the files."""
        for _suffix, f, w in self.files:
            w.__exit__(None, None, None)
            f.close()
        self.files = []


_MSG = struct.Struct("<Q")


# The files this process writes itself when a forked process writes the others
# (the rest of the work here: generating and running the stimulus, and pickling
# the chunks for the pipe); chosen so that both processes are about as busy.
_HERE = (".stimulus.hex",)


class StreamWriter:
    """Writes the files of a vector chunk by chunk (:meth:`feed` run records,
    then :meth:`finish` once the run is over), so memory does not grow with
    the vector. With ``parallel``, a forked process writes most files (the
    YAML file among them) from the chunks it is sent through a pipe, while
    this one generates and runs the next chunks. The bytes are the same
    either way (tested)."""

    def __init__(self, out: _Outputs, renderer: Renderer, parallel: bool):
        self.out = out
        self.renderer = renderer
        wanted = [s for s in SUFFIXES if out.path(s)]
        here = [s for s in wanted if s in _HERE]
        others = [s for s in wanted if s not in here]
        self.pipe = None
        if parallel and len(wanted) > 1 and others:
            rfd, wfd = os.pipe()

            def child():
                os.close(wfd)
                files = _Files(out, renderer, others)
                with os.fdopen(rfd, "rb") as src:
                    while True:
                        head = src.read(_MSG.size)
                        if len(head) < _MSG.size:  # the writer gave up: say nothing, write nothing
                            files.abort()
                            os._exit(3)
                        kind, data = pickle.loads(src.read(_MSG.unpack(head)[0]))
                        if kind == "end":  # the snapshots, for the YAML tail
                            renderer.vec.checkpoints, renderer.vec.final = data
                            break
                        files.feed(data)
                files.finish()

            try:
                out.fork(child)
            except BaseException:
                os.close(wfd)
                raise
            finally:
                os.close(rfd)
            self.pipe = _PipeSender(wfd)
            wanted = here
        self.files = None
        try:
            self.files = _Files(out, renderer, wanted)
        except BaseException:
            self.abort()
            raise

    def _child_failed(self, e: BaseException):
        """The pipe broke: the child has failed; raise its error."""
        self.pipe.abort()
        self.pipe = None
        self.out.join()
        raise RuntimeError(f"writing vector files: the writer process ended early ({e})")

    def feed(self, packets: list) -> None:
        if self.pipe is not None:
            try:
                self.pipe.send(("chunk", packets))
            except BrokenPipeError as e:
                self._child_failed(e)
        self.files.feed(packets)

    def finish(self) -> None:
        """The run is over (the renderer's vector has its checkpoints and final snapshot)."""
        self.files.finish()
        if self.pipe is not None:
            try:
                vec = self.renderer.vec
                self.pipe.send(("end", (vec.checkpoints, vec.final)))
                self.pipe.close()
            except BrokenPipeError as e:
                self._child_failed(e)
            self.pipe = None
        self.out.join()

    def abort(self) -> None:
        if self.files is not None:
            self.files.abort()
        if self.pipe is not None:
            self.pipe.abort()
            self.pipe = None


class _PipeSender:
    """Chunks pickled and written to a pipe by a background thread (this
    process goes on rendering meanwhile); at most two chunks wait."""

    def __init__(self, fd: int):
        self.f = os.fdopen(fd, "wb")
        self.q: queue.Queue = queue.Queue(2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="ctcm-sender", daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is None:
                try:
                    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
                    self.f.write(_MSG.pack(len(data)))
                    self.f.write(data)
                except BaseException as e:
                    self.error = e

    def send(self, packets) -> None:
        if self.error is not None:
            raise self.error
        self.q.put(packets)

    def close(self) -> None:
        """Wait until everything is sent."""
        self.q.put(None)
        self.thread.join()
        try:
            if self.error is not None:
                raise self.error
            self.f.flush()
        finally:
            with contextlib.suppress(OSError):
                self.f.close()

    def abort(self) -> None:
        """Stop without the end mark: the child sees the pipe end and writes nothing more."""
        self.error = self.error or RuntimeError("aborted")  # the thread sends nothing more
        with contextlib.suppress(queue.Empty):
            while True:
                self.q.get_nowait()
        self.q.put(None)
        self.thread.join()  # (a write under way ends: the child reads, or has gone and the pipe is broken)
        with contextlib.suppress(OSError):
            self.f.close()


def _makedirs(d: str) -> list[str]:
    """``os.makedirs(d, exist_ok=True)``; returns the directories it made, outermost first."""
    made = []
    p = os.path.abspath(d)
    while not os.path.isdir(p):
        made.append(p)
        p = os.path.dirname(p)
    os.makedirs(d, exist_ok=True)
    return made[::-1]


def _parallel(n: int) -> bool:
    return n >= _PARALLEL_MIN and _can_fork()


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


