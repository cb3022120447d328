"""The stored format outlives the code's layout: the names stored pickles use stay the same."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zstandard
from sqlalchemy import select

import stashdb
from conftest import raw_connection
from stashdb.storage import schema

DATA = Path(__file__).parent / "data"


def test_a_store_written_before_the_layers_were_split_still_restores(tmp_path: Path) -> None:
    db = tmp_path / "names.db"
    shutil.copy(DATA / "store-names.db", db)
    ns: dict[str, object] = {"__name__": "__main__"}
    report = stashdb.open(db).checkout(namespace=ns, trust=True)  # unsigned: made before 0005
    assert report.ok, report
    assert ns["holder"]["k"] is ns["numbers"]  # type: ignore[index]  # a Group
    assert ns["favourite"] is ns["Color"].BLUE  # type: ignore[attr-defined]  # _make_enum
    assert ns["scale"](2) == 6  # type: ignore[operator]  # _create_function, its globals
    cities = ns["cities"]  # strings_from_codes
    assert isinstance(cities, np.ndarray) and list(cities[:3]) == ["Oslo", "Lima", "Pune"]
    # stashdb's own objects, stored under 0.1.0's module paths.
    from stashdb.storage.maintenance import VerifyReport

    assert isinstance(ns["report"], VerifyReport) and ns["report"].ok
    assert isinstance(ns["refused"], stashdb.InvalidRefName)


def test_new_pickles_name_stashdb_by_the_stored_names(repo: stashdb.Repo) -> None:
    pytest.importorskip("pandas")  # the string-column encoding needs it loaded
    shared = [1]
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec("import enum\nclass Color(enum.Enum):\n    RED = 1\n"
         "def f():\n    return shared\n", namespace)
    namespace.update(a=shared, b={"k": shared},
                     cities=np.array(["x", "y"] * 40_000, dtype=object))
    repo.commit(namespace=namespace)
    with raw_connection(repo) as conn:
        rows = conn.execute(select(schema.chunks.c.codec, schema.chunks.c.data)).all()
    streams = b"".join(
        zstandard.ZstdDecompressor().decompress(bytes(d)) if codec else bytes(d)
        for codec, d in rows
    )
    for stored in (b"Group", b"_make_enum", b"_create_function", b"strings_from_codes"):
        assert stored in streams
    assert b"stashdb.serialize" in streams and b"stashdb.reducers" in streams
    assert b"stashdb.pickling" not in streams  # the layout is not part of the format


@pytest.mark.parametrize("module", ["stashdb.serialize", "stashdb.reducers"])
def test_the_stored_modules_name_only_what_the_format_lists(module: str) -> None:
    from stashdb.pickling import stored_names

    stored_names.find(module, "__name__")  # imports what defines them
    import sys

    names = {n for n in vars(sys.modules[module]) if not n.startswith("__")}
    expected = {
        "stashdb.serialize": {"Group", "_make_enum", "_create_function", "_set_function_state",
                              "_lru_cached", "_make_type_variable", "_make_newtype"},
        "stashdb.reducers": {"strings_from_codes"},
    }[module]
    assert names == expected
