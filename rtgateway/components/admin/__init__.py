"""The admin methods that feed the debug inspector (see :mod:`.component`)."""

from rtgateway.components.admin.component import AdminComponent

__all__ = ["AdminComponent"]
