"""The client's sans-io core: every decision, no sockets, no event loop.

Transports feed it what happened (a connection opened, a frame arrived, the
connection closed, a timer fired), each with the current time as a float,
and carry out what it asks for: the actions of
:mod:`rtgateway.client.actions`, taken with
:meth:`ClientCore.take_actions`, and one timer at
:meth:`ClientCore.next_deadline`. So the reconnect schedule, the queue
order, resume, deduplication and state sync are tested on a fake clock,
and the Twisted and asyncio clients cannot behave differently.

A connection's life: connect, wait for ``session.welcome``; the first one
gives the session, later ones are followed by ``session.resume`` with the
positions of every reliable topic; once resumed (or, if the resume is
refused, once the fresh session has subscribed again) the session is open
and the queued calls go out in priority order.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import random
from collections.abc import Callable
from typing import Any

from rtgateway.client.actions import (
    Abort,
    Connect,
    ConnectionState,
    Disconnect,
    Event,
    RefreshToken,
    Send,
)
from rtgateway.client.backoff import FINAL_CLOSE_CODES, advised_delay
from rtgateway.client.calls import HIGH, NORMAL, Call
from rtgateway.client.dispatch import Dispatcher, FrameLog, Handler
from rtgateway.client.endpoints import EndpointPool
from rtgateway.client.errors import (
    CallTimeout,
    ClientClosed,
    ConnectionLost,
    QueueFull,
    remote_error,
)
from rtgateway.client.options import ClientOptions
from rtgateway.client.outbound import OutboundQueue
from rtgateway.client.positions import DUPLICATE, GAP, Positions
from rtgateway.client.prediction import Apply, Predictor
from rtgateway.client.state import StateView
from rtgateway.client.stats import Stats
from rtgateway.client.validation import EventValidator
from rtgateway.wire import jsonrpc
from rtgateway.wire.codecs import CODECS, JSON, Codec
from rtgateway.wire.errors import InternalError, MethodNotFound, RTGatewayError

log = logging.getLogger("rtgateway.client")

#: ``handler(request, reply)`` for requests from the gateway (see ``serve``).
RequestHandler = Callable[[dict[str, Any], Callable[[dict[str, Any]], bool]], None]

STATE_PUSHES = frozenset({"state.snapshot", "state.delta", "state.check"})
#: HTTP statuses at the upgrade that another gateway may not give.
FAILOVER_STATUSES = frozenset({429, 502, 503, 504})
UNAUTHORIZED = 401


class ClientCore:
    """One client's connection, session, queue, topics and zone state."""

    def __init__(
        self,
        urls: str | list[str],
        options: ClientOptions | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options = options or ClientOptions()
        self._rng = rng or random.Random()
        self.endpoints = EndpointPool(urls, self._rng, options.endpoint_down_s)
        self.queue = OutboundQueue(options.queue_size, options.queue_per_priority)
        self.positions = Positions()
        self.dispatcher = Dispatcher()
        self.frames = FrameLog(options.event_log_size, options.trace)
        self.stats_counters = Stats(options.stats_window_s, options.rtt_window)
        self.view = StateView(
            options.interpolation_delay_s, options.max_extrapolation_s
        )
        self.welcome: dict[str, Any] | None = None
        self.session_id: str | None = None
        self.token_expires_at_ms: int | None = None
        self.refreshes = 0
        #: Set by :meth:`validate_events`; None: events are not checked.
        self.validator: EventValidator | None = None
        self.invalid_events = 0
        #: idle, connecting, handshake, resuming, open, waiting, closed.
        self.phase = "idle"
        self._actions: list[Any] = []
        self._codec: Codec = JSON
        self._url: str | None = None
        self._resume_token: str | None = None
        self._attempt = 0
        self._unauthorized_once = False
        self._closing = False
        self._reconnect_at: float | None = None
        self._ping_at: float | None = None
        self._ids = itertools.count(1)
        self._inflight: dict[int, Call] = {}
        self._deadlines: list[tuple[float, int, Call]] = []
        self._order = itertools.count()
        self._join: tuple[str, dict[str, Any]] | None = None
        self._presence: dict[str, Any] | None = None
        self._now = 0.0
        self._request_handler: RequestHandler | None = None
        #: Grows when a connection closes: replies only go out on their own.
        self._connection = 0

    # -- what the application does ------------------------------------------------

    def on(self, event_type: str, handler: Handler | None = None) -> Any:
        """Handle events of ``event_type`` (``"*"``: every topic event).

        ``client.state`` handlers get a :class:`ConnectionState`;
        ``client.lost`` handlers get ``(topic, reason)`` when events of a
        topic could not be recovered and its state must be fetched again;
        ``client.invalid`` handlers get ``(event, errors)`` for events that
        failed validation (see :meth:`validate_events`);
        every other handler gets an :class:`Event`.
        """
        return self.dispatcher.on(event_type, handler)

    def off(self, event_type: str, handler: Handler) -> None:
        self.dispatcher.off(event_type, handler)

    def serve(self, handler: RequestHandler | None) -> None:
        """Answer the gateway's requests (procedure invocations) with ``handler``.

        ``handler(request, reply)`` gets each request as decoded and answers
        it, now or later, with ``reply(response)``: the response document is
        written if the connection the request came on is still up (True),
        dropped otherwise (False), since the gateway has failed that call
        already. Without a handler, requests get -32601.
        """
        self._request_handler = handler

    def start(self, now: float) -> None:
        """Begin connecting (once)."""
        self._now = now
        if self.phase == "idle":
            self._connect(now)

    def call(
        self,
        method: str,
        params: Any = None,
        now: float | None = None,
        *,
        timeout: float | None = None,
        priority: int = NORMAL,
        idempotent: bool | None = None,
    ) -> Call:
        """A request; the :class:`Call` settles with its result or an error."""
        now = self._now if now is None else now
        self._now = now
        call = Call(
            method,
            params,
            deadline=now + (timeout or self.options.call_timeout_s),
            priority=priority,
            idempotent=idempotent,
        )
        self._watch(call)
        self._submit(call)
        return call

    def notify(
        self,
        method: str,
        params: Any = None,
        now: float | None = None,
        *,
        priority: int = NORMAL,
    ) -> None:
        """A notification; raises :class:`QueueFull` when it cannot wait."""
        now = self._now if now is None else now
        self._now = now
        call = Call(method, params, deadline=None, priority=priority, notification=True)
        if self.phase == "closed":
            raise ClientClosed("the client is closed")
        if self.phase == "open":
            self._write_call(call)
        else:
            self.queue.put(call)

    def subscribe(self, topic: str, now: float | None = None) -> Call:
        """Subscribe, from the position held for ``topic`` if there is one."""
        params: dict[str, Any] = {"topic": topic}
        held = self.positions.get(topic)
        if held is not None:
            params["since"] = held.to_wire()
        call = self.call("pubsub.subscribe", params, now)
        call.add_done_callback(lambda c: self._subscribed(topic, c))
        return call

    def unsubscribe(self, topic: str, now: float | None = None) -> Call:
        self.positions.forget(topic)
        return self.call("pubsub.unsubscribe", {"topic": topic}, now)

    def set_presence(self, params: dict[str, Any], now: float | None = None) -> Call:
        """``presence.set``; once accepted, set again on a fresh session."""
        call = self.call("presence.set", params, now)
        call.add_done_callback(lambda done: self._presence_set(done, dict(params)))
        return call

    def _presence_set(self, call: Call, params: dict[str, Any]) -> None:
        if call.error is None:
            self._presence = params

    def join(
        self, zone: str, fields: dict[str, Any] | None = None, now: float | None = None
    ) -> Call:
        """``state.join``; joined again with the latest fields on a fresh session."""
        self._join = (zone, dict(fields or {}))
        call = self.call("state.join", self._join_params(), now)
        call.add_done_callback(self._joined)
        return call

    def leave(self, now: float | None = None) -> Call:
        """``state.leave``; from now on the zone is not joined again.

        Forgotten at once, not on the answer: a leave lost with its
        connection must not be undone by the next fresh session's rejoin.
        """
        self._join = None
        self.view.left()
        return self.call("state.leave", {}, now)

    def update(
        self,
        fields: dict[str, Any],
        now: float | None = None,
        input_seq: int | None = None,
    ) -> None:
        """A ``state.update`` notification; coalesced while not connected."""
        if self._join is not None:
            self._join[1].update(fields)
        params: dict[str, Any] = {"fields": fields}
        if input_seq is not None:
            params["input_seq"] = input_seq
        self.notify("state.update", params, now, priority=HIGH)

    def predict_with(self, apply: Apply) -> Predictor:
        """Turn on client-side prediction with the game's movement rule."""
        own = self.view.mirror.entities.get(self.view.mirror.own or "")
        self.view.predictor = Predictor(apply, own[1] if own else None)
        return self.view.predictor

    def input(self, command: Any, now: float | None = None) -> dict[str, Any]:
        """Apply ``command`` locally at once and send it; the predicted fields."""
        predictor = self.view.predictor
        if predictor is None:
            raise RuntimeError("call predict_with(apply) first")
        seq, fields = predictor.input(command)
        self.update(fields, now, input_seq=seq)
        return predictor.predicted

    def validate_events(self, now: float | None = None) -> Call:
        """Check received events against ``rpc.discover``'s schemas from now on."""
        call = self.call("rpc.discover", {}, now)
        call.add_done_callback(self._discovered)
        return call

    def _discovered(self, call: Call) -> None:
        if call.error is None and isinstance(call.result, dict):
            self.validator = EventValidator(call.result)

    def refresh(self, token: str, now: float) -> Call:
        """Hand the gateway a fresh token (after :class:`RefreshToken`)."""
        self._now = now
        call = self.call("session.refresh", {"token": token}, now, priority=HIGH)
        call.add_done_callback(self._refreshed)
        return call

    def close(self, now: float) -> None:
        """End the session (``session.close``) and stop for good."""
        self._now = now
        if self.phase == "closed" or self._closing:
            return
        self._closing = True
        if self.phase == "open":
            call = self._internal("session.close", {})
            call.add_done_callback(lambda _: self._disconnect(1000, "client closed"))
        elif self.phase in ("connecting", "handshake", "resuming"):
            self._disconnect(1000, "client closed")
        else:
            self._final(1000, "closed by the client")

    def stats(self, now: float | None = None) -> dict[str, Any]:
        """RTT, rates, reconnects, resumes, last close, state rates and desyncs."""
        view = self.view
        return self.stats_counters.snapshot(
            self._now if now is None else now,
            state=self.phase,
            desyncs=view.desyncs,
            chain_breaks=view.chain_breaks,
            check_mismatches=view.check_mismatches,
            checks=view.checks,
            state_syncs=view.syncs,
            duplicates_dropped=self.positions.duplicates,
            gaps=self.positions.gaps,
            queued=len(self.queue),
            coalesced=self.queue.coalesced,
            in_flight=len(self._inflight),
            handler_errors=self.dispatcher.handler_errors,
            invalid_events=self.invalid_events,
            refreshes=self.refreshes,
            corrections=view.predictor.corrections if view.predictor else 0,
        )

    # -- what the transport reports -------------------------------------------------

    def take_actions(self) -> list[Any]:
        actions, self._actions = self._actions, []
        return actions

    def next_deadline(self) -> float | None:
        """When :meth:`timer` must run next (None: nothing scheduled)."""
        while self._deadlines and self._deadlines[0][2].settled:
            heapq.heappop(self._deadlines)
        times = [t for t in (self._reconnect_at, self._ping_at) if t is not None]
        if self._deadlines:
            times.append(self._deadlines[0][0])
        return min(times) if times else None

    def timer(self, now: float) -> None:
        """Time passed: reconnect, ping, or time out calls that are due."""
        self._now = now
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            self._connect(now)
        if self._ping_at is not None and now >= self._ping_at:
            self._ping_at = now + self.options.ping_interval_s
            ping = self._internal("sys.ping", {}, self.options.ping_timeout_s)
            ping.add_done_callback(self._pinged)
        while self._deadlines and (
            self._deadlines[0][2].settled or self._deadlines[0][0] <= now
        ):
            _, _, call = heapq.heappop(self._deadlines)
            if call.settled:
                continue
            self.queue.remove(call)
            if call.id is not None:
                self._inflight.pop(call.id, None)
            call.fail(CallTimeout(f"{call.method}: no response in time"))

    def opened(self, now: float, subprotocol: str | None) -> None:
        """The WebSocket is open; the welcome comes next."""
        self._now = now
        self._codec = CODECS.get(subprotocol or "", JSON)
        self._unauthorized_once = False
        if self._url is not None:
            self.endpoints.mark_up(self._url)
        self.phase = "handshake"

    def connect_failed(
        self, now: float, status: int | None = None, reason: str = ""
    ) -> None:
        """No WebSocket: TCP failed (``status`` None) or the upgrade was refused."""
        self._now = now
        self.stats_counters.last_connect_error = (
            reason if status is None else f"HTTP {status}: {reason}"
        )
        if self._closing:
            self._final(1000, "closed by the client")
            return
        if status == UNAUTHORIZED:
            if self._unauthorized_once:
                self._final(status, "refused with HTTP 401 twice: token not accepted")
                return
            # The token provider is asked again before the next connect.
            self._unauthorized_once = True
            self._retry(now, 0.0)
            return
        if status is not None and status not in FAILOVER_STATUSES and status < 500:
            self._final(status, f"upgrade refused with HTTP {status}")
            return
        if self._url is not None:
            self.endpoints.mark_down(self._url, now)
        self._retry(now, 0.0 if self.endpoints.any_up(now) else None)

    def received(self, now: float, data: bytes) -> None:
        """One frame from the gateway."""
        self._now = now
        self.stats_counters.frame_in(now, len(data))
        try:
            document = self._codec.decode(data)
        except RTGatewayError:
            log.warning("undecodable frame of %d bytes from the gateway", len(data))
            return
        self.frames.record(now, "in", len(data), document)
        for message in document if isinstance(document, list) else (document,):
            if isinstance(message, dict):
                self._message(message, now)

    def closed(self, now: float, code: int | None, reason: str | None) -> None:
        """The WebSocket ended, after it had opened."""
        self._now = now
        self._connection += 1
        if self.phase == "connecting":
            self.connect_failed(now, None, reason or "")
            return
        self.stats_counters.last_close_code = code
        self.stats_counters.last_close_reason = reason
        self._ping_at = None
        # Not open any more before any call settles: a callback that calls
        # again (Deferreds run them at once) must find its call queued.
        self.phase = "waiting"
        self._lose_inflight()
        self.view.sync_pending = False
        if self._closing:
            self._final(1000, "closed by the client")
            return
        if code in FINAL_CLOSE_CODES:
            self._final(code, reason)
            return
        advice = advised_delay(code, reason)
        if advice is False:
            self._final(code, reason)
        else:
            self._retry(now, None if advice is None else float(advice))

    # -- connection life ------------------------------------------------------------

    def _connect(self, now: float) -> None:
        self._url = self.endpoints.pick(now)
        self.phase = "connecting"
        self._emit_state(ConnectionState("connecting", self._url, self._attempt))
        self._actions.append(Connect(self._url))

    def _retry(self, now: float, delay: float | None) -> None:
        """Schedule the next attempt: after ``delay``, else the policy's backoff."""
        self._attempt += 1
        policy = self.options.reconnect
        if policy.gives_up(self._attempt):
            self._final(
                self.stats_counters.last_close_code,
                f"gave up after {self._attempt - 1} reconnect attempts",
            )
            return
        if delay is None:
            delay = policy.delay(self._attempt, self._rng)
        self.stats_counters.reconnects += 1
        self.phase = "waiting"
        self._reconnect_at = now + delay
        self._emit_state(
            ConnectionState("reconnecting", self._url, self._attempt, delay)
        )

    def _final(self, code: int | None, reason: str | None) -> None:
        self.phase = "closed"
        self._reconnect_at = None
        self._ping_at = None
        gone = ClientClosed(f"the client is closed ({code}: {reason})")
        for call in self.queue.drain():
            call.fail(gone)
        self._lose_inflight(gone)
        self._emit_state(ConnectionState("closed", self._url, code=code, reason=reason))

    def _disconnect(self, code: int, reason: str) -> None:
        self._actions.append(Disconnect(code, reason))

    def _emit_state(self, change: ConnectionState) -> None:
        self.dispatcher.emit("client.state", change)

    def _lose_inflight(self, error: Exception | None = None) -> None:
        """Requests of a connection that is gone: retry, or outcome unknown."""
        inflight, self._inflight = self._inflight, {}
        for call_id in sorted(inflight, reverse=True):
            call = inflight[call_id]
            if error is None and call.idempotent:
                self.queue.put_back(call)
            else:
                call.fail(
                    error
                    or ConnectionLost(
                        f"{call.method}: connection lost after sending; "
                        "the outcome is unknown"
                    )
                )

    # -- session ------------------------------------------------------------------

    def _welcomed(self, params: dict[str, Any]) -> None:
        self.welcome = params
        if self.phase != "handshake":
            return
        if self._resume_token is None:
            self._fresh_session()
            return
        self.phase = "resuming"
        self.stats_counters.resume_attempts += 1
        call = self._internal(
            "session.resume",
            {
                "resume_token": self._resume_token,
                "positions": self.positions.resume_positions(),
            },
        )
        call.add_done_callback(self._resumed)

    def _resumed(self, call: Call) -> None:
        if isinstance(call.error, ConnectionLost | ClientClosed):
            return
        if call.error is not None:
            log.info("resume refused (%s): starting a fresh session", call.error)
            self._fresh_session()
            return
        result = call.result
        self.stats_counters.resumes += 1
        self.session_id = result.get("session_id")
        for topic in self.positions.keep_only(result.get("subscriptions", [])):
            self.dispatcher.emit("client.lost", topic, "not restored by the resume")
        for topic, recovered in (result.get("recovered") or {}).items():
            if recovered is False:
                self.positions.unanchor(topic)
                self.dispatcher.emit("client.lost", topic, "not recovered")
        self._session_open()

    def _fresh_session(self) -> None:
        """A new session: subscribe again from held positions, rejoin, presence."""
        welcome = self.welcome or {}
        self._resume_token = welcome.get("resume_token")
        self.session_id = welcome.get("session_id")
        for topic in self.positions.topics():
            params: dict[str, Any] = {"topic": topic}
            held = self.positions.get(topic)
            if held is not None:
                params["since"] = held.to_wire()
            call = self._internal("pubsub.subscribe", params)
            call.add_done_callback(functools.partial(self._subscribed, topic))
        if self._presence is not None:
            self._internal("presence.set", self._presence)
        # Only what the old session had accepted: a join still in the queue
        # goes out by itself.
        if self._join is not None and self.view.joined_zone is not None:
            self._internal("state.join", self._join_params()).add_done_callback(
                self._joined
            )
        self._session_open()

    def _session_open(self) -> None:
        self.phase = "open"
        self._attempt = 0
        if self.options.ping_interval_s > 0:
            self._ping_at = self._now + self.options.ping_interval_s
        self._emit_state(ConnectionState("open", self._url))
        for call in self.queue.drain():
            if not call.settled:
                self._write_call(call)

    def _pinged(self, call: Call) -> None:
        if isinstance(call.error, CallTimeout) and self.phase == "open":
            log.warning("no answer to sys.ping in time: dropping the connection")
            self._actions.append(Abort("no answer to sys.ping"))

    def _subscribed(self, topic: str, call: Call) -> None:
        if call.error is not None:
            if not isinstance(call.error, ConnectionLost | ClientClosed):
                self.dispatcher.emit("client.lost", topic, f"subscribe: {call.error}")
            return
        self.positions.subscribed(topic, call.result or {})
        if (call.result or {}).get("recovered") is False:
            self.dispatcher.emit("client.lost", topic, "not recovered")

    def _joined(self, call: Call) -> None:
        if call.error is None:
            self.view.joined(call.result)

    def _join_params(self) -> dict[str, Any]:
        assert self._join is not None
        zone, fields = self._join
        return {"zone": zone, "fields": dict(fields)} if fields else {"zone": zone}

    def _refreshed(self, call: Call) -> None:
        if call.error is None:
            self.refreshes += 1
            self.token_expires_at_ms = call.result.get("expires_at_ms")
        else:
            log.warning("session.refresh failed: %s", call.error)

    # -- messages -----------------------------------------------------------------

    def _message(self, message: dict[str, Any], now: float) -> None:
        method = message.get("method")
        if isinstance(method, str):
            if "id" in message:
                self._invoked(message)
            else:
                self._notification(method, message.get("params"), now)
            return
        call_id = message.get("id")
        call = self._inflight.pop(call_id, None) if isinstance(call_id, int) else None
        if call is None:
            return  # timed out already, or not ours
        if "error" in message:
            call.fail(remote_error(message["error"]))
            return
        if call.method == "sys.ping" and call.sent_at is not None:
            self.stats_counters.rtts.append(now - call.sent_at)
        call.resolve(message.get("result"))

    def _invoked(self, message: dict[str, Any]) -> None:
        """A request from the gateway: the handler's to answer, else -32601."""
        if self._request_handler is None:
            # Procedure invocations go to service connections only.
            self._write(jsonrpc.error_response(message["id"], MethodNotFound()))
            return
        reply = functools.partial(self._reply, self._connection)
        try:
            self._request_handler(message, reply)
        except Exception:
            log.exception("the request handler raised on %r", message.get("method"))
            self._write(jsonrpc.error_response(message["id"], InternalError()))

    def _reply(self, connection: int, response: dict[str, Any]) -> bool:
        if connection != self._connection:
            return False
        self._write(response)
        return True

    def _notification(self, method: str, params: Any, now: float) -> None:
        if not isinstance(params, dict):
            params = {}
        if method == "session.welcome":
            self._welcomed(params)
        elif method == "session.expiring":
            self._actions.append(RefreshToken())
        elif method in STATE_PUSHES:
            self.stats_counters.state_messages.add(now)
            # After a leave, pushes still on their way are of no zone of ours.
            joining = self._join is not None
            if (
                joining
                and self.view.apply(method, params, now)
                and self.phase == "open"
            ):
                self._internal("state.sync", {}).add_done_callback(self._synced)
        elif "topic" in params and not self._deliverable(method, params):
            return
        self.dispatcher.emit(method, Event(method, params))

    def _synced(self, call: Call) -> None:
        """A state.sync refused or unanswered: the next break or check asks again."""
        if call.error is not None:
            self.view.sync_pending = False

    def _deliverable(self, method: str, params: dict[str, Any]) -> bool:
        """A topic event: new (not a replayed duplicate) and, if checked, valid."""
        verdict = self.positions.accept(params)
        if verdict == DUPLICATE:
            return False
        if verdict == GAP:
            self.dispatcher.emit("client.lost", params["topic"], "gap")
        if self.validator is None:
            return True
        errors = self.validator.errors(method, params.get("data"))
        if errors:
            self.invalid_events += 1
            log.warning("invalid %s event: %s", method, "; ".join(errors))
            self.dispatcher.emit("client.invalid", Event(method, params), errors)
        return not errors

    # -- writing ------------------------------------------------------------------

    def _watch(self, call: Call) -> None:
        if call.deadline is not None:
            heapq.heappush(self._deadlines, (call.deadline, next(self._order), call))

    def _submit(self, call: Call) -> None:
        if self.phase == "closed":
            call.fail(ClientClosed("the client is closed"))
        elif self.phase == "open":
            self._write_call(call)
        else:
            try:
                self.queue.put(call)
            except QueueFull as full:
                call.fail(full)

    def _internal(self, method: str, params: Any, timeout: float | None = None) -> Call:
        """A call of the client's own, sent now (the connection is up)."""
        call = Call(
            method,
            params,
            deadline=self._now + (timeout or self.options.call_timeout_s),
            priority=HIGH,
            idempotent=False,
        )
        self._watch(call)
        self._write_call(call)
        return call

    def _write_call(self, call: Call) -> None:
        if call.is_notification:
            self._write(jsonrpc.notification(call.method, call.params))
            return
        if not call.id:
            call.id = next(self._ids)
        call.sent_at = self._now
        self._inflight[call.id] = call
        self._write(jsonrpc.request(call.id, call.method, call.params))

    def _write(self, document: Any) -> None:
        data = self._codec.encode(document)
        self.stats_counters.frame_out(self._now, len(data))
        self.frames.record(self._now, "out", len(data), document)
        self._actions.append(Send(data, self._codec.BINARY))
