"""stashdb end to end: commit a workspace, change it, browse history, bring one variable back.

Run it from anywhere: it works in ./quickstart-demo/ (made afresh each run).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import stashdb

demo = Path("quickstart-demo").resolve()
shutil.rmtree(demo, ignore_errors=True)
repo = stashdb.init(demo)
print(f"store: {repo.location}\n")


@dataclass
class Model:
    weights: list[float]

    def predict(self, x: float) -> float:
        return sum(w * x**i for i, w in enumerate(self.weights))


def clean(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["amount"] is not None]


raw = [{"id": i, "amount": None if i % 7 == 0 else i * 1.5} for i in range(10_000)]
rows = clean(raw)
model = Model([0.5, 2.0])
threshold = 0.8
square = lambda v: v * v  # noqa: E731  (lambdas are stored too)

first = repo.commit("cleaned data and a first model", namespace=globals())
print(first, "\n")
repo.tag("cleaned")

# A bad "cell": rows gets clobbered, the model retrained, the threshold tuned.
rows = rows[:10]
model = Model([0.1, 1.0, 0.3])
threshold = 0.9
second = repo.commit("experiment", namespace=globals())
print(second, "\n")

print("log:")
for commit in repo.log():
    print(f"  {commit.short_id}  {commit.message}  tags={list(commit.tags)}")
print()
print(repo.diff("cleaned", "HEAD"), "\n")
print("history of threshold:")
for version in repo.history("threshold"):
    value = version.entry.literal if version.entry else "(removed)"
    print(f"  {version.commit.short_id} {version.status}: {value}")
print()

# Time travel in a fresh interpreter: bring back only `rows` as it was at the tag.
code = textwrap.dedent(
    f"""
    import stashdb
    report = stashdb.checkout("cleaned", only=["rows"], repo={str(demo)!r})
    print(report)
    print("rows restored in a fresh process:", len(rows), "records; first:", rows[0])
    snapshot = stashdb.at("cleaned", repo={str(demo)!r})
    print("model read lazily from the tag predicts", snapshot["model"].predict(2.0))
    """
)
subprocess.run([sys.executable, "-c", code], check=True)
