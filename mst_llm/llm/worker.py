"""The inference backend: llama-cpp-python lives only here.

`LlamaRunner` drives llama-cpp-python synchronously (load with progress, a token loop that checks a cancel flag
per token and, during prompt evaluation, through llama.cpp's abort callback). Two backends wrap it:

- `ThreadBackend` (``isolation="thread"``) runs it in anyio worker threads of the host: lowest latency, but a
  llama.cpp abort kills the host.
- `ProcessBackend` (``isolation="process"``, the default) runs it in a worker subprocess (a fresh interpreter, so
  no ``__main__`` guard is needed) over a socket pair; if llama.cpp aborts there, the host sees `WorkerDiedError`
  naming the signal and what the worker was doing, with the worker's last stderr line (usually the GGML_ASSERT).
  Starting a worker and importing llama-cpp-python takes ~0.2 s, so `spare_workers` keeps one started ahead of
  time (at `LlamaModel.open` and after each load); it is killed quietly at interpreter exit.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import ctypes
import os
import queue
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from mst_llm.errors import InferenceError, WorkerDiedError
from mst_llm.llm.backend import Chunk, Finished, GenerateRequest, LoadCancelled, LoadInfo

_LOG: deque[str] = deque(maxlen=12)  # llama.cpp's recent warnings and errors, for error messages
_log_callback: Any = None
# ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (llama-cpp-python's _logger.py still lists the
# numbering ggml had before it added DEBUG, under which 2 and 3 were WARN and ERROR)
_LOG_WARN, _LOG_ERROR, _LOG_CONT = 3, 4, 5
# The worker imports only worker.py and what it needs: empty stand-ins for the `mst_llm` and `mst_llm.llm` packages
# skip their __init__ (the state tree, gguf, pyee), which would add 0.3 s to every worker start.
_WORKER_COMMAND = """
import sys, types
for name, path in (("mst_llm", sys.argv[2]), ("mst_llm.llm", sys.argv[2] + "/llm")):
    package = types.ModuleType(name)
    package.__path__ = [path]
    sys.modules[name] = package
