"""Safe loading: unpickling that lets only plain data, numpy and pandas come back.

Loading a pickle runs code. The stream names callables by module and name and
the unpickler imports and calls them with arguments the stream chooses:
``os.system("…")`` takes a dozen bytes. A snapshot someone else wrote (a shared
store, a bundle, a copied database) must not get to run code in this process
just by being checked out, so `safe_loads` unpickles with an allow-list of
globals, as ``torch.load(weights_only=True)`` does.

Every global the stream names is checked by its module and name (`allowed`)
*before* anything is imported or called; a name not on the list raises
`UnsafeGlobal`, and so does every persistent id (stashdb uses them only for
the workspace's own classes and functions, and its namespace). What is allowed
are constructors of data: built-in containers and scalars, a few value types
of the standard library, numpy arrays, dtypes and scalars, pandas frames,
series, indexes, arrays, dtypes and scalars, and the two stashdb names that
plain data is stored with. Functions, classes and instances of the workspace's
own (or any library's) classes are refused: they are code, or run it.

What this does not promise: the allowed constructors take whatever arguments
the stream gives them. Nothing outside the list can be reached that way (none
imports what a stream names, opens files or evaluates code, and attribute
look-ups go through a checked ``getattr``), but a hostile stream can still
build data that is wrong or inconsistent, such as a MultiIndex whose codes are
unchecked (pandas skips that check when unpickling). Such a value may misbehave
when used; it cannot run code while loading. Nor does the C unpickler let us
see what pickle's BUILD is applied to: a stream can set attributes of an
allowed Python class or function itself (``pandas.Index``,
``fractions.Fraction``) for the whole process, though only to values it may
build.
"""

from __future__ import annotations

import _compat_pickle
import copyreg
import io
import pickle
import pickletools
import sys
from typing import Any

from stashdb.errors import UnsafeGlobal
from stashdb.pickling import stored_names

__all__ = [
    "ALLOWED_ATTRIBUTES", "ALLOWED_GLOBALS", "SAFE_MODULES", "allowed", "may_import", "safe_loads",
]

