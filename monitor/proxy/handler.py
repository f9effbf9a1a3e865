"""The request path for generation routes: admit, forward, relay (streaming or whole), record.

Every request leaves exactly one `RequestRecord`, handed to the recorder in `finally`; every
`ProxyError` becomes an answer in the client's protocol here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

import orjson

from monitor.config import Settings
from monitor.errors import BackendFailed, InternalError, ProxyError, RequestInvalid
from monitor.guard.classifier import ClassifierError
from monitor.guard.loader import PolicyError
from monitor.guard.verdict import Action, Verdict
from monitor.proxy import protocols
from monitor.proxy.admission import NOT_RECORDED, Admission
from monitor.proxy.budget import budget_for_output, cap_max_tokens, spent_tokens
from monitor.proxy.exchange import ClientGone, Exchange, Receive, Scope, Send
from monitor.proxy.guarding import RECORDED_FINDINGS, GuardStep
from monitor.proxy.headers import request_headers, response_headers
from monitor.proxy.ratelimit import rate_limit_headers
from monitor.proxy.relay import Relay, relay_for
from monitor.proxy.timing import RequestTimer
from monitor.proxy.tracecontext import start_trace, with_traceparent
from monitor.record import RequestRecord, TextHasher, new_request_id, utcnow
from monitor.upstream.backend import BackendClient, iter_body, read_body
from monitor.upstream.client import UpstreamError, UpstreamResponse

log = logging.getLogger(__name__)

GENERATION_ROUTES = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate"}
)
_JSON = [(b"content-type", b"application/json")]
# Bodies this large are parsed and read in a worker thread: about 1 ms of work on the loop
# below it, tens of milliseconds for a body of the largest accepted size and shape.
OFF_LOOP_BODY_BYTES = 64 * 1024
_ERROR_EXCERPT = 2000


class ProxyHandler:
    """Handles one generation request from start to record."""

    def __init__(
        self,
        settings: Settings,
        backend: BackendClient,
        admission: Admission,
        build_guard: Callable[[], GuardStep | None],
        submit: Callable[[RequestRecord], None],
        on_complete: Callable[[RequestRecord, str, str], object] | None = None,
        hash_key: bytes | None = None,
        tracing: bool = False,
    ) -> None:
        self.settings = settings
        self.backend_label = settings.backend_label  # a property that builds a string
        # OpenTelemetry export is on: each request gets a span id, its parent the client's
        # `traceparent`, and the backend gets the span as its parent (`tracecontext`)
        self.tracing = tracing
        # the key of the stored prompt and response hashes (`monitor.store.hash_key`);
        # without one, a key for this process only
        self.hash_text = TextHasher(hash_key if hash_key is not None else secrets.token_bytes(32))
        self.backend = backend
        self.admission = admission
        self.build_guard = build_guard
        self.guard = build_guard()
        self.submit = submit
        # (record, forwarded prompt text, response text) of each `ok` request with output:
        # the quality worker's sampling hook; must not block or raise
        self.on_complete = on_complete
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self._closing: set[asyncio.Task[None]] = set()

    async def reload_policy(self) -> str | None:
        """Load the configured policy again and use it for requests from now on (one attribute
        swap: a request in flight keeps the guard it started with). The new policy's
        classifiers are built here, on the event loop (their owner's reference counts are not
        shared with threads; a model loads in its own thread), and swapped in once ready; the
        old ones are closed once the last request using them ends. Raises `PolicyError`."""
        guard = self.build_guard()
        if guard is not None:
            try:
                await guard.ready()
            except ClassifierError as exc:
                await guard.aclose()
                raise PolicyError(f"{guard.policy.name}: a classifier cannot load: {exc}") from exc
        old, self.guard = self.guard, guard
        if old is not None:
            old.retired = True
            if old.users == 0:
                self._close_later(old)
        return guard.policy.name if guard is not None else None

    async def ready(self) -> None:
        """Wait until the guard's classifiers can answer (models loaded); raises
        `ClassifierError` when one never will."""
        if self.guard is not None:
            await self.guard.ready()

    async def aclose(self) -> None:
        """At shutdown: close the guard's classifiers (now, or when the last request using
        them ends), and wait for every close under way. The guard stays in place: a request
        arriving this late finds its classifiers closed and gets the checks' `on_error`."""
        guard = self.guard
        if guard is not None and not guard.retired:
            guard.retired = True
            if guard.users == 0:
                self._close_later(guard)
        while self._closing:
            await asyncio.gather(*list(self._closing))

    def _close_later(self, guard: GuardStep) -> None:
        task = asyncio.get_running_loop().create_task(guard.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        protocol = protocols.OLLAMA if route.startswith("/api/") else protocols.OPENAI
        timer = RequestTimer()
        exchange = Exchange(scope, receive, send, new_request_id())
        record = RequestRecord(
            id=exchange.request_id,
            ts=utcnow(),
            route=route,
            protocol=protocol,
            backend=self.backend_label,
        )
        if self.tracing:
            start_trace(record.extra, scope["headers"])
        self.inflight += 1
        self.idle.clear()
        guard = self.guard  # one policy for the whole request, even across a reload
        if guard is not None:
            guard.users += 1
        try:
            await self._handle(exchange, record, timer, route, protocol, guard)
        except ProxyError as error:
            record.outcome, record.error_code = error.outcome, error.code
            await self._fail(exchange, record, protocol, error)
        except ClientGone:
            record.outcome = "client_abort"
        except Exception as exc:  # a defect of ours: answer, record, and say where
            log.exception("request %s failed inside the proxy", exchange.request_id)
            internal = InternalError(f"internal error ({exc.__class__.__name__}); see the log")
            record.outcome, record.error_code = internal.outcome, internal.code
            await self._fail(exchange, record, protocol, internal)
        except asyncio.CancelledError:
            if not exchange.disconnected:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            record.outcome = "client_abort"
        finally:
            exchange.stop_watching()
            timer.finish()
            record.latency_ms = timer.latency_ms
            record.http_status = exchange.status or 499
            self.inflight -= 1
            if self.inflight == 0:
                self.idle.set()
            if guard is not None:
                guard.users -= 1
                if guard.retired and guard.users == 0:
                    self._close_later(guard)
            if record.error_code not in NOT_RECORDED:  # admission counted those: not stored
                self.submit(record)

    async def _handle(
        self,
        exchange: Exchange,
        record: RequestRecord,
        timer: RequestTimer,
        route: str,
        protocol: str,
        guard: GuardStep | None,
    ) -> None:
        record.principal, decision = await self.admission.admit(exchange.scope, json_body=True)
        if decision is not None:
            exchange.extra_headers = rate_limit_headers(decision)
        body = await exchange.read_body(
            self.settings.max_body_bytes, self.settings.request_body_timeout_s
        )
        _check_containers(body, self.settings.max_json_containers)
        if len(body) < OFF_LOOP_BODY_BYTES:
            payload, info = _read_request(route, body)
        else:  # parsing and walking a large body would hold the loop for milliseconds
            payload, info = await asyncio.to_thread(_read_request, route, body)
        record.model, record.stream = info.model, info.stream
        record.input_chars, record.input_messages = info.input_chars, info.input_messages
        output_budget = budget_for_output(decision, info.input_chars)
        # one request cannot ask for more than the budget has left
        capped = output_budget is not None and cap_max_tokens(route, payload, output_budget)
        redacted = None
        if guard is not None:
            verdict, redacted = await guard.check_request(route, payload, len(body))
            _note(record, verdict)
        # hashed (keyed) and stored: what is forwarded, after redaction, never the raw
        # personal data
        if redacted is None:
            sent = info
        elif len(body) < OFF_LOOP_BODY_BYTES:
            sent = protocols.inspect_request(route, redacted)
        else:
            sent = await asyncio.to_thread(protocols.inspect_request, route, redacted)
        record.prompt_hash = self.hash_text(sent.prompt_text)
        if guard is not None and verdict.blocked:
            raise guard.input_refusal(verdict)
        if self.settings.content_storage == "full":
            record.prompt_text = sent.prompt_text
        forwarded = payload if redacted is None else redacted
        prompt = guard.response_prompt(route, forwarded) if guard is not None else ""

        relay = relay_for(route, protocol, self.settings.backend_protocol, forwarded, info, timer)
        if relay.upstream_payload is not None:
            upstream_body = orjson.dumps(relay.upstream_payload)
        else:
            upstream_body = body if redacted is None and not capped else orjson.dumps(forwarded)
        headers = request_headers(exchange.scope["headers"], self.settings)
        if self.tracing:
            headers = with_traceparent(headers, record.extra)
        exchange.watch_disconnect()
        upstream = await self.backend.send("POST", relay.upstream_path, upstream_body, headers)
        try:
            if upstream.status >= 400:
                await self._upstream_error(upstream, relay.upstream_path)
            elif relay.stream and _is_stream(upstream):
                await self._relay_stream(exchange, upstream, relay, record, guard, prompt)
            else:
                await self._relay_whole(exchange, upstream, relay, record, guard, prompt)
        finally:
            if exchange.finished:
                upstream.release()  # back to the pool if it was read to its end
            else:
                upstream.close()  # unread or aborted: the upstream request must end now
            # what was measured counts, also for streams cut short by either side
            self._finish_record(record, relay, timer)
            if upstream.status < 400:  # accepted: charged however it ended (abort, block, cut)
                spent = spent_tokens(record, info.input_chars)
                await self.admission.charge(record.principal, spent)
        if self.on_complete is not None and record.outcome == "ok" and relay.text:
            self.on_complete(record, sent.prompt_text, relay.text)

    async def _relay_whole(
        self,
        exchange: Exchange,
        upstream: UpstreamResponse,
        relay: Relay,
        record: RequestRecord,
        guard: GuardStep | None,
        prompt: str,
    ) -> None:
        data = await read_body(upstream)
        out = relay.whole(data)
        if relay.text:
            relay.timer.token()  # the whole answer is the first (and last) token
        if guard is not None and guard.output_enabled:
            verdict = await guard.check_response(relay.text, prompt)
            _note(record, verdict)
            if verdict.blocked:
                raise guard.refusal(verdict)
            if verdict.action is Action.REDACT:
                redacted = await guard.redactions(relay.whole_texts())
                out = relay.rewrite_whole(lambda text: redacted.get(text, text))
        await exchange.whole(200, relay.response_headers(response_headers(upstream)), out)

    async def _relay_stream(
        self,
        exchange: Exchange,
        upstream: UpstreamResponse,
        relay: Relay,
        record: RequestRecord,
        step: GuardStep | None,
        prompt: str,
    ) -> None:
        """Relay events as they come; with an output guard, either hold everything back until
        the end (`buffered`) or check what was sent every N characters (`incremental`).

        Incremental checks are fail-safe: the event that reaches a check point waits until
        the check (rules and model classifiers) has passed the text including it, so at most
        `every_chars` characters reach the client unchecked. A slow classifier slows the
        stream at check points instead of letting text through unjudged; the backend keeps
        generating meanwhile (into the connection's buffers), so little time is lost.
        """
        guard = step if step is not None and step.output_enabled else None
        held: list[bytes] | None = [] if guard is not None and not guard.incremental else None
        # incremental: a running buffer checked window by window (linear in the reply)
        watch = guard.stream_check(prompt) if guard is not None and held is None else None
        await exchange.start(200, relay.response_headers(response_headers(upstream)))

        async def emit(out: bytes, ending: bool) -> bool:
            """Pass `out` on (or hold it); True once the client's response has ended."""
            if guard is not None:
                verdict = None
                if watch is not None:
                    watch.take(relay.pieces)
                    if ending or watch.due:
                        verdict = await watch.check()
                elif ending:
                    verdict = await guard.check_response(relay.text, prompt)
                if verdict is not None:
                    _note(record, verdict, keep=ending or verdict.blocked)
                    if verdict.blocked:
                        relay.failed = guard.refusal(verdict)
                        ending_bytes = relay.filtered_ending(relay.failed, exchange.request_id)
                        await exchange.body(ending_bytes, False)
                        return True
                    if held is not None and ending:
                        if verdict.action is Action.REDACT and verdict.redacted_text is not None:
                            await exchange.body(relay.redacted_stream(verdict.redacted_text), False)
                        else:
                            await exchange.body(b"".join(held) + out, False)
                        return True
            if held is not None:
                held.append(out)
                return False
            if ending or out:
                await exchange.body(out, not ending)
            return ending

        body = iter_body(upstream)
        try:
            async for chunk in body:
                out = relay.feed(chunk)
                if relay.done:
                    # End the client's response with the terminal event: clients (the OpenAI
                    # SDK among them) hang up as soon as they see it.
                    await emit(out + relay.close(), True)
                    break
                if await emit(out, False):
                    return  # blocked mid-stream: the upstream request is closed by the caller
            else:
                await emit(relay.close(), True)
        except BackendFailed as error:
            relay.failed = error
            await exchange.body(relay.stream_error(error, exchange.request_id), False)
            raise
        except asyncio.CancelledError:
            if exchange.disconnected:
                raise
            # Not the client: the server, whose drain time ran out at shutdown, cancels what is
            # left. End the stream as a failed backend does, so the client reads why (not a
            # torn response) and the record says the answer was cut, not "ok".
            relay.failed = BackendFailed("generation cut short: the proxy is shutting down")
            with contextlib.suppress(ClientGone, OSError):
                await exchange.body(relay.stream_error(relay.failed, exchange.request_id), False)
            raise
        if not upstream.complete and relay.failed is None:
            with contextlib.suppress(BackendFailed):  # the client has its whole answer
                async for _ in body:  # the backend's own end follows at once: then reusable
                    pass

    async def _upstream_error(self, upstream: UpstreamResponse, path: str) -> None:
        try:
            raw = await upstream.read(64 * 1024)
        except UpstreamError:
            raw = b""
        message = _upstream_message(raw) or "error"
        status = upstream.status if 400 <= upstream.status < 500 else None
        error = BackendFailed(
            f"backend answered {upstream.status} to {path}: {message[:_ERROR_EXCERPT]}",
            upstream_status=upstream.status,
        )
        if status is not None:
            error.status = status  # the client's mistake (unknown model...): keep the status
        raise error

    async def _fail(
        self, exchange: Exchange, record: RequestRecord, protocol: str, error: ProxyError
    ) -> None:
        if exchange.started or exchange.disconnected:
            return
        if error.status >= 500:
            log.warning("request %s failed: %s", exchange.request_id, error.message)
        try:
            await exchange.whole(
                error.status,
                [*_JSON, *error.headers],
                protocols.error_body(protocol, error, exchange.request_id),
            )
        except ClientGone:
            record.outcome = "client_abort"

    def _finish_record(self, record: RequestRecord, relay: Relay, timer: RequestTimer) -> None:
        timer.finish()
        record.ttft_ms = timer.ttft_ms
        record.itl_ms = timer.itl_ms
        usage = relay.usage
        record.prompt_tokens = usage.prompt_tokens
        completion = usage.completion_tokens
        if completion is None and relay.pieces:
            completion = (
                timer.token_events if relay.stream else protocols.estimate_tokens(relay.text)
            )
            record.tokens_estimated = True
        record.completion_tokens = completion
        record.tokens_per_s = timer.tokens_per_s(completion, relay.stream)
        if relay.failed is not None:
            record.outcome, record.error_code = relay.failed.outcome, relay.failed.code
        record.response_hash = self.hash_text(relay.text)
        if self.tracing and relay.response_model is not None:
            record.extra["response_model"] = relay.response_model
        if self.settings.content_storage == "full":
            record.response_text = relay.text


def _check_containers(body: bytes, limit: int) -> None:
    """Refuse a body with more than `limit` JSON objects and arrays before it is parsed (which
    holds the GIL throughout, in whichever thread), counting their opening characters: an
    upper bound, cheap (50 us a megabyte), and only needed past `limit` bytes."""
    if len(body) > limit and (count := body.count(b"{") + body.count(b"[")) > limit:
        raise RequestInvalid(
            f"request body holds {count} '{{' and '[' characters (JSON objects and arrays, "
            f"strings included); at most {limit} are accepted (max_json_containers)"
        )


def _read_request(route: str, body: bytes) -> tuple[dict[str, Any], protocols.RequestInfo]:
    payload = protocols.parse_json_object(body)
    return payload, protocols.inspect_request(route, payload)


def _note(record: RequestRecord, verdict: Verdict, *, keep: bool = True) -> None:
    """Count the guard's time; keep verdicts that found something (an empty allow is implied).
    An incremental stream's intermediate checks count but are not kept: its last one is."""
    record.guard_ms = (record.guard_ms or 0.0) + verdict.latency_us / 1000.0
    if keep and verdict.findings:
        record.verdicts.append(verdict.as_dict(RECORDED_FINDINGS))


def _is_stream(upstream: UpstreamResponse) -> bool:
    ctype = (upstream.header(b"content-type") or b"").decode("latin-1")
    return "event-stream" in ctype or "ndjson" in ctype or "application/json" not in ctype


def _upstream_message(raw: bytes) -> str:
    try:
        payload: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace").strip()
    if isinstance(payload, dict):
        error = payload.get("error", payload.get("detail"))
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if error is not None:
            return str(error)
    return str(payload)