from mst_llm.llm.worker import main
main(sys.argv)
"""
_load_lock = threading.Lock()  # loading patches llama-cpp-python's default model params (see LlamaRunner.load)


def _install_log_sink(llama_cpp: Any, echo: bool) -> None:
    """Route llama.cpp's log into _LOG instead of stderr (once per process).

    A worker process also echoes warnings and errors to its stderr (a log file the host reads when the worker
    dies), since an abort leaves no chance to send them."""
    global _log_callback
    if _log_callback is not None:
        return

    kept = [False]  # whether the last message was kept (continuations follow it)

    def sink(level: int, text: bytes, _data: Any) -> None:
        line = text.decode("utf-8", errors="replace")
        if level == _LOG_CONT:
            if not (kept[0] and _LOG):
                return
            _LOG[-1] += line
        elif level in (_LOG_WARN, _LOG_ERROR):
            kept[0] = True
            _LOG.append(line)
        else:
            kept[0] = False
            return
        if echo:
            sys.stderr.write(line)
            sys.stderr.flush()

    _log_callback = llama_cpp.llama_log_callback(sink)
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


def _recent_log() -> str:
    lines = [line.strip() for line in _LOG if line.strip()]
    return "; ".join(lines[-3:])


def build_info() -> dict[str, Any]:
    """What the installed llama.cpp build offers, without loading a model (imports llama-cpp-python here)."""
    import llama_cpp

    return {
        "gpu_offload_supported": bool(llama_cpp.llama_supports_gpu_offload()),
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip(),
        "llama_cpp_python": str(llama_cpp.__version__),
    }


def _then(first: Callable[[Any], None], then: Callable[[], None]) -> Callable[[Any], None]:
    def both(argument: Any) -> None:
        first(argument)
        then()

    return both


class _StopScanner:
    """Finds stop strings in the growing text and holds back a tail that may still become one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(stop for stop in stops if stop)
        self.text = ""
        self.emitted = 0

    def feed(self, piece: str) -> tuple[str, bool]:
        """Add decoded text; return (text now safe to emit, whether a stop string was reached)."""
        self.text += piece
        if not self.stops:
            return self._emit(len(self.text)), False
        window = max(map(len, self.stops)) + len(piece)
        start = max(0, len(self.text) - window)
        hits = [index for stop in self.stops if (index := self.text.find(stop, start)) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            return self._emit(len(self.text)), True
        safe = len(self.text)
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(self.text)), 0, -1):
                if self.text.endswith(stop[:size]):
                    safe = min(safe, len(self.text) - size)
                    break
        return self._emit(safe), False

    def flush(self) -> str:
        return self._emit(len(self.text))

    def _emit(self, end: int) -> str:
        piece = self.text[self.emitted : end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return piece


class LlamaRunner:
    """One llama-cpp-python model, driven synchronously; `cancel(request_id)` may be called from any thread."""

    def __init__(self, *, echo_log: bool = False) -> None:
        import llama_cpp  # imported here so that a host in process isolation never loads it

        self._ll: Any = llama_cpp
        self._verbose = echo_log  # verbose=False would point fd 2 at /dev/null while loading, hiding aborts
        _install_log_sink(llama_cpp, echo_log)
        self._llm: Any = None
        self._abort: Any = None
        self.cancelled_id = 0

    def cancel(self, request_id: int) -> None:
        self.cancelled_id = request_id

    def load(
        self, path: str, config: Mapping[str, Any], progress: Callable[[float], None], request_id: int
    ) -> LoadInfo:
        """Load the model (progress in [0, 1], steps of at least 1%); raise LoadCancelled or InferenceError."""
        ll = self._ll
        self.close()
        supported = bool(ll.llama_supports_gpu_offload())
        requested = config.get("n_gpu_layers")
        gpu_layers = (-1 if supported else 0) if requested is None else int(requested)
        last = [-1.0, 0.0]  # last value reported, when

        def on_progress(value: float, _data: Any) -> bool:
            # at most one message per 1 % and per 20 ms: the load owns the CPU, the host need not be woken often
            now = time.monotonic()
            if value >= 1.0 or (value - last[0] >= 0.01 and now - last[1] >= 0.02):
                last[0], last[1] = value, now
                progress(min(1.0, max(0.0, float(value))))
            return self.cancelled_id != request_id

        callback = ll.llama_progress_callback(on_progress)
        original = ll.llama_cpp.llama_model_default_params

        def params_with_progress() -> Any:  # also the settings Llama() has no argument for (0.3.x)
            params = original()
            params.progress_callback = callback
            params.check_tensors = bool(config["check_tensors"])
            return params

        _LOG.clear()
        with _load_lock:
            ll.llama_cpp.llama_model_default_params = params_with_progress
            try:
                self._llm = ll.Llama(
                    model_path=path,
                    n_gpu_layers=gpu_layers,
                    n_ctx=int(config["n_ctx"]),
                    n_batch=int(config["n_batch"]),
                    n_ubatch=int(config["n_batch"]),
                    n_threads=int(config["n_threads"]),
                    n_threads_batch=int(config["n_threads"]),
                    use_mmap=bool(config["use_mmap"]),
                    verbose=self._verbose,
                )
            except (ValueError, RuntimeError) as error:
                if self.cancelled_id == request_id:
                    raise LoadCancelled() from None
                detail = _recent_log() or str(error)
                raise InferenceError(f"llama.cpp could not load {Path(path).name}: {detail}") from None
            finally:
                ll.llama_cpp.llama_model_default_params = original
        n_layers = int(ll.llama_model_n_layer(self._llm.model))
        offloaded = 0 if not supported else (n_layers + 1 if gpu_layers < 0 else min(gpu_layers, n_layers + 1))
        return LoadInfo(
            backend="llama.cpp",
            system_info=ll.llama_print_system_info().decode("utf-8", errors="replace").strip(),
            gpu_offload_supported=supported,
            offloaded_layers=offloaded,
            n_layers=n_layers,
            n_ctx=int(self._llm.n_ctx()),
            n_batch=int(self._llm.n_batch),
            n_threads=int(config["n_threads"]),
            n_vocab=int(self._llm.n_vocab()),
            extra={"llama_cpp_python": str(ll.__version__)},
        )

    def generate(
        self, request: GenerateRequest, request_id: int, after_decode: Callable[[], None] | None = None
    ) -> Generator[Chunk | Finished, None, None]:
        """Yield a Chunk per sampled token and one Finished; raise InferenceError when llama.cpp fails.

        ``after_decode`` runs each time llama.cpp has finished a decode step, before the next token is sampled."""
        llm = self._llm
        if llm is None:
            raise InferenceError("no model is loaded")
        start = time.perf_counter()
        prompt = llm.tokenize(request.prompt.encode("utf-8"), add_bos=True, special=True)
        n_ctx = min(llm.n_ctx(), len(llm.input_ids))  # llama.cpp pads its context, llama-cpp-python's buffer not
        if len(prompt) >= n_ctx:
            raise InferenceError(f"the prompt has {len(prompt)} tokens; the context holds {n_ctx}")
        max_tokens = min(request.max_tokens, n_ctx - len(prompt))
        llm.set_seed(request.seed if request.seed is not None else random.getrandbits(31))
        self._set_abort(lambda: self.cancelled_id == request_id)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = _StopScanner(request.stop)
        vocab = llm._model.vocab
        count, reason, first_at = 0, "length", 0.0
        tokens = llm.generate(
            prompt,
            top_k=request.top_k,
            top_p=request.top_p,
            temp=request.temperature,
            repeat_penalty=request.repeat_penalty,
        )
        if after_decode is not None:
            llm.eval = _then(llm.eval, after_decode)  # an instance attribute: Llama.generate calls self.eval
        try:
            while count < max_tokens:
                if self.cancelled_id == request_id:
                    reason = "cancelled"
                    break
                token = next(tokens)
                if count == 0:
                    first_at = time.perf_counter()
                    self._set_abort(None)  # per-graph-node callbacks cost time; tokens check the flag
                if self._ll.llama_vocab_is_eog(vocab, token):
                    reason = "stop"
                    break
                count += 1
                text, stopped = scanner.feed(decoder.decode(llm.detokenize([token])))
                yield Chunk(text, int(token))
                if stopped:
                    reason = "stop"
                    break
        except RuntimeError as error:  # llama_decode failed, or the abort callback stopped prompt evaluation
            llm.reset()
            if self.cancelled_id != request_id:
                raise InferenceError(f"generation failed: {_recent_log() or error}") from None
            reason = "cancelled"
        finally:
            self._set_abort(None)
            tokens.close()
            vars(llm).pop("eval", None)
        if reason != "stop":
            tail = scanner.feed(decoder.decode(b"", final=True))[0] + scanner.flush()
            if tail:
                yield Chunk(tail, -1)
        end = time.perf_counter()
        first_at = first_at or end
        yield Finished(
            text=scanner.text,
            prompt_tokens=len(prompt),
            completion_tokens=count,
            finish_reason=reason,  # type: ignore[arg-type]
            prompt_ms=(first_at - start) * 1000,
            generation_ms=(end - first_at) * 1000,
        )

    def _set_abort(self, check: Callable[[], bool] | None) -> None:
        ll = self._ll
        self._abort = ll.ggml_abort_callback(lambda _data: check()) if check else ll.ggml_abort_callback()
        ll.llama_set_abort_callback(self._llm._ctx.ctx, self._abort, None)

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()


# --- in-process ------------------------------------------------------------------------------------------------


class ThreadBackend:
    """llama-cpp-python in the host process; each blocking step runs in an anyio worker thread."""

    name = "thread"

    def __init__(self) -> None:
        self._runner: LlamaRunner | None = None
        self._request = 0

    def _ensure(self) -> LlamaRunner:
        if self._runner is None:
            self._runner = LlamaRunner()
        return self._runner

    async def load(self, path: str, config: Mapping[str, Any], on_progress: Callable[[float], None]) -> LoadInfo:
        runner = await anyio.to_thread.run_sync(self._ensure)
        self._request += 1
        request_id = self._request

        def progress(value: float) -> None:
            anyio.from_thread.run_sync(on_progress, value)

        return await anyio.to_thread.run_sync(runner.load, path, config, progress, request_id)

    async def generate(self, request: GenerateRequest) -> AsyncGenerator[Chunk | Finished, None]:
        self._request += 1
        tokens = self._ensure().generate(request, self._request)
        try:
            while (item := await anyio.to_thread.run_sync(next, tokens, None)) is not None:
                yield item
                if isinstance(item, Finished):
                    return
        finally:  # shielded: the runner must be closed before the model can be used again
            self.cancel()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(tokens.close)

    def cancel(self) -> None:
        if self._runner is not None:
            self._runner.cancel(self._request)

    async def close(self) -> None:
        if self._runner is not None:
            await anyio.to_thread.run_sync(self._runner.close)

    def close_now(self) -> None:
        if self._runner is not None:
            self._runner.close()


# --- in a worker process ---------------------------------------------------------------------------------------


def _signal_name(returncode: int | None) -> str:
    if returncode is None:
        return "unknown status"
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class _WorkerProcess:
    """A started worker process: the host end of its socket and its log file (the worker's stdout and stderr).

    It starts importing llama-cpp-python at once and says ("ready", 0) when done; requests queue behind that."""

    def __init__(self, prewarm_bytes: int = 0) -> None:
        host, child = socket.socketpair()
        log_fd, self.log_path = tempfile.mkstemp(prefix="mst_llm_worker_", suffix=".log")
        package = str(Path(__file__).resolve().parents[1])
        self.environ = dict(os.environ)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_COMMAND, str(child.fileno()), package, str(prewarm_bytes)],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                env={**self.environ, "GGML_NO_BACKTRACE": "1"},  # an abort prints its assert, not a gdb backtrace
            )
        except BaseException:
            host.close()
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)
            raise
        finally:
            os.close(log_fd)
            child.close()
        self.conn = Connection(host.detach())
        self.owner = os.getpid()

    def usable(self) -> bool:
        """Still running, started by this process (not a fork's parent) and with the current environment."""
        return self.owner == os.getpid() and self.proc.poll() is None and self.environ == dict(os.environ)

    def discard(self) -> None:
        """Stop the worker at once and quietly, and remove its log (a forked child only drops its copy)."""
        if self.owner == os.getpid():
            with contextlib.suppress(OSError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(2.0)
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)
        with contextlib.suppress(OSError):
            self.conn.close()


