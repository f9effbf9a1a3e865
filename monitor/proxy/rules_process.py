"""The rules of large texts, checked in a process of their own.

A thread would not keep them off the event loop: the rules hold the GIL, and on a busy machine
the thread holding it is often the one the OS has just preempted, so the loop waits for a core
*and* for the GIL. Measured on 2 cores with two other busy processes, a timer due every 2 ms
ran up to 15-17 ms late while a thread checked the worst shapes, and every wake-up ran about
0.7 ms late (the GIL's switch interval); with the same checks in a process, at most 4.5 ms
late and 0.1 ms at the median. The loop only waits for a core, which the OS gives a thread
that mostly sleeps before one that computes.

One child per policy, started at the first large text, which waits for it (about 0.3 s,
once): `python -m monitor.proxy.rules_process`, which reads the policy and then one call after
another on its stdin and answers each on its stdout, in order (pickles, each after its length
in 4 bytes). The loop writes and reads those pipes itself: no thread of this process takes
part. The child ends when its stdin closes (the step was closed, or this process died).

When the child cannot answer (killed, out of memory, failed to start) the text is checked in
a thread of this process instead, and a new child starts for a later text, at most once per
`RESTART_PAUSE_S`, so a child that keeps dying is not started again for every request.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from monitor.guard.engine import Guard
from monitor.guard.policy import Policy
from monitor.guard.verdict import Verdict

log = logging.getLogger("monitor.proxy.rules_process")

RESTART_PAUSE_S = 5.0
CLOSE_WAIT_S = 5.0
_LENGTH = struct.Struct("!I")


class ChildGone(Exception):
    """The child stopped answering (it exited, or was never started)."""


class RulesProcess:
    """A policy's rules engine in a child process: `check_input` and `check_output` as the
    engine's, awaited, their verdicts `bounded` to `max_findings` (thousands of findings would
    cost as much to copy back as to find)."""

    def __init__(self, engine: Guard, max_findings: int) -> None:
        self._engine = engine  # this process's own: the fallback when the child cannot answer
        self._max_findings = max_findings
        self._child: _Child | None = None
        self._starting: asyncio.Future[_Child | None] | None = None
        self._waiting: collections.deque[asyncio.Future[Verdict]] = collections.deque()
        self._reader: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._thread: ThreadPoolExecutor | None = None
        self._closed = False

    async def check_input(self, messages: Any) -> Verdict:
        return await self._run(("input", messages, self._max_findings))

    async def check_output(self, text: str, *, rewrite: bool = True) -> Verdict:
        return await self._run(("output", text, rewrite, self._max_findings))

    async def _run(self, call: tuple[Any, ...]) -> Verdict:
        if self._closed:
            return _check(self._engine, call)
        child = await self._live_child()
        if child is not None:
            try:
                return await self._ask(child, call)
            except ChildGone:
                pass
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="guard-rules")
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, _check, self._engine, call
        )

    async def _ask(self, child: _Child, call: tuple[Any, ...]) -> Verdict:
        if child is not self._child:  # it died while this call waited for it to start
            raise ChildGone
        answer: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._waiting.append(answer)  # answers come in the order the calls were written
        # No drain: a call is at most the largest body, and the transport buffers what the
        # child has not read yet; awaiting the answer is the back-pressure. A child that died
        # takes no more writes, and its reader fails every waiting call.
        child.send(call)
        return await answer

    async def _live_child(self) -> _Child | None:
        if self._child is not None:
            return self._child
        if self._starting is None:
            if time.monotonic() < self._retry_at:
                return None
            self._starting = asyncio.ensure_future(self._start())
        return await asyncio.shield(self._starting)

    async def _start(self) -> _Child | None:
        try:
            child = await _Child.start(self._engine.policy)
        except OSError as exc:  # out of processes or file descriptors
            log.warning("cannot start the guard's rules process (%s): checking in a thread", exc)
            self._retry_at = time.monotonic() + RESTART_PAUSE_S
            return None
        finally:
            self._starting = None
        if self._closed:
            await child.aclose()
            return None
        self._child = child
        self._reader = asyncio.create_task(self._read(child), name="guard-rules-reader")
        return child

    async def _read(self, child: _Child) -> None:
        """Hand each answer to the call that waits for it, until the child is gone."""
        try:
            while True:
                ok, value = await child.receive()
                answer = self._waiting.popleft()
                if answer.done():  # its request was cancelled
                    continue
                if ok:
                    answer.set_result(value)
                else:  # a bug in a rule: the request fails as it would have here
                    answer.set_exception(RuntimeError(f"the guard's rules failed: {value}"))
        except (asyncio.IncompleteReadError, ConnectionError):
            self._gone(child, f"exit code {await child.exit_code()}")
        except Exception as exc:  # an answer that makes no sense: this child is not asked again
            child.kill()
            self._gone(child, f"unreadable answer: {exc!r}")
            await child.exit_code()  # reaped

    def _gone(self, child: _Child, why: str) -> None:
        if self._child is not child:
            return
        self._child = None
        self._retry_at = time.monotonic() + RESTART_PAUSE_S
        if not self._closed:
            log.warning(
                "the guard's rules process stopped answering (%s): its texts are checked in a "
                "thread, a new process starts in %g s at the earliest",
                why,
                RESTART_PAUSE_S,
            )
        waiting, self._waiting = self._waiting, collections.deque()
        for answer in waiting:
            if not answer.done():
                answer.set_exception(ChildGone())

    async def aclose(self) -> None:
        """Stop the child (it ends after the calls already written, or is killed after
        `CLOSE_WAIT_S`) and the fallback thread; a later call checks on the caller's thread."""
        self._closed = True
        if self._child is not None:
            await self._child.aclose()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._thread is not None:
            self._thread.shutdown(wait=False)


