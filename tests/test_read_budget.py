"""The input budget of a reactor turn: timers run on time under input overload."""

from __future__ import annotations

from twisted.internet.task import Clock

from rtgateway.gateway.readbudget import ReadBudget


class TurnClock(Clock):
    """A clock that runs, like the reactor, the calls a turn schedules on the
    next turn: Twisted's reactor takes calls made while it runs its timers
    into the next ``runUntilCurrent``, after another poll of the sockets;
    ``task.Clock`` would run a ``callLater(0)`` made by a call at once."""

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        self._sortCalls()
        due = []
        while self.calls and self.calls[0].getTime() <= self.seconds():
            due.append(self.calls.pop(0))
        for call in due:
            call.called = 1
            call.func(*call.args, **call.kw)


class Transport:
    """Records what the budget asks of a connection's transport."""

    def __init__(self) -> None:
        self.reading = True

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True


class Connection:
    """Processing a read costs ``cost`` seconds of the fake timer."""

    def __init__(self, name: str, timer: list[float], cost: float) -> None:
        self.name = name
        self.transport = Transport()
        self.received: list[bytes] = []
        self._timer = timer
        self._cost = cost

    def process(self, data: bytes) -> None:
        self._timer[0] += self._cost
        self.received.append(data)


def budget_of(seconds: float):
    clock = TurnClock()
    now = [0.0]
    return clock, now, ReadBudget(clock, seconds, timer=lambda: now[0])


def test_reads_within_the_budget_are_processed_at_once():
    """Below the bound nothing waits and no transport is paused."""
    _clock, now, budget = budget_of(0.010)
    connections = [Connection(f"c{i}", now, 0.001) for i in range(5)]
    for connection in connections:
        budget.receive(connection, b"x", connection.process)
    assert all(c.received == [b"x"] and c.transport.reading for c in connections)
    assert budget.waiting == 0


def test_past_the_budget_connections_pause_and_go_first_next_turn():
    """Once a turn has spent its budget, later reads wait, paused, in order."""
    clock, now, budget = budget_of(0.010)
    connections = [Connection(f"c{i}", now, 0.004) for i in range(6)]
    for connection in connections:
        budget.receive(connection, b"1", connection.process)
    served = [c.name for c in connections if c.received]
    assert served == ["c0", "c1", "c2"]  # 12 ms spent after the third
    assert [c.transport.reading for c in connections[3:]] == [False] * 3
    assert budget.waiting == 3
    # The first connection reads again in the same turn: it waits behind them.
    budget.receive(connections[0], b"2", connections[0].process)
    assert connections[0].received == [b"1"] and budget.waiting == 4
    clock.advance(0)  # the next turn: 12 ms on c3, c4, c5
    assert all(c.received == [b"1"] for c in connections)
    assert connections[0].received == [b"1"]  # its second read: behind the budget
    clock.advance(0)
    assert connections[0].received == [b"1", b"2"]
    assert budget.waiting == 0
    assert all(c.transport.reading for c in connections)


def test_a_timer_due_runs_between_turns_however_many_connections_send():
    """A 60 Hz timer keeps its rate while connections offer ten times the CPU."""
    clock, now, budget = budget_of(0.008)
    connections = [Connection(f"c{i}", now, 0.002) for i in range(100)]
    ticks = []

    def tick():
        ticks.append(clock.seconds())
        clock.callLater(1 / 60, tick)

    clock.callLater(1 / 60, tick)
    for _ in range(60):
        # One turn of the reactor: every connection's socket is ready.
        for connection in connections:
            if connection.transport.reading:
                budget.receive(connection, b"x", connection.process)
        clock.advance(1 / 60)
    assert len(ticks) == 60
    served = sum(len(c.received) for c in connections)
    assert 60 * 4 <= served <= 60 * 6  # about the budget's worth per turn
    assert min(len(c.received) for c in connections) >= 2  # nobody starves


def test_a_turn_reads_as_long_as_the_rest_of_the_last_one_took():
    """Timers that take 20 ms a turn leave input 20 ms, not the 8 ms floor:
    under overload the two share the process, neither starves."""
    clock, now, budget = budget_of(0.008)
    connections = [Connection(f"c{i}", now, 0.002) for i in range(40)]

    def timers():
        now[0] += 0.020  # a zone's tick and the sends after it
        clock.callLater(1 / 60, timers)

    clock.callLater(1 / 60, timers)
    served = []
    for _ in range(30):
        before = sum(len(c.received) for c in connections)
        for connection in connections:
            if connection.transport.reading:
                budget.receive(connection, b"x", connection.process)
        clock.advance(1 / 60)
        served.append(sum(len(c.received) for c in connections) - before)
    # 20 ms of input per turn at 2 ms a read, once the first turn has run.
    assert all(9 <= count <= 12 for count in served[2:]), served


def test_a_connection_gone_while_waiting_is_forgotten():
    """What a closed connection had waiting is dropped, not processed."""
    clock, now, budget = budget_of(0.001)
    first, second = Connection("a", now, 0.002), Connection("b", now, 0.002)
    budget.receive(first, b"1", first.process)
    budget.receive(second, b"1", second.process)
    budget.forget(second)
    clock.advance(0)
    assert second.received == [] and budget.waiting == 0
