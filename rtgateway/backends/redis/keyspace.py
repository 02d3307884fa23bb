"""Names of the Redis keys, each belonging to one session, topic or player.

The ``{hash tag}`` of a key is its owner, so all the keys of one session or
topic land on the same shard when the data is spread by key hash. The
resume-digest key is the exception that the session scripts have to cross:
a resume token only names its digest (see the package docstring).
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