class _Child:
    """The child process and the loop's ends of its pipes.

    Started with `subprocess.Popen` (vfork and exec: under a millisecond of this process's
    time) rather than the loop's own subprocess support, which forks in full: 10-17 ms on the
    event loop for a server of a few hundred MB. The pipes are then handed to the loop.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        writer: asyncio.WriteTransport,
        reader: asyncio.StreamReader,
    ) -> None:
        self._popen = popen
        self._writer = writer
        self._reader = reader

    @classmethod
    async def start(cls, policy: Policy) -> _Child:
        popen = subprocess.Popen(  # noqa: ASYNC220 (vfork: see the class)
            [sys.executable, "-m", "monitor.proxy.rules_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert popen.stdin is not None and popen.stdout is not None
        loop = asyncio.get_running_loop()
        try:
            writer, _ = await loop.connect_write_pipe(asyncio.Protocol, popen.stdin)
            reader = asyncio.StreamReader(limit=1 << 30)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), popen.stdout)
        except BaseException:
            popen.kill()
            popen.wait()
            raise
        child = cls(popen, writer, reader)
        child.send(policy)
        return child

    def send(self, message: Any) -> None:
        if not self._writer.is_closing():
            payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
            self._writer.write(_LENGTH.pack(len(payload)) + payload)

    async def receive(self) -> Any:
        """The next answer; `asyncio.IncompleteReadError` once the child is gone."""
        (size,) = _LENGTH.unpack(await self._reader.readexactly(_LENGTH.size))
        return pickle.loads(await self._reader.readexactly(size))

    async def exit_code(self) -> int:
        """Its exit code, once its output has ended (it is exiting, or gone)."""
        return await asyncio.to_thread(self._popen.wait)

    def kill(self) -> None:
        self._writer.close()
        self._popen.kill()

    async def aclose(self) -> None:
        """Close its stdin (it exits after the calls it has), kill it if it has not within
        `CLOSE_WAIT_S`."""
        self._writer.close()
        try:
            await asyncio.to_thread(self._popen.wait, CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            await asyncio.to_thread(self._popen.wait)


def _check(engine: Guard, call: tuple[Any, ...]) -> Verdict:
    """One call as the child runs it: ("input", messages, max_findings) or ("output", text,
    rewrite, max_findings)."""
    if call[0] == "input":
        _, messages, max_findings = call
        return engine.check_input(messages).bounded(max_findings)
    _, text, rewrite, max_findings = call
    return engine.check_output(text, rewrite=rewrite).bounded(max_findings)


def _read_message(source: BinaryIO) -> Any:
    header = source.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError
    (size,) = _LENGTH.unpack(header)
    data = source.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def serve_calls(source: BinaryIO, sink: BinaryIO) -> None:
    """The child's loop: the policy, then calls until `source` ends; every answer is
    (True, verdict) or (False, the error's text)."""
    policy: Policy = _read_message(source)
    engine = Guard(policy)
    while True:
        try:
            call = _read_message(source)
        except EOFError:
            return
        try:
            answer: tuple[bool, Any] = (True, _check(engine, call))
        except Exception as exc:  # the parent reports it; the child goes on
            answer = (False, repr(exc))
        payload = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
        sink.write(_LENGTH.pack(len(payload)) + payload)
        sink.flush()


def main() -> None:
    """`python -m monitor.proxy.rules_process`: Ctrl-C is the parent's to handle (it closes
    the pipe), and anything printed goes to stderr, not into the answers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sink = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve_calls(sys.stdin.buffer, sink)


if __name__ == "__main__":
    main()
