"""Safe loading: plain data, numpy and pandas come back; code, and pickles that run it, do not.

Values are pickled as the store pickles them (`dumps`: the C pickler at
protocol 5 with out-of-band buffers, dill for what it cannot do), or by plain
``pickle.dumps``; hostile streams are crafted with ``__reduce__``. Every hostile
stream would create a file in ``tmp_path`` if it ran: the directory must stay
empty.
"""

from __future__ import annotations

import collections
import copyreg
import datetime
import decimal
import fractions
import io
import os
import pickle
import subprocess
import sys
import uuid
import zoneinfo
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stashdb.errors import RefNotFound, RestoreError, UnsafeGlobal
from stashdb.pickling.pickler import Group, WorkspaceRefs, dumps, dumps_alias, group_values
from stashdb.pickling.safe import allowed, safe_loads

NO_WORKSPACE = WorkspaceRefs.of({"__name__": "__main__"}, [])
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
PLUS_3 = datetime.timezone(datetime.timedelta(hours=3), "EAT")
SYSTEM = f"{os.system.__module__}.system"  # posix.system


def stored_parts(value: Any, roots: tuple[str, ...] = ("x",)) -> list[Any]:
    """The parts the store would write for ``value``, by the C pickler."""
    pickled = dumps(value, NO_WORKSPACE, roots=roots)
    assert pickled.pickler == "pickle"
    return pickled.parts


def roundtrip(value: Any) -> Any:
    return safe_loads(stored_parts(value), name="x")


def refused(parts: list[Any], name: str = "x") -> UnsafeGlobal:
    with pytest.raises(UnsafeGlobal) as caught:
        safe_loads(parts, name=name)
    assert isinstance(caught.value, RestoreError)
    assert caught.value.name == name
    return caught.value


# --- what comes back ------------------------------------------------------------------------

PLAIN = {
    "int": 42,
    "big int": 2**200 + 1,
    "negative": -7,
    "float": 1.5,
    "inf": float("inf"),
    "complex": 3 - 4j,
    "str": "héllo ✓",
    "bytes": b"\x00\xffbytes",
    "bytearray": bytearray(b"mutable"),
    "none": None,
    "bools": (True, False),
    "nested": {"a": [1, 2.0, ("t", None)], "b": {"c": {1, 2}, "d": frozenset({"x"})}, 3: [[]]},
    "slice range ellipsis": [slice(1, 10, 2), range(3, 30, 3), ..., NotImplemented],
    "datetimes": [
        datetime.datetime(2024, 2, 29, 12, 30, 1, 5),
        datetime.date(2024, 1, 1),
        datetime.time(23, 59, 58, 1),
        datetime.timedelta(days=3, seconds=5, microseconds=7),
        datetime.timezone.utc,
        PLUS_3,
        datetime.datetime(2024, 6, 1, 8, tzinfo=PLUS_3),
        datetime.datetime(2024, 6, 1, 8, tzinfo=PARIS),
        datetime.datetime(2024, 6, 1, 8, tzinfo=datetime.timezone.utc),
    ],
    "decimal fraction uuid": [
        decimal.Decimal("3.14159265358979323846"),
        decimal.Decimal("-Infinity"),
        fractions.Fraction(22, 7),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        uuid.uuid4(),
    ],
    "collections": [
        collections.OrderedDict([("z", 1), ("a", 2)]),
        collections.deque([1, 2, 3], maxlen=5),
        collections.Counter("abracadabra"),
    ],
}


@pytest.mark.parametrize("value", list(PLAIN.values()), ids=list(PLAIN))
def test_plain_data_comes_back(value: Any) -> None:
    back = roundtrip(value)
    assert back == value
    assert type(back) is type(value)


def test_collections_keep_their_kind() -> None:
    groups: collections.defaultdict[str, list[int]] = collections.defaultdict(list)
    groups["a"].append(1)
    counts = collections.defaultdict(int, {"x": 2})
    queue = collections.deque([1, 2], maxlen=3)
    ordered = collections.OrderedDict([("b", 1), ("a", 2)])
    back_groups, back_counts, back_queue, back_ordered = roundtrip(
        [groups, counts, queue, ordered]
    )
    assert back_groups == groups and back_groups.default_factory is list
    back_groups["new"].append(2)  # the factory works
    assert back_counts == counts and back_counts.default_factory is int
    assert back_queue == queue and back_queue.maxlen == 3
    assert list(back_ordered) == ["b", "a"]