#: The globals safe loading lets a stream name, as "module.qualname".
ALLOWED_GLOBALS = frozenset({
    # Python's own data types: calling one builds a value from values, nothing more.
    # (Not getattr, eval, exec, __import__, open, compile, type or object: those
    # reach or build code. A pickle of type(None) names builtins.type: refused.)
    "builtins.int", "builtins.float", "builtins.complex", "builtins.bool", "builtins.str",
    "builtins.bytes", "builtins.bytearray", "builtins.list", "builtins.tuple", "builtins.dict",
    "builtins.set", "builtins.frozenset", "builtins.slice", "builtins.range",
    "builtins.Ellipsis", "builtins.NotImplemented",
    # For streams of older protocols (stashdb writes 5). Protocols 0-2 store bytes
    # as _codecs.encode(text, "latin1"): a codec turns a string into bytes.
    # copyreg._reconstructor(cls, base, state) is how protocols 0-1 store
    # instances: it calls base.__new__(cls, state), and cls and base are globals
    # of the stream, so they had to pass this list too (builtins.object, the base
    # of every plain class, does not).
    "_codecs.encode", "copyreg._reconstructor",
    # Standard library value types. A defaultdict's default_factory is a global of
    # the stream as well, so only an allowed type can be one.
    "collections.OrderedDict", "collections.defaultdict", "collections.deque",
    "collections.Counter",
    "datetime.date", "datetime.time", "datetime.datetime", "datetime.timedelta",
    "datetime.timezone",
    "decimal.Decimal", "fractions.Fraction", "uuid.UUID",
    # Time zones that datetimes and pandas hold. ZoneInfo(key) and pytz's loaders
    # read the zone from the system's tz database and refuse keys that are paths
    # (dateutil's tzfile, which opens a path it is given, is left out).
    # ZoneInfo pickles as getattr(ZoneInfo, "_unpickle"): see ALLOWED_ATTRIBUTES.
    "zoneinfo.ZoneInfo",
    "pytz._p", "pytz._UTC", "pytz.FixedOffset",
    "dateutil.tz.tz.tzutc", "dateutil.tz.tz.tzoffset",
    "dateutil.relativedelta.relativedelta",  # what a pandas DateOffset holds
    # numpy arrays and dtypes. _reconstruct and ndarray.__setstate__ build an array
    # from a shape, a dtype and bytes (checking their sizes), _frombuffer wraps an
    # out-of-band buffer (protocol 5), scalar builds a scalar from its bytes.
    # numpy refuses object arrays from raw bytes: their elements are pickled one
    # by one, through this same list. numpy 1.x names numpy.core, 2.x numpy._core.
    "numpy.ndarray", "numpy.dtype",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
    # (numpy's scalar types, numpy.float64 …: `_numpy_scalar_types`.)
    # pandas containers, arrays and dtypes. pandas 3 pickles them by their public
    # names (pandas.DataFrame), pandas 2 by the module that defines them
    # (pandas.core.frame.DataFrame); stores hold both. Each is a class whose
    # constructor or __setstate__ takes data: blocks, axes, codes, values.
    "pandas.DataFrame", "pandas.core.frame.DataFrame",
    "pandas.Series", "pandas.core.series.Series",
    "pandas.Index", "pandas.core.indexes.base.Index",
    "pandas.RangeIndex", "pandas.core.indexes.range.RangeIndex",
    "pandas.MultiIndex", "pandas.core.indexes.multi.MultiIndex",
    "pandas.DatetimeIndex", "pandas.core.indexes.datetimes.DatetimeIndex",
    "pandas.TimedeltaIndex", "pandas.core.indexes.timedeltas.TimedeltaIndex",
    "pandas.PeriodIndex", "pandas.core.indexes.period.PeriodIndex",
    "pandas.IntervalIndex", "pandas.core.indexes.interval.IntervalIndex",
    "pandas.CategoricalIndex", "pandas.core.indexes.category.CategoricalIndex",
    "pandas.Categorical", "pandas.core.arrays.categorical.Categorical",
    "pandas.arrays.DatetimeArray", "pandas.core.arrays.datetimes.DatetimeArray",
    "pandas.arrays.TimedeltaArray", "pandas.core.arrays.timedeltas.TimedeltaArray",
    "pandas.arrays.PeriodArray", "pandas.core.arrays.period.PeriodArray",
    "pandas.arrays.IntervalArray", "pandas.core.arrays.interval.IntervalArray",
    "pandas.arrays.StringArray", "pandas.core.arrays.string_.StringArray",
    "pandas.arrays.IntegerArray", "pandas.core.arrays.integer.IntegerArray",
    "pandas.arrays.FloatingArray", "pandas.core.arrays.floating.FloatingArray",
    "pandas.arrays.BooleanArray", "pandas.core.arrays.boolean.BooleanArray",
    "pandas.arrays.SparseArray", "pandas.core.arrays.sparse.array.SparseArray",
    "pandas.arrays.NumpyExtensionArray", "pandas.core.arrays.numpy_.NumpyExtensionArray",
    "pandas.CategoricalDtype", "pandas.DatetimeTZDtype", "pandas.PeriodDtype",
    "pandas.IntervalDtype", "pandas.SparseDtype",
    "pandas.core.dtypes.dtypes.CategoricalDtype", "pandas.core.dtypes.dtypes.DatetimeTZDtype",
    "pandas.core.dtypes.dtypes.PeriodDtype", "pandas.core.dtypes.dtypes.IntervalDtype",
    "pandas.core.dtypes.dtypes.SparseDtype", "pandas.core.dtypes.dtypes.NumpyEADtype",
    "pandas.StringDtype", "pandas.core.arrays.string_.StringDtype",
    "pandas.BooleanDtype", "pandas.core.arrays.boolean.BooleanDtype",
    *(
        name
        for kind in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64")
        for name in (f"pandas.{kind}Dtype", f"pandas.core.arrays.integer.{kind}Dtype")
    ),
    "pandas.Float32Dtype", "pandas.core.arrays.floating.Float32Dtype",
    "pandas.Float64Dtype", "pandas.core.arrays.floating.Float64Dtype",
    # How pandas rebuilds them: the block managers (classes, whose __setstate__
    # makes blocks of arrays), and functions that call a class the stream names
    # (itself allowed) with the pickled fields, or check that the class is a
    # subclass of the right base (the __pyx_unpickle_* functions Cython writes).
    "pandas.core.internals.managers.BlockManager",
    "pandas.core.internals.managers.SingleBlockManager",
    "pandas._libs.internals._unpickle_block",
    "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
    "pandas._libs.interval.__pyx_unpickle_IntervalMixin",
    "pandas._libs.sparse.IntIndex", "pandas._libs.sparse.BlockIndex",
    "pandas.core.indexes.base._new_Index",
    "pandas.core.indexes.datetimes._new_DatetimeIndex",
    "pandas.core.indexes.timedeltas._new_TimedeltaIndex",
    "pandas.core.indexes.interval._new_IntervalIndex",
    # pandas scalars: a Timestamp or Timedelta from its integer value, unit and
    # zone, NaT and NA (singletons), Period and Interval from their fields.
    "pandas._libs.tslibs.timestamps._unpickle_timestamp",
    "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
    "pandas._libs.tslibs.nattype._nat_unpickle", "pandas._libs.tslibs.nattype.__nat_unpickle",
    "pandas.NA", "pandas._libs.missing.NA",
    "pandas.Period", "pandas._libs.tslibs.period.Period",
    "pandas.Interval", "pandas._libs.interval.Interval",
    # pandas date offsets (a DatetimeIndex's freq): classes made from their fields.
    "pandas.DateOffset",
    *(
        f"pandas._libs.tslibs.offsets.{name}"
        for name in (
            "DateOffset", "Day", "Hour", "Minute", "Second", "Milli", "Micro", "Nano",
            "BusinessDay", "BusinessHour", "CustomBusinessDay", "CustomBusinessHour",
            "MonthBegin", "MonthEnd", "BusinessMonthBegin", "BusinessMonthEnd",
            "CustomBusinessMonthBegin", "CustomBusinessMonthEnd", "SemiMonthBegin",
            "SemiMonthEnd", "Week", "WeekOfMonth", "LastWeekOfMonth", "QuarterBegin",
            "QuarterEnd", "BQuarterBegin", "BQuarterEnd", "HalfYearBegin", "HalfYearEnd",
            "BHalfYearBegin", "BHalfYearEnd", "YearBegin", "YearEnd", "BYearBegin",
            "BYearEnd", "FY5253", "FY5253Quarter", "Easter",
        )
    ),
    # Not pyarrow: pandas 3 keeps str columns in Arrow arrays when pyarrow is
    # installed, and pyarrow.lib._restore_array builds an array from buffers it
    # does not validate (offsets past a buffer's end read memory out of bounds).
    # Those values are refused.
    #
    # stashdb's own stored names (docs/format.md). Group is how names that share
    # objects are stored together: a tuple of names and a tuple of values (the
    # values pass this list themselves). strings_from_codes rebuilds a column of
    # repeated strings as uniques.take(codes).reshape(shape), on arrays of the
    # stream. Not _create_function, _make_enum or _set_function_state (they build
    # code), nor stashdb.errors._rebuilt (a StashError is not plain data).
    "stashdb.serialize.Group",
    "stashdb.reducers.strings_from_codes",
})