class SpareWorkers:
    """At most one spare worker, started ahead of time so that a load does not wait for a fresh interpreter to
    import llama-cpp-python (~0.2 s).

    `prestart()` starts one when none is waiting (LlamaModel.open with process isolation calls it, and so does
    every ProcessBackend after its load, to replenish); `take()` hands out the spare, or a fresh worker when there
    is none or it died, was started before a fork or under another environment. The spare is killed at
    interpreter exit (quietly, its log removed). Set `enabled = False` to start workers only on demand.

    While it waits, a spare also faults `prewarm_bytes` of C heap in (see `_prewarm_heap`): the spare then holds
    that much more memory, and its first load saves the page faults a fresh process pays (~10 % of a small model's
    load time). Set it to 0 to keep idle spares small."""

    def __init__(self) -> None:
        self.enabled = True
        self.prewarm_bytes = 128 << 20
        self._lock = threading.Lock()
        self._spare: _WorkerProcess | None = None
        self._closed = False

    def prestart(self) -> None:
        with self._lock:
            if self._spare is not None and not self._spare.usable():
                self._spare.discard()
                self._spare = None
            if self.enabled and not self._closed and self._spare is None:
                self._spare = _WorkerProcess(self.prewarm_bytes)

    def take(self) -> _WorkerProcess:
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            if spare.usable():
                return spare
            spare.discard()
        return _WorkerProcess()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the spare has imported llama-cpp-python (for benchmarks and tests); False if there is none."""
        with self._lock:
            spare = self._spare
        if spare is None:
            return False
        with contextlib.suppress(OSError):
            return bool(spare.conn.poll(timeout))
        return False

    def discard(self) -> None:
        """Stop the waiting spare, if any (a later `prestart()` starts another)."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.discard()

    def shutdown(self) -> None:
        """Stop the spare for good (at interpreter exit)."""
        with self._lock:
            self._closed = True
        self.discard()


