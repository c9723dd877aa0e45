"""The registry of channels: every module in this folder declares one; the rest of fbsflow asks here.

A channel is one module `tasks/channels/<channel>.py` with a `ChannelSpec` subclass (see base.py).
Importing this package imports every such module and checks that each `Channel` has exactly one,
so a channel missing its module, or a module missing a piece, stops fbsflow at import.
"""

from __future__ import annotations

import importlib
import pkgutil

from tasks.channels.base import ChannelSpec, declared
from tasks.models import Channel, MunicipalityConfig
from tasks.render import ChannelContent


def check_complete(specs: dict[Channel, type[ChannelSpec]]) -> None:
    """Raise TypeError unless every channel has a module and the steps' order is unambiguous."""
    missing = [c.value for c in Channel if c not in specs]
    if missing:
        raise TypeError(
            f"no module declares channel(s) {missing} (fix: add tasks/channels/<channel>.py "
            "with a ChannelSpec subclass, see the README's 'How to add a channel')"
        )
    orders: dict[int, str] = {}
    for channel, cls in specs.items():
        if cls.step_order in orders:
            raise TypeError(
                f"channels {orders[cls.step_order]} and {channel.value} share step_order "
                f"{cls.step_order} (fix: give each its own place among the checklist steps)"
            )
        orders[cls.step_order] = channel.value


def _load() -> dict[Channel, ChannelSpec]:
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base" and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    specs = declared()
    check_complete(specs)
    return {channel: specs[channel]() for channel in Channel}  # in Channel (plan) order


_SPECS = _load()


def all_channels() -> list[ChannelSpec]:
    """Every channel's declaration, in plan order (the order of `Channel`)."""
    return list(_SPECS.values())


def spec(channel: Channel | str) -> ChannelSpec:
    """The declaration of one channel; ValueError for a name that is no channel."""
    return _SPECS[Channel(channel)]


def borrower_channels() -> tuple[Channel, ...]:
    """Channels a provider delivers to borrowers (with their consent), in plan order."""
    return tuple(s.channel for s in all_channels() if s.reaches_borrowers)


def render_channel(channel: Channel, config: MunicipalityConfig) -> ChannelContent:
    """Render one channel for every language the municipality uses."""
    return spec(channel).render(config)


__all__ = [
    "ChannelSpec",
    "all_channels",
    "borrower_channels",
    "check_complete",
    "render_channel",
    "spec",
]
