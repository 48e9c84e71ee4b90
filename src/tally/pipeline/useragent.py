"""User-agent strings parsed into browser, OS and device type; cached, as clients repeat them."""

from __future__ import annotations

from functools import lru_cache

import msgspec
from ua_parser import parse

_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "HarmonyOS"})
_TABLET_HINTS = ("iPad", "Tablet", "Kindle", "Nexus 7", "Nexus 9", "SM-T")


class ParsedAgent(msgspec.Struct, frozen=True):
    browser: str | None
    os: str | None
    device_type: str | None
    """One of desktop, mobile, tablet, bot; None when the string says nothing recognisable."""


@lru_cache(maxsize=8192)
def parse_user_agent(user_agent: str) -> ParsedAgent:
    result = parse(user_agent)
    browser = result.user_agent.family if result.user_agent else None
    os_family = result.os.family if result.os else None
    device = result.device.family if result.device else None
    if device == "Spider":
        kind: str | None = "bot"
    elif device and any(hint in device for hint in _TABLET_HINTS):
        kind = "tablet"
    elif os_family in _MOBILE_OS:
        kind = "mobile"
    elif os_family:
        kind = "desktop"
    else:
        kind = None
    if browser == "Other":
        browser = None
    if os_family == "Other":
        os_family = None
    return ParsedAgent(browser=browser, os=os_family, device_type=kind)
