"""Names of the Redis keys, each belonging to one session, topic, player,
gateway or zone.

The ``{hash tag}`` of a key is its owner, so all the keys of one session or
topic land on the same shard when the data is spread by key hash. The
resume-digest key is the exception that the session scripts have to cross:
a resume token only names its digest (see the package docstring); the
presence scripts cross player, gateway and zone keys (see :mod:`.presence`),
and ``rtgw:gateways`` belongs to the whole cluster.
"""

from rtgateway.backends.keys import PREFIX

#: Lua scripts build session and digest keys from ids they read in Redis.
SESSION_KEY_PREFIX = f"{PREFIX}:s:{{"
DIGEST_KEY_PREFIX = f"{PREFIX}:d:{{"
KEY_SUFFIX = "}"


def session_key(session_id: str) -> str:
    """The hash of one session's fields, subscriptions, metadata and stats."""
    return f"{SESSION_KEY_PREFIX}{session_id}{KEY_SUFFIX}"


def digest_key(resume_digest: str) -> str:
    """A string holding the id of the session a resume-token digest belongs to."""
    return f"{DIGEST_KEY_PREFIX}{resume_digest}{KEY_SUFFIX}"


def kick_key(player_id: str) -> str:
    """A string holding the time of the player's last kick, in ms."""
    return f"{PREFIX}:p:{{{player_id}}}:kick"


def topic_log_key(topic: str) -> str:
    """The stream of a topic's events, entry ids ``0-<offset>``."""
    return f"{PREFIX}:t:{{{topic}}}:log"


def topic_meta_key(topic: str) -> str:
    """The hash of a topic's ``epoch`` and ``top`` offset."""
    return f"{PREFIX}:t:{{{topic}}}:meta"


# -- presence (see :mod:`.presence`) ------------------------------------------
#
# A player's presence keys share the player's tag (with its kick key); a
# gateway's keys share the gateway's tag; a zone listing is tagged by its
# zone. The presence scripts build gateway, session-map and zone keys from
# ids they read in Redis, hence these prefixes and suffixes.

PRESENCE_KEY_PREFIX = f"{PREFIX}:pr:{{"
GATEWAY_KEY_PREFIX = f"{PREFIX}:gw:{{"
ZONE_KEY_PREFIX = f"{PREFIX}:z:{{"
PRESENCE_SESSIONS_SUFFIX = "}:s"
GATEWAY_SESSIONS_SUFFIX = "}:s"
GATEWAY_ALIVE_SUFFIX = "}:alive"
GATEWAY_CLAIM_SUFFIX = "}:claimed:"

#: The set of the gateway ids that ever said they were alive and were not
#: claimed dead since: the one cluster-wide presence key.
GATEWAYS_KEY = f"{PREFIX}:gateways"


def presence_key(player_id: str) -> str:
    """The hash of a player's presence: status, zone, region, activity,
    last_seen_ms, online (each field absent while None / never set)."""
    return f"{PRESENCE_KEY_PREFIX}{player_id}{KEY_SUFFIX}"


def presence_sessions_key(player_id: str) -> str:
    """The hash of a player's live sessions: session id -> gateway id."""
    return f"{PRESENCE_KEY_PREFIX}{player_id}{PRESENCE_SESSIONS_SUFFIX}"


def gateway_sessions_key(gateway_id: str) -> str:
    """The set of ``<player id>|<session id>`` live on a gateway."""
    return f"{GATEWAY_KEY_PREFIX}{gateway_id}{GATEWAY_SESSIONS_SUFFIX}"


def gateway_alive_key(gateway_id: str) -> str:
    """A string that exists while the gateway is alive (it has a PX TTL)."""
    return f"{GATEWAY_KEY_PREFIX}{gateway_id}{GATEWAY_ALIVE_SUFFIX}"


def gateway_claim_key(gateway_id: str, claim_id: str) -> str:
    """A dead gateway's session set, renamed by the one claim that took it."""
    return f"{GATEWAY_KEY_PREFIX}{gateway_id}{GATEWAY_CLAIM_SUFFIX}{claim_id}"


def zone_key(zone: str) -> str:
    """The sorted set of the players visible in a zone, all scored 0."""
    return f"{ZONE_KEY_PREFIX}{zone}{KEY_SUFFIX}"


# -- state (see :mod:`.state`) ------------------------------------------------
#
# Every key of a state zone carries the zone as its tag: a zone's scripts
# touch one shard. The load script builds entity keys from the ids it reads,
# hence the prefix.


def state_ids_key(zone: str) -> str:
    """The set of the ids of a zone's entities."""
    return f"{PREFIX}:st:{{{zone}}}:ids"


def state_entity_prefix(zone: str) -> str:
    """What every entity key of a zone starts with; the entity id follows."""
    return f"{PREFIX}:st:{{{zone}}}:e:"


def state_entity_key(zone: str, entity_id: str) -> str:
    """The hash of one entity: ``_v`` its version, ``f:<name>`` each field (JSON)."""
    return state_entity_prefix(zone) + entity_id


# -- routed procedures (see :mod:`.procedures`) -------------------------------

#: The sorted set of every advertised procedure name, scored by when its
#: last entry runs out: the one cluster-wide key of the registry, read only
#: by ``rpc.discover``.
PROCEDURE_NAMES_KEY = f"{PREFIX}:rpc:names"


def procedure_key(procedure: str) -> str:
    """The sorted set of the gateways with a callee, scored by expiry (ms)."""
    return f"{PREFIX}:rpc:{{{procedure}}}"


def procedure_description_key(procedure: str) -> str:
    """The JSON a callee gave of the procedure (schemas), in its entries' slot."""
    return f"{PREFIX}:rpc:{{{procedure}}}:description"