#: Attributes the checked ``getattr`` may look up, as "module.class.attribute".
#: A bound classmethod pickles as getattr(cls, name), and pandas 3 holds its time
#: zones as zoneinfo.ZoneInfo, whose pickle is getattr(ZoneInfo, "_unpickle")
#: (key, 1). The real getattr is never allowed: getattr(DataFrame, "to_csv")
#: would write a file.
ALLOWED_ATTRIBUTES = frozenset({"zoneinfo.ZoneInfo._unpickle"})

#: numpy's scalar types when numpy is not loaded yet (it is, once a stream names
#: numpy._core: loading an array imports it).
_NUMPY_SCALARS = frozenset({
    "bool", "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
    "uint64", "longlong", "ulonglong", "float16", "float32", "float64", "longdouble",
    "complex64", "complex128", "clongdouble", "datetime64", "timedelta64", "str_", "bytes_",
    "void", "object_",
})
_numpy_scalars: frozenset[str] | None = None


def _numpy_scalar_types() -> frozenset[str]:
    # The names this numpy gives its scalar types (they differ by version and
    # platform: numpy.bool_ became numpy.bool): numpy.float64(x) builds a number.
    global _numpy_scalars
    if _numpy_scalars is None:
        numpy = sys.modules.get("numpy")
        if numpy is None:
            return _NUMPY_SCALARS
        _numpy_scalars = _NUMPY_SCALARS | {
            t.__qualname__ for t in numpy.sctypeDict.values() if t.__module__ == "numpy"
        }
    return _numpy_scalars


