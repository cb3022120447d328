"""A store, opened: its read side, and its engine and writers, made on first need.

`Store.open` picks the read driver: a SQLite file at the current schema
revision is read through the standard library's ``sqlite3`` and the engine
(SQLAlchemy, ~120 ms to import) is made only when something writes or needs
upkeep; any other store (PostgreSQL, a ``sqlite+pysqlite://`` URL, a store that
needs an upgrade) is opened through the engine, which checks, creates or
upgrades it, and read through it too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from stashdb.errors import InvalidArguments, KeyProblem, StoreDamaged, StoreKeyMissing
from stashdb.storage.format import DEFAULT_LOCK_TIMEOUT
from stashdb.storage.reader import Reader
from stashdb.storage.sealing import PLAIN, Plain, Sealed, Unsealable
from stashdb.storage.sqlite_driver import SQLiteDriver, sqlite_path

#: The ``meta`` key of an encrypted store's setting: cipher, key id, a check value.
ENCRYPTION_NOTE = "encryption"
#: Sealed into the setting: a key that opens it is the store's key.
_CHECK = "stashdb store key check"

if TYPE_CHECKING:
    from stashdb.storage.commits import CommitWriter, Signer
    from stashdb.storage.engine import Database
    from stashdb.storage.maintenance import GcReport, PruneReport, RepairReport, VerifyReport
    from stashdb.storage.objects import ObjectWriter

__all__ = ["DEFAULT_LOCK_TIMEOUT", "Store"]


class Store:
    """One store: where it is, how long it waits for locks, how it is read and written.

    Use `Store.open`. ``reader`` serves every read; ``commits`` and
    `object_writer` every write; ``database`` is the engine with its settings.
    """

    def __init__(
        self,
        url: str,
        *,
        location: str | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        light: SQLiteDriver | None = None,
        database: Database | None = None,
    ) -> None:
        self.url = url
        self._location = location
        self._lock_timeout = lock_timeout
        self._light = light
        self._database = database
        #: Signs each commit as it is written (Repo sets it: the user's key).
        self.signer: Signer | None = None
        #: How the store keeps its bytes (`unseal` sets it for an encrypted store).
        self.sealer: Plain = PLAIN
        self._reader: Reader | None = Reader(light) if light is not None else None
        self._commits: CommitWriter | None = None

    @classmethod
    def open(
        cls,
        url: str,
        *,
        create: bool = False,
        location: str | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> Store:
        """Open (with ``create``, create) the store at ``url``.

        Raises:
            StoreUnreachable, NotAStore, UnsupportedFormat, DriverMissing: see
                `stashdb.storage.engine.open_database`.
        """
        path = sqlite_path(url)
        if not create and path is not None:
            light = SQLiteDriver.open(path, lock_timeout=lock_timeout)
            if light is not None:
                return cls(url, location=location, lock_timeout=lock_timeout, light=light)
        from stashdb.storage.engine import open_database

        database = open_database(
            url, create=create, location=location, lock_timeout=lock_timeout
        )
        # Opened (created, upgraded) by the engine: now the light driver can read it.
        light = SQLiteDriver.open(path, lock_timeout=lock_timeout) if path is not None else None
        return cls(
            url, location=location, lock_timeout=lock_timeout, light=light, database=database
        )

    @property
    def location(self) -> str:
        """Where the store is, for messages (a path, or the URL without its password)."""
        if self._location is None:
            from stashdb.storage.engine import safe_url

            self._location = safe_url(self.url)
        return self._location

    @property
    def lock_timeout(self) -> float:
        """Seconds a write (or, on SQLite, a read) waits while another process holds the lock."""
        return self._lock_timeout

    @lock_timeout.setter
    def lock_timeout(self, seconds: float) -> None:
        self._lock_timeout = float(seconds)
        if self._light is not None:
            self._light.lock_timeout = self._lock_timeout
        if self._database is not None:
            self._database.lock_timeout = self._lock_timeout

    # -- encryption at rest ------------------------------------------------------------

    def unseal(self, key_source: Callable[[str], bytes | None]) -> None:
        """Read an encrypted store with its key (a plain store: nothing to do).

        Raises:
            StoreKeyMissing: ``key_source`` does not have the store's key.
            KeyProblem: the key it has does not open the store.
        """
        raw = self.reader.notes(ENCRYPTION_NOTE).get(ENCRYPTION_NOTE)
        if raw is None:
            return
        try:
            info = json.loads(raw)
            key_id, check = str(info["key"]), str(info["check"])
        except (ValueError, KeyError, TypeError):
            raise StoreDamaged(f"{self.location}: its encryption setting is {raw[:60]!r}") from None
        key = key_source(key_id)
        if key is None:
            raise StoreKeyMissing(self.location, key_id)
        sealer = Sealed(key)
        try:
            opened = sealer.open_text(check)
        except Unsealable:
            opened = None
        if sealer.key_id != key_id or opened != _CHECK:
            raise KeyProblem(f"store key {key_id}", f"it does not open {self.location}")
        self._use(sealer)

    def seal_with(self, key: bytes) -> None:
        """Make this new, empty store an encrypted one, under ``key``.

        Raises:
            InvalidArguments: the store holds commits already.
        """
        if self.reader.commit_ids():
            raise InvalidArguments(
                f"{self.location} holds commits already: only a new store can be encrypted "
                "(its existing chunks would keep their plain ids)"
            )
        sealer = Sealed(key)
        info = {"cipher": "AES-256-GCM", "ids": "BLAKE3-keyed", "key": sealer.key_id,
                "check": sealer.seal_text(_CHECK)}
        self.commits.set_note(ENCRYPTION_NOTE, json.dumps(info))
        self._use(sealer)

    def _use(self, sealer: Plain) -> None:
        self.sealer = sealer
        if self._reader is not None:
            self._reader.sealer = sealer
        if self._commits is not None:
            self._commits.sealer = sealer

    @property
    def database(self) -> Database:
        """The engine with the store's settings, opened on first use."""
        if self._database is None:
            from stashdb.storage.engine import open_database

            self._database = open_database(
                self.url, create=False, location=self._location, lock_timeout=self._lock_timeout
            )
        return self._database

    @property
    def reader(self) -> Reader:
        """The read side: through ``sqlite3`` when the store allows it, else the engine."""
        if self._reader is None:
            from stashdb.storage.engine_driver import EngineDriver

            self._reader = Reader(EngineDriver(self.database), self.sealer)
        return self._reader

    @property
    def commits(self) -> CommitWriter:
        """Writes commits, refs and HEAD."""
        if self._commits is None:
            from stashdb.storage.commits import CommitWriter

            self._commits = CommitWriter(self.database)
            self._commits.signer = self.signer
            self._commits.sealer = self.sealer
        return self._commits

    def object_writer(self, *, compress: bool = True) -> ObjectWriter:
        """A writer for the objects of one commit."""
        from stashdb.storage.objects import ObjectWriter

        return ObjectWriter(self.database, self.reader, compress=compress, sealer=self.sealer)

    # -- upkeep ------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """See `stashdb.storage.maintenance.verify`."""
        from stashdb.storage import maintenance

        return maintenance.verify(self.reader)

    def repair(self, report: VerifyReport) -> RepairReport:
        """See `stashdb.storage.maintenance.repair`."""
        from stashdb.storage import maintenance

        return maintenance.repair(self.database, report)

    def gc(self, *, grace: float | None = None) -> GcReport:
        """See `stashdb.storage.maintenance.gc`."""
        from stashdb.storage import maintenance

        return maintenance.gc(self.database, grace=grace)

    def prune(
        self,
        branch: str,
        *,
        keep_last: int | None = None,
        keep_days: float | None = None,
        grace: float | None = None,
        dry_run: bool = False,
    ) -> PruneReport:
        """See `stashdb.storage.maintenance.prune`."""
        from stashdb.storage import maintenance

        return maintenance.prune(
            self.database, branch, keep_last=keep_last, keep_days=keep_days, grace=grace,
            dry_run=dry_run,
        )

    def check_writable(self) -> None:
        """See `stashdb.storage.engine.Database.check_writable`."""
        self.database.check_writable()

    def close(self) -> None:
        """Close the connections; the store can still be used (they reopen)."""
        if self._reader is not None:
            self._reader.close()
        if self._database is not None:
            self._database.dispose()
