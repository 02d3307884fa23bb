"""State synchronization, sans-io: zone rules, entities, ticks, deltas, views.

Like :mod:`rtgateway.wire`, nothing here schedules, sends or reads a
clock: the state component (:mod:`rtgateway.components.state`) drives it
on the reactor, and tests drive it directly, a thousand ticks in
milliseconds.
"""
