"""Admin calls that every gateway of a cluster answers, over the bus.

The gateway an admin is connected to answers for itself and asks the
others on the channel ``rtgw.admin``, which every gateway with the admin
methods listens to; each answers on the asking gateway's own channel
``rtgw.admin.<gateway_id>``. The asker waits ``[admin] cluster_timeout_s``
at most, and no longer once every gateway it expects has answered.

Expected are the gateways this one heard from in the last
:data:`ROSTER_TTL_S` seconds: a gateway says hello on ``rtgw.admin`` when
it starts (the others answer it, so it learns of them too) and goes when it
stops, and every answer counts as being heard. One that died without a
word is listed as missing until that long has passed. The traffic is that
of the admin calls and of gateways starting, nothing per message: no
gateway hears anything of the others' players through these channels.

A question can also go to one gateway only, on its own channel; and a
gateway can tell another something that needs no answer (the frames of a
trace, :mod:`.remote`), which reaches the other's ``told`` callback.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from rtgateway.backends.keys import PREFIX
from rtgateway.wire.errors import Unavailable

#: Every gateway with the admin methods listens here.
ADMIN_CHANNEL = f"{PREFIX}.admin"
#: A gateway not heard from for this long is no longer expected to answer.
ROSTER_TTL_S = 300.0

#: ``answer(what, params, asker)``: this gateway's answer, a value or a Deferred.
Answer = Callable[[str, dict[str, Any], str], Any]
#: ``told(sender, order)``: what another gateway told this one (``bye`` too).
Told = Callable[[str, dict[str, Any]], None]


def reply_channel(gateway_id: str) -> str:
    """Where the answers to a gateway's admin questions go."""
    return f"{ADMIN_CHANNEL}.{gateway_id}"


@dataclass(slots=True, eq=False)
class _Question:
    expected: set[str]
    done: Deferred
    answers: dict[str, Any] = field(default_factory=dict)
    timer: IDelayedCall | None = None


class ClusterQuestions:
    """Asks the other gateways, and answers them."""

    log = Logger()

    def __init__(
        self,
        *,
        bus: Any,
        broker: Any,
        gateway_id: str,
        clock: IReactorTime,
        timeout_s: float,
        answer: Answer,
        told: Told,
    ) -> None:
        self._bus = bus
        self._broker = broker
        self._gateway_id = gateway_id
        self._clock = clock
        self._timeout_s = timeout_s
        self._answer = answer
        self._told = told
        self._own = reply_channel(gateway_id)
        self._ids = itertools.count(1)
        self._questions: dict[int, _Question] = {}
        #: gateway id -> when it was last heard (clock seconds)
        self._roster: dict[str, float] = {}

    def start(self) -> None:
        broker = self._broker
        broker.add_channel_handler(ADMIN_CHANNEL, self._message)
        broker.add_channel_handler(self._own, self._message)
        joined = [self._bus.subscribe(ADMIN_CHANNEL), self._bus.subscribe(self._own)]
        joined[1].addCallback(lambda _: joined[0]).addCallback(
            lambda _: self._publish(ADMIN_CHANNEL, {"op": "hello"})
        ).addErrback(self._failed, "joining the admin channels")

    def stop(self) -> None:
        self._publish(ADMIN_CHANNEL, {"op": "bye"})
        for channel in (ADMIN_CHANNEL, self._own):
            self._broker.remove_channel_handler(channel)
            left = self._bus.unsubscribe(channel)
            left.addErrback(self._failed, "leaving " + channel)
        for question_id in list(self._questions):
            self._finish(question_id)

    def ask(
        self, what: str, params: dict[str, Any], gateway: str | None = None
    ) -> Deferred:
        """The others' answers: fires with ``({gateway_id: answer}, missing)``.

        ``missing`` lists, sorted, the expected gateways that did not answer
        in time (never this one, which answers for itself apart). With
        ``gateway``, only that one is asked and expected.
        """
        now = self._clock.seconds()
        if gateway is None:
            expected = {g for g, t in self._roster.items() if now - t <= ROSTER_TTL_S}
        else:
            expected = {gateway}
        question_id = next(self._ids)
        question = _Question(expected, Deferred())
        self._questions[question_id] = question
        order = {"op": "ask", "id": question_id, "what": what, "params": params}
        self._publish(
            ADMIN_CHANNEL if gateway is None else reply_channel(gateway), order
        )
        if expected <= set(question.answers):  # none expected, or all answered
            self._finish(question_id)
        elif question_id in self._questions:
            question.timer = self._clock.callLater(
                self._timeout_s, self._finish, question_id
            )
        result: Deferred = question.done
        return result

    def tell(self, gateway: str, order: dict[str, Any]) -> None:
        """Send ``order`` (with an ``op``) to one gateway, expecting no answer."""
        self._publish(reply_channel(gateway), order)

    def heard(self, gateway: str) -> float | None:
        """When ``gateway`` was last heard from (clock seconds), if ever."""
        return self._roster.get(gateway)

    # -- the bus ---------------------------------------------------------------

    def _message(self, message: bytes) -> None:
        """Another gateway's hello, goodbye, question, answer or order."""
        order = self._parse(message)
        if order is None or order["g"] == self._gateway_id:
            return
        sender = order["g"]
        op = order.get("op")
        if op == "bye":
            self._roster.pop(sender, None)
            self._told(sender, order)
            return
        self._roster[sender] = self._clock.seconds()
        if op == "hello":
            self._publish(reply_channel(sender), {"op": "here"})
        elif op == "ask":
            self._answer_question(sender, order)
        elif op == "answer":
            self._answered(sender, order)
        elif op != "here":
            self._told(sender, order)

    def _answer_question(self, sender: str, order: dict[str, Any]) -> None:
        what, params = str(order.get("what")), order.get("params") or {}
        d = maybeDeferred(self._answer, what, params, sender)
        d.addCallback(
            lambda result: self._publish(
                reply_channel(sender),
                {"op": "answer", "id": order.get("id"), "result": result},
            )
        )
        d.addErrback(self._failed, "answering an admin question")

    def _answered(self, sender: str, order: dict[str, Any]) -> None:
        question_id = order.get("id")
        question = self._questions.get(question_id)  # type: ignore[arg-type]
        if question is None:
            return  # answered too late
        question.answers[sender] = order.get("result")
        if question.expected and question.expected <= set(question.answers):
            self._finish(question_id)  # type: ignore[arg-type]

    def _finish(self, question_id: int) -> None:
        question = self._questions.pop(question_id, None)
        if question is None:
            return
        if question.timer is not None and question.timer.active():
            question.timer.cancel()
        missing = sorted(question.expected - set(question.answers))
        question.done.callback((question.answers, missing))

    def _publish(self, channel: str, order: dict[str, Any]) -> None:
        body = orjson.dumps({**order, "g": self._gateway_id})
        self._bus.publish(channel, body).addErrback(
            self._failed, "publishing on " + channel
        )

    def _parse(self, message: bytes) -> dict[str, Any] | None:
        try:
            order = orjson.loads(message)
        except orjson.JSONDecodeError:
            order = None
        if not isinstance(order, dict) or not isinstance(order.get("g"), str):
            self.log.warn("ignoring a malformed admin message from the bus")
            return None
        return order

    def _failed(self, failure: Any, what: str) -> None:
        if failure.check(Unavailable):  # the bus is down or stopping: expected
            self.log.warn(what + " failed: the backend is unavailable")
        else:
            self.log.failure(what + " failed", failure=failure)
