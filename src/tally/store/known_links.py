"""Identity links this store process knows are stored, so that a load whose events only restate
links stored before (a device and its customer on every event, as Segment's anonymousId and userId
send them) does not search ``identity_links`` again.

The search is a scan of every stored link key: ~18 ms a load at 3M links, where the rest of a
3,000-event load takes ~15 ms. Known links are remembered as 64-bit hashes of (app, device,
customer): a new link is taken for a known one only if its hash equals one of the at most
``most`` remembered (odds ~``most`` / 2^64, 1e-14 at the default), and then it is not stored.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from tally.model import LINK_EVENT

Links = frozenset[int]


class KnownLinks:
    def __init__(self, most: int = 200_000) -> None:
        self.most = most
        self._known: set[int] = set()

    @staticmethod
    def stated(events: pa.Table) -> Links | None:
        """The device-to-customer links ``events`` state (empty: none), the pairs the store's
        ``_LINK_SQL`` derives from them; or None when they hold a link event: those name the
        linked ids in their properties and are always searched."""
        if pc.any(pc.equal(events["name"], LINK_EVENT)).as_py():
            return None
        users, devices = events["user_id"], events["device_id"]
        linking = pc.and_(pc.is_valid(users), pc.is_valid(devices))
        if not pc.any(linking).as_py():
            return frozenset()
        linking = pc.and_(linking, pc.not_equal(users, devices))
        stating = events.select(["app_id", "device_id", "user_id"]).filter(linking)
        return frozenset(
            map(
                hash,
                zip(
                    stating["app_id"].to_pylist(),
                    stating["device_id"].to_pylist(),
                    stating["user_id"].to_pylist(),
                    strict=True,
                ),
            )
        )

    def all_known(self, links: Links | None) -> bool:
        """Whether the search can be skipped: every link is known (or there is none)."""
        return links is not None and links <= self._known

    def stored(self, links: Links | None) -> None:
        """``links`` are in ``identity_links`` now (their load committed)."""
        if not links:
            return
        if len(self._known) + len(links) > self.most:
            self._known.clear()
        self._known.update(links)

    def forget(self) -> None:
        """Links were deleted: none is known any more."""
        self._known.clear()