spare_workers = SpareWorkers()
atexit.register(spare_workers.shutdown)


class ProcessBackend:
    """llama-cpp-python in a worker subprocess; a crash there becomes WorkerDiedError in the host.

    The worker comes from `spare_workers` (already started, usually done importing llama-cpp-python), or starts
    now; requests queue behind its start. After each load a new spare is started for the next model."""

    name = "process"

    def __init__(self) -> None:
        worker = spare_workers.take()
        self._proc = worker.proc
        self._conn = worker.conn
        self._log_path = worker.log_path
        self._send_lock = threading.Lock()
        self._request = 0
        self._activity = "starting"
        self._closed = False

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock, contextlib.suppress(OSError):  # a dead worker: the next receive says how it died
            self._conn.send(message)

    async def _receive(self, request_id: int) -> tuple[Any, ...]:
        """The next message about `request_id` (older requests' leftovers are dropped)."""
        while True:
            while not self._conn.poll():
                await anyio.wait_readable(self._conn.fileno())
            try:
                message: tuple[Any, ...] = self._conn.recv()
            except (EOFError, OSError):
                raise await self._death() from None
            if message[1] == request_id:
                return message

    async def _death(self) -> WorkerDiedError:
        with anyio.CancelScope(shield=True):
            returncode = await anyio.to_thread.run_sync(self._wait, 10.0)
        reason = f"inference worker died ({_signal_name(returncode)}) while {self._activity}"
        detail = self._last_stderr_line()
        self._closed = True
        self._release()  # the log has been read: nothing of the dead worker stays behind
        return WorkerDiedError(f"{reason}: {detail}" if detail else reason)

    def _wait(self, timeout: float) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self._proc.wait(timeout)
        return None

    def _last_stderr_line(self) -> str:
        with contextlib.suppress(OSError):
            lines = [line.strip() for line in Path(self._log_path).read_text(errors="replace").splitlines()]
            lines = [line for line in lines if line]
            marked = [line for line in lines if "GGML_ASSERT" in line or "terminate" in line or "Error" in line]
            return (marked or lines or [""])[-1][:500]
        return ""

    async def load(self, path: str, config: Mapping[str, Any], on_progress: Callable[[float], None]) -> LoadInfo:
        if self._closed:
            raise InferenceError("the inference worker was closed")
        self._request += 1
        request_id = self._request
        self._activity = f"loading {Path(path).name}"
        self._send(("load", request_id, path, dict(config)))
        try:
            while True:
                message = await self._receive(request_id)
                if message[0] == "progress":
                    on_progress(message[2])
                elif message[0] == "loaded":
                    self._activity = "idle"
                    loaded: LoadInfo = message[2]
                    return loaded
                elif message[0] == "cancelled":
                    raise LoadCancelled()
                else:
                    raise InferenceError(message[2])
        finally:  # after the load, so that the spare's start does not compete with it
            spare_workers.prestart()

    async def generate(self, request: GenerateRequest) -> AsyncGenerator[Chunk | Finished, None]:
        if self._closed:
            raise InferenceError("the inference worker was closed")
        self._request += 1
        request_id = self._request
        self._activity = "generating"
        self._send(("generate", request_id, request))
        finished = False
        try:
            while True:
                message = await self._receive(request_id)
                if message[0] == "chunk":
                    yield Chunk(message[2], message[3])
                elif message[0] == "done":
                    finished = True
                    self._activity = "idle"
                    yield message[2]
                    return
                else:
                    finished = True
                    raise InferenceError(message[2])
        finally:
            if not finished:
                self.cancel()

    def cancel(self) -> None:
        if not self._closed:
            self._send(("cancel", self._request))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._send(("close", 0))
        with anyio.CancelScope(shield=True):
            if await anyio.to_thread.run_sync(self._wait, 5.0) is None:
                self._proc.kill()
                await anyio.to_thread.run_sync(self._wait, 5.0)
        self._release()

    def close_now(self) -> None:
        if not self._closed:
            self._closed = True
            self._send(("close", 0))
            if self._wait(2.0) is None:
                self._proc.kill()
                self._wait(2.0)
        self._release()

    def _release(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log_path)


