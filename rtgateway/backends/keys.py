"""Names of bus channels and store keys, shared by every backend.

Each name belongs to one topic, session, player, gateway or zone, and the
Redis keys of one topic, session or zone share a ``{hash tag}``, so the data
of a cluster can be sharded by key over several Redis servers.
"""

PREFIX = "rtgw"

#: Every gateway listens here; cluster-wide orders (kicks) are rare.
CONTROL_CHANNEL = f"{PREFIX}.control"


def topic_channel(topic: str) -> str:
    """The bus channel of a topic's events."""
    return f"{PREFIX}.t.{topic}"


def gateway_channel(gateway_id: str) -> str:
    """The bus channel of orders for one gateway (session takeovers)."""
    return f"{PREFIX}.gw.{gateway_id}"


def zone_channel(zone: str) -> str:
    """The bus channel of a state zone's entity changes (see :mod:`.zonefeed`)."""
    return f"{PREFIX}.z.{zone}"


def call_channel(gateway_id: str) -> str:
    """The bus channel of routed calls to a gateway, and of answers to its calls."""
    return f"{PREFIX}.call.{gateway_id}"


#: The header of the empty first reply a gateway sends to a call it took on
#: NATS (``rtgw.rpc.<procedure>``): its id, so that the caller can fail the
#: call with -32005 should that gateway die before answering.
ACCEPTED_HEADER = "Rtgw-Gateway"