def allowed(module: str, qualname: str) -> bool:
    """Whether safe loading lets a stream name the global ``module.qualname``.

    Exact names only: ``builtins.dict.fromkeys`` (a dotted name, which protocol 4
    resolves attribute by attribute) is not ``builtins.dict``.
    """
    if f"{module}.{qualname}" in ALLOWED_GLOBALS:
        return True
    return module == "numpy" and qualname in _numpy_scalar_types()


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, stream: Any, buffers: list[Any], name: str) -> None:
        super().__init__(io.BytesIO(stream), buffers=buffers)
        self._name = name

    def find_class(self, module: str, qualname: str) -> Any:
        # Protocols 0-2 name builtins as Python 2 did (__builtin__.set,
        # copy_reg._reconstructor); the C unpickler renames them, so check the new names.
        module, qualname = _compat_pickle.NAME_MAPPING.get((module, qualname), (module, qualname))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, qualname) == ("builtins", "getattr"):
            return self._checked_getattr
        if not allowed(module, qualname):
            raise UnsafeGlobal(self._name, f"{module}.{qualname}")  # before any import
        if module.startswith("stashdb."):
            # As the real loader finds them, without stashdb.serialize being importable.
            return stored_names.find(module, qualname)
        return super().find_class(module, qualname)

    def persistent_load(self, pid: Any) -> Any:
        # stashdb's persistent ids stand for the workspace's own classes and
        # functions, and its namespace: code, all of them.
        shown = repr(pid)
        raise UnsafeGlobal(self._name, f"persistent id {shown[:80]}")

    def _checked_getattr(self, obj: Any, attribute: Any) -> Any:
        # ``obj`` came out of this stream, so a class here passed find_class.
        if isinstance(obj, type):
            owner = f"{obj.__module__}.{obj.__qualname__}"
            if f"{owner}.{attribute}" in ALLOWED_ATTRIBUTES and allowed(
                obj.__module__, obj.__qualname__
            ):
                return getattr(obj, attribute)
            raise UnsafeGlobal(self._name, f"{owner}.{attribute}")
        raise UnsafeGlobal(
            self._name, f"builtins.getattr({type(obj).__qualname__} object, {attribute!r})"
        )


def _check_extensions(stream: Any, name: str) -> None:
    # EXT1/EXT2/EXT4 name a global by a number given with copyreg.add_extension.
    # The unpickler asks find_class about a number only the first time this
    # process loads it, then serves it from copyreg's cache. Nothing registers
    # numbers in practice, so the stream is scanned only when the cache holds some.
    if not getattr(copyreg, "_extension_cache", None):
        return
    registry: dict[Any, tuple[str, str]] = getattr(copyreg, "_inverted_registry", {})
    for opcode, arg, _ in pickletools.genops(io.BytesIO(stream)):
        if opcode.name in ("EXT1", "EXT2", "EXT4"):
            module, qualname = registry.get(arg, ("copyreg", f"extension {arg}"))
            if not allowed(module, qualname):
                raise UnsafeGlobal(name, f"{module}.{qualname}")


def safe_loads(parts: list[Any], *, name: str) -> Any:
    """Unpickle an object's parts, letting the stream name only `ALLOWED_GLOBALS`.

    Args:
        parts: the pickle stream, then its out-of-band buffers (protocol 5
            PickleBuffers or bytes-like objects).
        name: the variable being restored, for the error.

    Raises:
        UnsafeGlobal: the stream names a global that is not allowed, or holds a
            persistent id; nothing it names was imported or called.
    """
    stream, *buffers = parts
    _check_extensions(stream, name)
    return _SafeUnpickler(stream, buffers, name).load()


#: Modules safe loading imports for a module entry (``import numpy as np`` in a
#: snapshot): the libraries whose data it loads, and standard-library modules
#: whose import runs nothing but definitions. Any other module is imported only
#: if this process has it already: a module's import runs its code.
SAFE_MODULES = frozenset({
    "numpy", "pandas", "math", "cmath", "json", "re", "datetime", "collections",
    "decimal", "fractions", "uuid", "itertools", "functools", "operator", "statistics",
    "random", "string", "time", "calendar", "zoneinfo", "enum", "dataclasses", "typing",
})


def may_import(module: str) -> bool:
    """Whether safe loading may import ``module`` for a module entry."""
    import sys

    return module in sys.modules or module in SAFE_MODULES