class _Worker:
    """The worker process: a reader thread takes cancels at once and queues the rest for the main thread."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.runner = LlamaRunner(echo_log=True)
        self.requests: queue.Queue[tuple[Any, ...]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):  # the host is gone
                os._exit(0)
            if message[0] == "cancel":
                self.runner.cancel(message[1])
            else:
                self.requests.put(message)
            if message[0] == "close":
                return

    def run(self) -> None:
        while True:
            message = self.requests.get()
            kind, request_id = message[0], message[1]
            if kind == "close":
                self.runner.close()
                return
            try:
                if kind == "load":
                    info = self.runner.load(message[2], message[3], self._progress_sender(request_id), request_id)
                    self.conn.send(("loaded", request_id, info))
                else:
                    self._generate(message[2], request_id)
            except LoadCancelled:
                self.conn.send(("cancelled", request_id))
            except InferenceError as error:
                self.conn.send(("error", request_id, str(error)))

    def _generate(self, request: GenerateRequest, request_id: int) -> None:
        """Stream the tokens to the host. The first goes out at once; each later one goes out when the next decode
        step is done, while llama.cpp samples (one thread busy): the host's wake-up then runs beside the sampling
        instead of taking a core from the decode threads. On a 2-core machine with 2 decode threads the sends cost about
        2.6 % of decode speed this way, 4 % sent at once; the price is one token step of delay after the first."""
        pending: list[Chunk] = []

        def send_pending() -> None:
            for chunk in pending:
                self.conn.send(("chunk", request_id, chunk.text, chunk.token))
            pending.clear()

        first = True
        for item in self.runner.generate(request, request_id, after_decode=send_pending):
            if isinstance(item, Chunk):
                pending.append(item)
                if first:
                    send_pending()
                    first = False
            else:
                send_pending()
                self.conn.send(("done", request_id, item))

    def _progress_sender(self, request_id: int) -> Callable[[float], None]:
        return lambda value: self.conn.send(("progress", request_id, value))


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_PREWARM_BLOCK = 16 << 20


def _prewarm_heap(size: int) -> None:
    """Fault ``size`` bytes into the C heap and keep them there (glibc only; elsewhere a no-op).

    A fresh process pays a page fault for every page llama.cpp's buffers touch (KV cache, compute and repacked
    weights: ~110 MB for gemma 270M, ~60 ms of kernel time); a process that loaded a model before reuses its
    freed heap. A spare worker does this while it waits, so its first load runs as fast as a later one."""
    try:
        libc = ctypes.CDLL(None)
        mallopt, malloc, free = libc.mallopt, libc.malloc, libc.free
    except (OSError, AttributeError):
        return
    malloc.restype, malloc.argtypes, free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
    # serve blocks up to 32 MiB from the heap (not fresh mmaps) and never hand freed heap back to the kernel
    if not (mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, 1 << 62)):
        return
    blocks = [block for block in (malloc(_PREWARM_BLOCK) for _ in range(size // _PREWARM_BLOCK)) if block]
    for block in blocks:
        ctypes.memset(block, 0, _PREWARM_BLOCK)
    for block in blocks:
        free(block)


def main(argv: list[str]) -> None:
    """Entry point of the worker process (see _WORKER_COMMAND): argv[1] is the socket's descriptor, argv[3]
    how many bytes of heap to pre-warm (a spare worker, which nobody waits for yet) before saying "ready"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the host decides when the worker stops
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an abort is reported, not dumped
    worker = _Worker(Connection(int(argv[1])))
    _prewarm_heap(int(argv[3]))
    worker.conn.send(("ready", 0))  # no request has id 0: the host drops it (spare_workers.wait_ready polls it)
    worker.run()