def test_shared_objects_stay_shared() -> None:
    inner = [1, 2]
    back = roundtrip({"a": inner, "b": inner, "c": (inner,)})
    assert back["a"] is back["b"] is back["c"][0]


SMALL_ARRAYS = {
    "float64": np.linspace(0, 1, 11),
    "int32": np.arange(-5, 5, dtype=np.int32),
    "bool": np.array([True, False, True]),
    "structured": np.array(
        [(1, 2.5, b"ab"), (2, -1.0, b"cd")], dtype=[("id", "<i4"), ("x", "<f8"), ("tag", "S2")]
    ),
    "datetime64": np.array(["2024-01-01", "2024-02-29", "NaT"], dtype="datetime64[ns]"),
    "timedelta64": np.array([1, 2, 3], dtype="timedelta64[s]"),
    "unicode": np.array(["a", "ßö", "✓✓✓"]),
    "object": np.array(["x", 1, None, 2.5], dtype=object),
    "2-D": np.arange(12, dtype=np.int16).reshape(3, 4),
    "Fortran order": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "empty": np.empty((0, 3), dtype=np.float32),
    "big-endian": np.arange(4, dtype=">u4"),
    "big datetime64": np.arange(100_000).astype("datetime64[s]"),  # numpy keeps it in band
}


@pytest.mark.parametrize("array", list(SMALL_ARRAYS.values()), ids=list(SMALL_ARRAYS))
def test_numpy_arrays_come_back(array: Any) -> None:
    back = roundtrip(array)
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


BIG_ARRAYS = {
    "float64": np.random.default_rng(0).random(500_000),
    "int32 2-D": np.arange(600 * 600, dtype=np.int32).reshape(600, 600),
    "Fortran": np.asfortranarray(np.arange(400 * 300, dtype=np.float64).reshape(400, 300)),
    "bool": np.arange(200_000) % 3 == 0,
    "structured": np.zeros(50_000, dtype=[("a", "<i4"), ("b", "<f8")]),
    "complex128": np.arange(100_000) * (1 + 1j),
}


