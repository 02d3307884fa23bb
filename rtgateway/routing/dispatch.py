"""From a parsed JSON-RPC message to its response document.

This is the part of a connection's work that needs no WebSocket: admission
(the rate limit), the router call, error mapping, metrics and batch
assembly. The gateway protocol feeds it and sends what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rtgateway.metrics import GatewayMetrics
from rtgateway.routing.router import Router
from rtgateway.wire.errors import InternalError, RTGatewayError
from rtgateway.wire.jsonrpc import (
    NO_ID,
    Incoming,
    InvalidEntry,
    Request,
    Response,
    error_response,
    result_response,
)

#: ``admit()`` returns None to let a message through, or the error refusing it.
Admit = Callable[[], RTGatewayError | None]

UNKNOWN_METHOD = "unknown"
#: The label of responses a backend service sends to the gateway's requests.
RESPONSE_LABEL = "response"


class _MethodMetrics:
    """Label children of one method, resolved once instead of per message."""

    __slots__ = ("latency", "messages_in", "messages_out")

    def __init__(self, metrics: GatewayMetrics, label: str) -> None:
        self.messages_in = metrics.messages_in.labels(label)
        self.messages_out = metrics.messages_out.labels(label)
        self.latency = metrics.call_latency.labels(label)


class Dispatcher:
    """Answers parsed messages for any connection; holds no per-connection state."""

    log = Logger()

    def __init__(self, router: Router, metrics: GatewayMetrics, clock: IReactorTime):
        self._router = router
        self._metrics = metrics
        self._clock = clock
        self._method_metrics: dict[str, _MethodMetrics] = {}
        self._error_counters: dict[int, Any] = {}

    def answer(self, caller: Any, incoming: Incoming, admit: Admit) -> Any:
        """The response document (dict, list or None), or a Deferred of it.

        A single request answers with one response object; a batch with the
        list of its requests' responses in request order, or None when it
        held only notifications.
        """
        if not incoming.is_batch:
            return self._answer_entry(caller, incoming.entries[0], admit)
        answers = [self._answer_entry(caller, e, admit) for e in incoming.entries]
        if any(isinstance(a, Deferred) for a in answers):
            waits = [a if isinstance(a, Deferred) else succeed(a) for a in answers]
            return gatherResults(waits).addCallback(_batch_document)
        return _batch_document(answers)

    def error_document(self, error: RTGatewayError) -> dict[str, Any]:
        """The response to a message that could not be parsed at all."""
        self._metrics_for(UNKNOWN_METHOD).messages_in.inc()
        return self._error(None, error, UNKNOWN_METHOD)

    def _answer_entry(self, caller: Any, entry: Any, admit: Admit):
        if isinstance(entry, Response):
            # Answered by nothing; over the rate, the call it answers fails.
            self._metrics_for(RESPONSE_LABEL).messages_in.inc()
            self._router.respond(caller, entry, admit())
            return None
        if isinstance(entry, InvalidEntry):
            self._metrics_for(UNKNOWN_METHOD).messages_in.inc()
            refusal = admit()
            return self._error(entry.id, refusal or entry.error, UNKNOWN_METHOD)
        label = entry.method if self._router.lookup(entry.method) else UNKNOWN_METHOD
        metrics = self._metrics_for(label)
        metrics.messages_in.inc()
        refusal = admit()
        if refusal is not None:
            return (
                None if entry.is_notification else self._error(entry.id, refusal, label)
            )
        started = self._clock.seconds()
        try:
            result = self._router.call(caller, entry)
        except RTGatewayError as error:
            return self._failed(error, entry, label)
        except Exception:
            return self._failed(self._internal(Failure(), entry), entry, label)
        if isinstance(result, Deferred):
            return result.addCallbacks(
                self._succeeded,
                self._failure,
                callbackArgs=(entry, label, started),
                errbackArgs=(entry, label),
            )
        return self._succeeded(result, entry, label, started)

    def _succeeded(self, result: Any, entry: Request, label: str, started: float):
        if entry.id is NO_ID:  # a notification
            return None
        metrics = self._metrics_for(label)
        metrics.latency.observe(self._clock.seconds() - started)
        metrics.messages_out.inc()
        return result_response(entry.id, result)

    def _failure(self, failure: Failure, entry: Request, label: str):
        error = failure.value
        if not isinstance(error, RTGatewayError):
            error = self._internal(failure, entry)
        return self._failed(error, entry, label)

    def _failed(self, error: RTGatewayError, entry: Request, label: str):
        if entry.is_notification:
            return None
        return self._error(entry.id, error, label)

    def _internal(self, failure: Failure, entry: Request) -> InternalError:
        self.log.failure(
            "handler of {method} failed", failure=failure, method=entry.method
        )
        return InternalError()

    def _error(self, request_id: Any, error: RTGatewayError, label: str):
        counter = self._error_counters.get(error.code)
        if counter is None:
            counter = self._error_counters[error.code] = self._metrics.errors.labels(
                str(error.code)
            )
        counter.inc()
        self._metrics_for(label).messages_out.inc()
        return error_response(request_id, error)

    def _metrics_for(self, label: str) -> _MethodMetrics:
        metrics = self._method_metrics.get(label)
        if metrics is None:
            metrics = self._method_metrics[label] = _MethodMetrics(self._metrics, label)
        return metrics


def _batch_document(answers: list[Any]) -> list[Any] | None:
    responses = [a for a in answers if a is not None]
    return responses or None
