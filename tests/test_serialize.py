"""The pickling layer: C pickler first, dill only for workspace code; references by name."""

from __future__ import annotations

import collections
import json
import types

import numpy as np

from stashdb.serialize import OUT_OF_BAND_MIN, WorkspaceRefs, dumps, find_groups, loads


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
