"""The bounded outbound priority queue and the coalescing of inputs."""

from __future__ import annotations

import pytest

from rtgateway.client.calls import HIGH, LOW, NORMAL, Call
from rtgateway.client.errors import QueueFull
from rtgateway.client.outbound import OutboundQueue


def request(method: str, priority: int = NORMAL) -> Call:
    return Call(method, {}, deadline=None, priority=priority)


def test_drains_by_priority_then_first_in_first_out():
    """Higher priorities leave first; within one, the order of arrival."""
    queue = OutboundQueue()
    calls = [
        request("low1", LOW),
        request("n1"),
        request("high1", HIGH),
        request("n2"),
        request("high2", HIGH),
        request("low2", LOW),
    ]
    for call in calls:
        queue.put(call)
    assert [c.method for c in queue.drain()] == [
        "high1",
        "high2",
        "n1",
        "n2",
        "low1",
        "low2",
    ]
    assert len(queue) == 0


def test_total_bound_refuses_with_a_clear_error():
    """Past max_size a call is refused with QueueFull naming the bound."""
    queue = OutboundQueue(max_size=2)
    queue.put(request("a"))
    queue.put(request("b"))
    with pytest.raises(QueueFull, match=r"2 waiting.*c refused"):
        queue.put(request("c"))


def test_per_priority_bound_keeps_room_for_others():
    """A full low priority does not stop a normal call."""
    queue = OutboundQueue(max_size=10, per_priority={LOW: 1})
    queue.put(request("chatter", LOW))
    with pytest.raises(QueueFull, match="priority 2"):
        queue.put(request("more chatter", LOW))
    queue.put(request("important"))
    assert [c.method for c in queue.drain()] == ["important", "chatter"]


def test_state_updates_are_coalesced_to_the_latest():
    """Only the latest state.update notification is kept, outside the bounds."""
    queue = OutboundQueue(max_size=1)
    queue.put(request("presence.set"))
    for x in range(5):
        queue.put(
            Call("state.update", {"fields": {"x": x}}, deadline=None, notification=True)
        )
    drained = queue.drain()
    assert [c.method for c in drained] == ["presence.set", "state.update"]
    assert drained[-1].params == {"fields": {"x": 4}}
    assert queue.coalesced == 4


def test_put_back_goes_ahead_of_newer_calls_and_past_the_bound():
    """Requests lost with a connection go first at their priority, even when full."""
    queue = OutboundQueue(max_size=1)
    queue.put(request("new"))
    lost_second, lost_first = request("lost2"), request("lost1")
    queue.put_back(lost_second)
    queue.put_back(lost_first)
    assert [c.method for c in queue.drain()] == ["lost1", "lost2", "new"]


def test_remove_takes_one_call_out():
    """A call whose timeout expired leaves the queue; the counts follow."""
    queue = OutboundQueue(max_size=5, per_priority={NORMAL: 1})
    call = request("a")
    queue.put(call)
    assert queue.remove(call) and not queue.remove(call)
    queue.put(request("b"))  # the per-priority slot is free again
    assert [c.method for c in queue.drain()] == ["b"]