@pytest.mark.parametrize("array", list(BIG_ARRAYS.values()), ids=list(BIG_ARRAYS))
def test_big_arrays_come_back_from_out_of_band_buffers(array: Any) -> None:
    parts = stored_parts(array)
    assert len(parts) > 1  # the data left the stream
    back = safe_loads(parts, name="x")
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_plain_pickle_buffers_come_back() -> None:
    arrays = [BIG_ARRAYS["float64"], BIG_ARRAYS["Fortran"], SMALL_ARRAYS["structured"]]
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(arrays, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 3
    for back, array in zip(safe_loads([stream, *buffers], name="x"), arrays):
        np.testing.assert_array_equal(back, array)


NUMPY_SCALARS = [
    np.float64(1.25), np.float32(-2.5), np.float16(0.5), np.int64(-(2**40)), np.int8(-3),
    np.uint16(65535), np.bool_(True), np.complex128(1 + 2j),
    np.datetime64("2024-03-01T12:00", "m"), np.timedelta64(90, "s"), np.str_("numpy str"),
    np.bytes_(b"nb"),
]


@pytest.mark.parametrize("scalar", NUMPY_SCALARS, ids=lambda s: type(s).__name__)
def test_numpy_scalars_come_back(scalar: Any) -> None:
    back = roundtrip(scalar)
    assert type(back) is type(scalar)
    assert back == scalar


def test_numpy_types_and_dtypes_come_back() -> None:
    values = [np.float64, np.int32, np.dtype("f8"), np.dtype("M8[ns]"), np.dtype([("a", "<i2")])]
    assert roundtrip(values) == values


def _frame() -> pd.DataFrame:
    index = pd.date_range("2024-03-30", periods=4, freq="h", tz="Europe/Paris", name="when")
    return pd.DataFrame(
        {
            "int": np.arange(4, dtype=np.int64),
            "float": [0.5, np.nan, 2.5, 3.5],
            "str": ["a", "b", None, "d"],
            "object": pd.Series([1, "two", 3.0, None], dtype=object, index=index),
            "bool": [True, False, True, True],
            "category": pd.Categorical(["lo", "hi", "lo", "mid"], categories=["lo", "mid", "hi"]),
            "naive": pd.date_range("2024-01-01", periods=4),
            "utc": pd.date_range("2024-01-01", periods=4, tz="UTC"),
            "delta": pd.to_timedelta([1, 2, 3, 4], unit="D"),
            "nullable": pd.array([1, None, 3, 4], dtype="Int64"),
            "boolean": pd.array([True, None, False, True], dtype="boolean"),
            "period": pd.period_range("2024-01", periods=4, freq="M"),
        },
        index=index,
    )


def test_dataframe_of_mixed_dtypes_comes_back() -> None:
    frame = _frame()
    back = roundtrip(frame)
    pd.testing.assert_frame_equal(back, frame)
    assert back.index.freq == frame.index.freq
    assert str(back.index.tz) == "Europe/Paris"


def test_dataframes_with_other_indexes_come_back() -> None:
    frames = [
        pd.DataFrame({"v": [1.0, 2.0, 3.0, 4.0]}, index=pd.MultiIndex.from_product(
            [["a", "b"], [1, 2]], names=["letter", "number"]
        )),
        pd.DataFrame({"v": [1, 2]}, index=pd.CategoricalIndex(["x", "y"])),
        pd.DataFrame(np.arange(6).reshape(2, 3), columns=pd.MultiIndex.from_tuples(
            [("a", 1), ("a", 2), ("b", 1)]
        )),
        pd.DataFrame({"v": [1, 2]}, index=pd.interval_range(0, 2)),
        pd.DataFrame(),
    ]
    for frame, back in zip(frames, roundtrip(frames)):
        pd.testing.assert_frame_equal(back, frame)


def test_big_dataframe_with_out_of_band_columns_and_string_codes() -> None:
    n = 200_000
    frame = pd.DataFrame({
        "x": np.arange(n, dtype=np.float64),
        "city": np.array(["Paris", "Oslo", "Lima"] * (n // 3) + ["Paris"] * (n % 3), dtype=object),
        "label": pd.Categorical(["a", "b"] * (n // 2)),
    })
    parts = stored_parts(frame)
    assert len(parts) > 1
    assert b"strings_from_codes" in bytes(parts[0])  # stashdb's stored name for the strings
    pd.testing.assert_frame_equal(safe_loads(parts, name="x"), frame)


def test_series_and_indexes_come_back() -> None:
    series = [
        pd.Series([1.5, 2.5], index=["a", "b"], name="s"),
        pd.Series(pd.Categorical(["x", "y", "x"], ordered=True)),
        pd.Series(pd.date_range("2024", periods=3, tz="Asia/Tokyo")),
        pd.Series([1, None], dtype="Float64"),
    ]
    for s, back in zip(series, roundtrip(series)):
        pd.testing.assert_series_equal(back, s)
    indexes = [
        pd.RangeIndex(3, 30, 3, name="r"),
        pd.Index([3, 1, 2]),
        pd.Index(["a", "b"]),
        pd.MultiIndex.from_arrays([[1, 1, 2], ["a", "b", "a"]], names=["n", "l"]),
        pd.DatetimeIndex(["2024-01-01", "2024-06-01"], tz=PLUS_3),
        pd.CategoricalIndex(["p", "q", "p"]),
        pd.TimedeltaIndex(["1D", "2h"]),
        pd.PeriodIndex(["2024-01", "2024-02"], freq="M"),
        pd.IntervalIndex.from_breaks([0, 1, 5]),
    ]
    backs = roundtrip(indexes)
    for index, back in zip(indexes, backs):
        pd.testing.assert_index_equal(back, index, exact=True)
    assert isinstance(backs[0], pd.RangeIndex)


def test_pandas_scalars_and_categoricals_come_back() -> None:
    values = [
        pd.Timestamp("2024-03-31 02:30", tz="UTC"),
        pd.Timestamp("2024-10-27 03:30", tz="Europe/Paris").tz_convert("UTC"),
        pd.Timestamp("2024-07-14 12:00", tz="Europe/Paris"),
        pd.Timestamp("2024-07-14 12:00", tz=PLUS_3),
        pd.Timestamp("2024-07-14 12:00:00.123456789"),
        pd.Timedelta("1 days 02:03:04.000005"),
        pd.Period("2024-05", freq="M"),
        pd.Interval(0.5, 1.5, closed="left"),
        pd.offsets.MonthEnd(2),
        pd.offsets.BusinessDay(),
        pd.DateOffset(months=1, days=2),
    ]
    back = roundtrip(values)
    assert back == values
    assert [str(v.tz) for v in back[:4]] == ["UTC", "UTC", "Europe/Paris", "EAT"]
    missing = roundtrip([pd.NaT, pd.NA])
    assert missing[0] is pd.NaT and missing[1] is pd.NA
    categorical = pd.Categorical(["b", "a", None, "b"], categories=["b", "a"], ordered=True)
    pd.testing.assert_extension_array_equal(roundtrip(categorical), categorical)


def test_a_group_of_names_comes_back_with_its_sharing() -> None:
    shared = [1, 2, 3]
    frame = pd.DataFrame({"v": shared})
    group = Group(("a", "b", "c"), (shared, {"k": shared}, frame))
    loaded = safe_loads(stored_parts(group, roots=("a", "b", "c")), name="a")
    a, b, c = group_values(loaded)
    assert a == shared and b["k"] is a
    pd.testing.assert_frame_equal(c, frame)


# --- what is refused ------------------------------------------------------------------------


@pytest.fixture
def marker(tmp_path: Path) -> Any:
    """A file a hostile stream would create if it ran; the directory must stay empty."""
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


class Reduces:
    """Pickles as ``callable(*args)``: how a hostile stream is written."""

    def __init__(self, call: Any, *args: Any) -> None:
        self.call = call
        self.args = args

    def __call__(self, *args: Any) -> Any:  # so it can be the callable of another Reduces
        raise AssertionError("never called when pickling")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.call, self.args


class Plain:
    """A class of this (importable) test module: pickled by reference."""

    def __init__(self) -> None:
        self.x = 1


def _hostile(marker: Path) -> dict[str, tuple[Any, str]]:
    """Payloads that would create ``marker``, and the global each must be refused at."""
    touch = f"open({str(marker)!r}, 'w').close()"
    frame = pd.DataFrame({"a": [1]})
    return {
        "os.system": (Reduces(os.system, f"touch {marker}"), SYSTEM),
        "subprocess": (Reduces(subprocess.call, ["touch", str(marker)]), "subprocess.call"),
        "eval": (Reduces(eval, touch), "builtins.eval"),
        "exec": (Reduces(exec, touch), "builtins.exec"),
        "open": (Reduces(open, str(marker), "w"), f"{open.__module__}.open"),
        "compile": (Reduces(compile, touch, "<x>", "exec"), "builtins.compile"),
        # getattr reaching a method that writes a file, and the method by its dotted name.
        "getattr": (
            Reduces(Reduces(getattr, pd.DataFrame, "to_csv"), frame, str(marker)),
            f"{pd.DataFrame.__module__}.DataFrame.to_csv",
        ),
        "dotted name": (
            Reduces(pd.DataFrame.to_csv, frame, str(marker)), "pandas.core.generic.NDFrame.to_csv"
        ),
        "getattr of an instance": (
            Reduces(Reduces(getattr, "x", "join"), ["a", "b"]),
            "builtins.getattr(str object, 'join')",
        ),
        # Hidden inside allowed data: refused all the same.
        "in a list": ([1, {"k": Reduces(os.system, f"touch {marker}")}], SYSTEM),
        "defaultdict factory": (
            collections.defaultdict(Reduces(os.system, f"touch {marker}")), SYSTEM
        ),
        "in an object array": (
            np.array([1, Reduces(eval, touch)], dtype=object), "builtins.eval"
        ),
        "in a DataFrame": (
            pd.DataFrame({"a": [Reduces(exec, touch)]}, dtype=object), "builtins.exec"
        ),
        "in a group": (Group(("a", "b"), ([1], Reduces(eval, touch))), "builtins.eval"),
    }


@pytest.mark.parametrize("case", list(_hostile(Path("MARKER"))))
def test_hostile_pickles_are_refused_before_they_run(marker: Path, case: str) -> None:
    value, global_name = _hostile(marker)[case]
    parts = stored_parts(value)
    assert refused(parts).global_name == global_name
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    assert refused([stream, *buffers]).global_name == global_name
    assert not marker.exists()


@pytest.mark.parametrize("case", ["os.system", "eval", "getattr", "in a DataFrame"])
def test_the_hostile_pickles_do_run_when_loaded_unsafely(tmp_path: Path, case: str) -> None:
    # So that their refusal above means something.
    marker = tmp_path / "MARKER"
    value, _ = _hostile(marker)[case]
    pickle.loads(pickle.dumps(value, protocol=5))
    assert marker.exists()


def test_a_global_is_refused_before_its_module_is_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "stashdb_test_import_marker"
    (tmp_path / f"{module}.py").write_text(
        f"open({str(tmp_path / 'IMPORTED')!r}, 'w').close()\ndef run():\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    stream = b"\x80\x05c" + module.encode() + b"\nrun\n)R."  # GLOBAL module run; call it
    assert refused([stream]).global_name == f"{module}.run"
    assert module not in sys.modules
    assert not (tmp_path / "IMPORTED").exists()


def test_protocol_0_to_4_hostile_pickles_are_refused(marker: Path) -> None:
    for protocol in range(5):
        stream = pickle.dumps(Reduces(os.system, f"touch {marker}"), protocol=protocol)
        assert refused([stream]).global_name == SYSTEM
        stream = pickle.dumps([1, Reduces(eval, "1")], protocol=protocol)  # __builtin__.eval
        assert refused([stream]).global_name == "builtins.eval"


def test_older_protocols_of_plain_data_come_back() -> None:
    # Protocols 0-2 name builtins and copyreg as Python 2 did (__builtin__.set …).
    value = [b"bytes", {1: (2.5, "s")}, {3}, frozenset({4}), collections.OrderedDict(a=1),
             decimal.Decimal("1.5"), datetime.date(2024, 1, 1), np.arange(3.0)]
    for protocol in range(5):
        back = safe_loads([pickle.dumps(value, protocol=protocol)], name="x")
        assert back[:-1] == value[:-1]
        np.testing.assert_array_equal(back[-1], value[-1])


def test_globals_named_by_extension_code_are_refused(marker: Path) -> None:
    # The C unpickler serves an extension code it has loaded before from copyreg's
    # cache, without asking find_class again.
    code = 0x7FFF_FF01
    copyreg.add_extension(os.system.__module__, "system", code)
    try:
        stream = pickle.dumps(Reduces(os.system, f"touch {marker}"), protocol=5)
        assert refused([stream]).global_name == SYSTEM  # through find_class
        pickle.loads(pickle.dumps(os.system, protocol=5))  # now the code is cached
        assert refused([stream]).global_name == SYSTEM  # found by the scan
    finally:
        copyreg.remove_extension(os.system.__module__, "system", code)
        copyreg.clear_extension_cache()


def test_functions_are_refused() -> None:
    for function in [len, print, os.getcwd, np.load, pd.read_pickle]:
        expected = f"{function.__module__}.{function.__qualname__}"
        assert refused(stored_parts(function)).global_name == expected


def _workspace() -> tuple[dict[str, Any], WorkspaceRefs]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(
        "def f(x):\n    return x + 1\n"
        "g = lambda x: x * 2\n"
        "class Point:\n    def __init__(self, x):\n        self.x = x\n"
        "p = Point(1)\n"
        "funcs = [lambda: 1, 2]\n",
        namespace,
    )
    names = ["f", "g", "Point", "p", "funcs"]
    return namespace, WorkspaceRefs.of(namespace, names)


@pytest.mark.parametrize(
    ("name", "global_name"),
    [
        ("f", "stashdb.serialize._create_function"),  # a function of the workspace, by dill
        ("g", "stashdb.serialize._create_function"),  # a lambda
        ("funcs", "stashdb.serialize._create_function"),  # a lambda inside data
        ("Point", "dill._dill._create_type"),  # a class defined in __main__
        ("p", "persistent id ('global', 'Point')"),  # an instance of it
    ],
)
def test_workspace_code_is_refused(name: str, global_name: str) -> None:
    namespace, refs = _workspace()
    pickled = dumps(namespace[name], refs, roots=[name])
    assert pickled.pickler == "dill"
    assert refused(pickled.parts, name=name).global_name == global_name


def test_instances_of_classes_are_refused() -> None:
    plain = f"{Plain.__module__}.Plain"
    assert refused(stored_parts(Plain())).global_name == plain
    assert refused(stored_parts([Plain])).global_name == plain  # the class itself
    # Protocols 0 and 1 go through copyreg._reconstructor, which is allowed: the class is not.
    for protocol in (0, 1):
        assert refused([pickle.dumps(Plain(), protocol=protocol)]).global_name == plain
    # A stashdb error a user kept is not plain data either.
    assert refused(stored_parts(RefNotFound("branch", "x"))).global_name == (
        "stashdb.errors._rebuilt"
    )


def test_persistent_ids_are_refused() -> None:
    assert refused(dumps_alias("f").parts).global_name == "persistent id ('global', 'f')"

    class Persisting(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return "anything" if obj == "secret" else None

    out = io.BytesIO()
    Persisting(out, protocol=5).dump(["public", "secret"])
    assert refused([out.getvalue()]).global_name == "persistent id 'anything'"


# --- the allow-list itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    "global_name",
    [
        "builtins.getattr", "builtins.setattr", "builtins.eval", "builtins.exec",
        "builtins.__import__", "builtins.open", "builtins.compile", "builtins.type",
        "builtins.object", "builtins.len", "io.open", "os.system", SYSTEM,
        "subprocess.Popen", "copyreg.__newobj__", "numpy.load", "numpy.generic",
        "numpy.core.multiarray.fromfile", "pandas.read_pickle", "pandas.read_csv", "pandas.eval",
        "stashdb.serialize._create_function", "stashdb.serialize._make_enum",
        "stashdb.serialize._set_function_state", "stashdb.errors._rebuilt",
        "dill._dill._create_function", "dill._dill._load_type", "pyarrow.lib._restore_array",
        "dateutil.tz.tz.tzfile", "__main__.anything",
    ],
)
def test_risky_globals_are_not_allowed(global_name: str) -> None:
    module, _, qualname = global_name.rpartition(".")
    assert not allowed(module, qualname)


@pytest.mark.parametrize(
    ("module", "qualname"),
    [("builtins", "dict.fromkeys"), ("numpy", "ndarray.tofile"), ("pandas", "DataFrame.to_csv")],
)
def test_attributes_of_allowed_classes_are_not_allowed(module: str, qualname: str) -> None:
    # Protocol 4 resolves a dotted name attribute by attribute: each must be listed itself.
    assert not allowed(module, qualname)


@pytest.mark.parametrize(
    "global_name",
    [
        "builtins.list", "collections.OrderedDict", "datetime.timezone", "uuid.UUID",
        "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
        "numpy.float64", "numpy.longlong", "pandas.DataFrame", "pandas.core.frame.DataFrame",
        "pandas._libs.tslibs.timestamps._unpickle_timestamp", "stashdb.serialize.Group",
        "stashdb.reducers.strings_from_codes",
    ],
)
def test_data_globals_are_allowed(global_name: str) -> None:
    module, _, qualname = global_name.rpartition(".")
    assert allowed(module, qualname)
