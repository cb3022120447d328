"""Values committed by one interpreter come back intact in a fresh one."""

from __future__ import annotations

from pathlib import Path

from conftest import last_json, run_python

WRITE = '''
import collections, dataclasses, datetime, decimal, enum, fractions, json, os, pathlib
import numpy as np
import pandas as pd
import stashdb

i = 42
big = 2**100
f = 3.25
s = "héllo"
by = b"\\x00\\xff"
nested = {"a": [1, 2, {"b": (3, 4)}], "c": {5, 6}}
fs = frozenset({1, 2})
when = datetime.datetime(2026, 11, 22, 5, 30, tzinfo=datetime.timezone.utc)
day = datetime.date(2026, 1, 2)
money = decimal.Decimal("10.25")
ratio = fractions.Fraction(3, 7)
path = pathlib.PurePosixPath("/tmp/x")
counter = collections.Counter("banana")
ordered = collections.OrderedDict(b=1, a=2)

@dataclasses.dataclass
class Point:
    x: int
    y: int
    def norm(self):
        return (self.x ** 2 + self.y ** 2) ** 0.5

class Color(enum.Enum):
    RED = 1
    GREEN = 2
    def label(self):
        return self.name.lower()

Pair = collections.namedtuple("Pair", "left right")

class Account:
    rate = 0.5
    def __init__(self, owner):
        self.owner = owner
    def interest(self, amount):
        return amount * self.rate * scale

scale = 10

def helper(v):
    return v * scale

square = lambda v: v * v

def make_adder(n):
    def add(v):
        return v + n
    return add

add5 = make_adder(5)
p = Point(3, 4)
points = [Point(1, 1), Point(2, 2)]
color = Color.GREEN
pair = Pair(1, "two")
account = Account("ada")
arr = np.arange(12, dtype=np.float32).reshape(3, 4)
big_arr = np.random.default_rng(0).random(200_000)
df = pd.DataFrame({"n": [1, 2, 3], "s": ["x", "y", "z"], "t": pd.date_range("2026-01-01", periods=3)})
series = pd.Series([1.5, 2.5], name="vals")
mod_json = json
mod_path = os.path

commit = stashdb.commit("everything")
print(json.dumps({"skipped": [s.name for s in commit.skipped]}))
'''

READ = '''
import datetime, decimal, fractions, json, pathlib, collections
import numpy as np
import stashdb

report = stashdb.checkout()
assert not report.failed, report.failed
assert i == 42 and big == 2**100 and f == 3.25 and s == "héllo" and by == b"\\x00\\xff"
assert nested == {"a": [1, 2, {"b": (3, 4)}], "c": {5, 6}} and fs == frozenset({1, 2})
assert when == datetime.datetime(2026, 11, 22, 5, 30, tzinfo=datetime.timezone.utc)
assert day == datetime.date(2026, 1, 2)
assert money == decimal.Decimal("10.25") and ratio == fractions.Fraction(3, 7)
assert path == pathlib.PurePosixPath("/tmp/x")
assert counter == collections.Counter("banana")
assert list(ordered) == ["b", "a"]
assert isinstance(p, Point) and p.norm() == 5.0 and p == Point(3, 4)
assert all(isinstance(q, Point) for q in points)
assert color is Color.GREEN and isinstance(color, Color) and color.label() == "green"
assert Color(1) is Color.RED and [c.name for c in Color] == ["RED", "GREEN"]
assert pair == Pair(1, "two") and pair.left == 1 and isinstance(pair, Pair)
assert isinstance(account, Account) and account.interest(2) == 10.0
assert helper(2) == 20
scale = 100   # globals of restored functions are this namespace
assert helper(2) == 200 and account.interest(2) == 100.0
assert square(7) == 49 and add5(1) == 6
assert arr.dtype == np.float32 and arr.shape == (3, 4) and arr[2, 3] == 11
assert np.array_equal(big_arr, np.random.default_rng(0).random(200_000))
assert list(df.columns) == ["n", "s", "t"] and df["s"].tolist() == ["x", "y", "z"]
assert str(df["t"].dtype).startswith("datetime64")
assert series.name == "vals" and series.tolist() == [1.5, 2.5]
assert mod_json is json and mod_path.join("a", "b") == "a/b"
print(json.dumps({"restored": len(report.restored)}))
'''


def test_every_kind_of_value_round_trips_into_a_fresh_interpreter(tmp_path: Path) -> None:
    written = last_json(run_python(WRITE, tmp_path))
    assert written["skipped"] == []
    restored = last_json(run_python(READ, tmp_path))
    assert restored["restored"] >= 35


def test_restored_arrays_are_writable(tmp_path: Path) -> None:
    run_python(
        """
        import numpy as np, stashdb
        a = np.zeros(100_000)
        stashdb.commit()
        """,
        tmp_path,
    )
    run_python(
        """
        import stashdb
        stashdb.checkout()
        a[0] = 1.0
        assert a.sum() == 1.0
        """,
        tmp_path,
    )
