"""Reading and writing an app's event definitions and aliases.

Every change bumps the app's ``catalog_version`` in the same transaction, which is how running
workers notice within a second that their copy of the rules is stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tally.catalog.definitions import (
    EventAlias,
    EventDefinition,
    Permission,
    PropertyDefinition,
    PropertyType,
    Source,
)
from tally.catalog.schema import apps, event_aliases, event_definitions

_decode = msgspec.json.Decoder(EventDefinition).decode
_encode = msgspec.json.Encoder().encode


def _now() -> datetime:
    return datetime.now(UTC)


class DefinitionStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @staticmethod
    def _bump(conn: Connection, app_id: str) -> None:
        conn.execute(
            apps.update()
            .where(apps.c.id == app_id)
            .values(catalog_version=apps.c.catalog_version + 1)
        )

    # definitions

    def list(self, app_id: str) -> list[EventDefinition]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(event_definitions.c.definition)
                .where(event_definitions.c.app_id == app_id)
                .order_by(event_definitions.c.name)
            )
            return [_decode(row.definition) for row in rows]

    def get(self, app_id: str, name: str) -> EventDefinition | None:
        with self.engine.connect() as conn:
            text = conn.execute(
                sa.select(event_definitions.c.definition).where(
                    event_definitions.c.app_id == app_id, event_definitions.c.name == name
                )
            ).scalar()
        return _decode(text) if text else None

    def put(self, app_id: str, definition: EventDefinition) -> bool:
        """Create or replace a definition; True if it was new."""
        with self.engine.begin() as conn:
            new = self._put(conn, app_id, definition)
            self._bump(conn, app_id)
        return new

    def _put(self, conn: Connection, app_id: str, definition: EventDefinition) -> bool:
        key = (event_definitions.c.app_id == app_id) & (event_definitions.c.name == definition.name)
        values = {"definition": _encode(definition).decode(), "updated_at": _now()}
        if conn.execute(event_definitions.update().where(key).values(**values)).rowcount:
            return False
        conn.execute(
            event_definitions.insert().values(app_id=app_id, name=definition.name, **values)
        )
        return True

    def delete(self, app_id: str, name: str) -> bool:
        with self.engine.begin() as conn:
            deleted = conn.execute(
                event_definitions.delete().where(
                    event_definitions.c.app_id == app_id, event_definitions.c.name == name
                )
            ).rowcount
            if deleted:
                self._bump(conn, app_id)
        return bool(deleted)

    def define_first_seen(
        self,
        app_id: str,
        seen: Mapping[str, Mapping[str, PropertyType]],
        permission: Permission,
    ) -> int:
        """Define events and properties sent for the first time, with the types first seen.

        Existing definitions only gain properties they lack; nothing is overwritten, so several
        workers can race to define the same name. Returns how many definitions changed.
        """
        changed = 0
        with self.engine.begin() as conn:
            # Take the write lock before reading (SQLite: the UPDATE begins the transaction;
            # PostgreSQL: the row lock on the app), so racing workers take turns.
            self._bump(conn, app_id)
            for name, properties in seen.items():
                current = self._get_locked(conn, app_id, name)
                if current is None:
                    definition = EventDefinition(
                        name=name,
                        permission=permission,
                        source=Source.FIRST_SEEN,
                        properties=[
                            PropertyDefinition(name=p, type=t)
                            for p, t in sorted(properties.items())
                        ],
                    )
                else:
                    known = {p.name for p in current.properties}
                    extra = [
                        PropertyDefinition(name=p, type=t)
                        for p, t in sorted(properties.items())
                        if p not in known
                    ]
                    if not extra:
                        continue
                    definition = msgspec.structs.replace(
                        current, properties=[*current.properties, *extra]
                    )
                self._put(conn, app_id, definition)
                changed += 1
        return changed

    def _get_locked(self, conn: Connection, app_id: str, name: str) -> EventDefinition | None:
        text = conn.execute(
            sa.select(event_definitions.c.definition).where(
                event_definitions.c.app_id == app_id, event_definitions.c.name == name
            )
        ).scalar()
        return _decode(text) if text else None

    # aliases

    def aliases(self, app_id: str) -> list[EventAlias]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(event_aliases.c.alias, event_aliases.c.name)
                .where(event_aliases.c.app_id == app_id)
                .order_by(event_aliases.c.alias)
            )
            return [EventAlias(alias=row.alias, name=row.name) for row in rows]

    def put_alias(self, app_id: str, alias: EventAlias) -> None:
        if alias.alias == alias.name:
            raise ValueError("an event cannot be an alias of itself")
        with self.engine.begin() as conn:
            self._put_alias(conn, app_id, alias)
            self._bump(conn, app_id)

    def _put_alias(self, conn: Connection, app_id: str, alias: EventAlias) -> None:
        key = (event_aliases.c.app_id == app_id) & (event_aliases.c.alias == alias.alias)
        if conn.execute(event_aliases.update().where(key).values(name=alias.name)).rowcount:
            return
        conn.execute(
            event_aliases.insert().values(
                app_id=app_id, alias=alias.alias, name=alias.name, created_at=_now()
            )
        )

    def delete_alias(self, app_id: str, alias: str) -> bool:
        with self.engine.begin() as conn:
            deleted = conn.execute(
                event_aliases.delete().where(
                    event_aliases.c.app_id == app_id, event_aliases.c.alias == alias
                )
            ).rowcount
            if deleted:
                self._bump(conn, app_id)
        return bool(deleted)

    # whole catalog

    def replace_all(
        self, app_id: str, definitions: Iterable[EventDefinition], aliases: Iterable[EventAlias]
    ) -> None:
        """Make the app's definitions and aliases exactly these, in one transaction."""
        with self.engine.begin() as conn:
            conn.execute(event_definitions.delete().where(event_definitions.c.app_id == app_id))
            conn.execute(event_aliases.delete().where(event_aliases.c.app_id == app_id))
            for definition in definitions:
                self._put(conn, app_id, definition)
            for alias in aliases:
                self._put_alias(conn, app_id, alias)
            self._bump(conn, app_id)
