"""The pickling layer: C pickler first, dill only for workspace code; references by name."""

from __future__ import annotations

import collections
import enum
import json
import types

import numpy as np

from stashdb.pickling.grouping import find_groups
from stashdb.pickling.pickler import OUT_OF_BAND_MIN, WorkspaceRefs, dumps, loads


def workspace(**values: object) -> dict[str, object]:
    ns: dict[str, object] = {"__name__": "__main__"}
    ns.update(values)
    return ns


def test_plain_data_and_importable_objects_use_the_c_pickler_by_reference() -> None:
    ns = workspace(data={"a": [1, 2.5, "x"]}, fn=json.dumps, cls=collections.OrderedDict)
    refs = WorkspaceRefs.of(ns, ["data", "fn", "cls"])
    for name in ("data", "fn", "cls"):
        packed = dumps(ns[name], refs, roots=[name])
        assert packed.pickler == "pickle"
    fn = dumps(json.dumps, refs, roots=["fn"])
    assert fn.size < 40  # a reference, not the function's code
    assert b"json" in bytes(fn.parts[0]) and b"dumps" in bytes(fn.parts[0])


def test_workspace_functions_use_dill_by_value_and_others_refer_to_them_by_name() -> None:
    ns = workspace()
    exec("def helper(v):\n    return v + offset\noffset = 1\nhandlers = [helper]\n", ns)
    refs = WorkspaceRefs.of(ns, ["helper", "offset", "handlers"])
    helper = dumps(ns["helper"], refs, roots=["helper"])
    assert helper.pickler == "dill"
    handlers = dumps(ns["handlers"], refs, roots=["handlers"])
    restored_ns: dict[str, object] = {"offset": 10}
    restored_helper = loads(
        helper.parts, module="__main__", resolve=restored_ns.__getitem__, namespace=restored_ns
    )
    restored_ns["helper"] = restored_helper
    assert restored_helper(1) == 11  # its globals are the namespace restored into
    restored_handlers = loads(
        handlers.parts, module="__main__", resolve=restored_ns.__getitem__, namespace=restored_ns
    )
    assert restored_handlers == [restored_helper]  # the same object, by name


def test_large_buffers_leave_the_stream_without_a_copy() -> None:
    array = np.arange(OUT_OF_BAND_MIN)  # 8 bytes each: well above the threshold
    small = np.arange(10)
    refs = WorkspaceRefs.of(workspace(), [])
    packed = dumps(array, refs, roots=["array"])
    assert len(packed.parts) == 2
    buffer = packed.parts[1]
    assert isinstance(buffer, memoryview)
    assert np.shares_memory(np.frombuffer(buffer, dtype=array.dtype), array)
    assert len(dumps(small, refs, roots=["small"]).parts) == 1


def test_grouping_walk_handles_cycles_and_deep_nesting() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    module = types.ModuleType("m")
    assert find_groups({"cycle": cycle, "deep": deep, "m": module}) == [["cycle"], ["deep"], ["m"]]


class Label(str, enum.Enum):
    RED = "red"


def round_trip(value: object) -> tuple[object, int]:
    ns = workspace(v=value)
    packed = dumps(value, WorkspaceRefs.of(ns, ["v"]), roots=["v"])
    parts = [bytes(packed.parts[0])] + [bytearray(memoryview(p).cast("B")) for p in packed.parts[1:]]
    back = loads(parts, module="__main__", resolve=lambda name: None, namespace={})
    return back, len(parts[0])


def test_a_column_of_repeated_strings_is_stored_as_codes_and_comes_back_exact() -> None:
    import pandas as pd

    rng = np.random.default_rng(3)
    cities = rng.choice(["paris", "lima", "oslo", "ünïcode", ""], 200_000).astype(object)
    grid = cities.reshape(2, 100_000)  # an object block of a DataFrame is 2-D
    for array in (cities, grid):
        back, stream = round_trip(array)
        assert isinstance(back, np.ndarray) and back.dtype == object
        assert back.shape == array.shape and back.flags.c_contiguous and back.flags.writeable
        assert (back == array).all()
        assert stream < 10_000  # five strings and a few names; the codes went out of band
    frame = pd.DataFrame({"city": cities, "as_object": pd.Series(cities, dtype=object)})
    back, _ = round_trip(frame)
    assert back.equals(frame) and list(back.dtypes) == list(frame.dtypes)


def test_strings_that_do_not_repeat_or_are_not_all_strings_pickle_as_numpy_does() -> None:
    distinct = np.array([f"user {i}" for i in range(100_000)], dtype=object)
    mixed = np.array(["a", None] * 50_000, dtype=object)
    small = np.array(["a", "b"] * 100, dtype=object)
    # Equal to a plain string but not one: each must come back as what it was.
    subclassed = np.array([Label.RED, "red", np.str_("blue"), "blue"] * 25_000, dtype=object)
    for array in (distinct, mixed, small, subclassed):
        back, stream = round_trip(array)
        assert back.dtype == object and (back == array).all()
        assert [type(x) for x in back[:4]] == [type(x) for x in array[:4]]
        assert stream > array.size  # one string at a time, in the stream
