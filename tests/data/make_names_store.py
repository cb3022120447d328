"""How tests/data/store-names.db was made: by stashdb 0.1.0 as it was before the package
was split into layers (commit 920b929), when its stored names were module paths.

A store of format 1 whose pickles name stashdb's own callables
(``stashdb.serialize.Group``, ``_make_enum``, ``_create_function``,
``_set_function_state``, ``stashdb.reducers.strings_from_codes``), and values
that are stashdb's own objects, named by that layout (``stashdb.maintenance
.VerifyReport``, ``stashdb.refs.InvalidRefName``): every later stashdb must
read it (tests/test_format.py). Kept for the record.

    git worktree add /tmp/old 920b929 && PYTHONPATH=/tmp/old \\
        python tests/data/make_names_store.py tests/data/store-names.db
"""

import enum
import os
import sqlite3
import sys
import tempfile

import numpy as np

import stashdb

target = sys.argv[1]
work = tempfile.mkdtemp()
repo = stashdb.init(work)


class Color(enum.Enum):
    RED = 1
    BLUE = 2


shared = [1, 2, 3]
namespace = {"__name__": "__main__", "factor": 3, "Color": Color}
exec("def scale(v):\n    return v * factor\n", namespace)
namespace.update(
    numbers=shared,
    holder={"k": shared},
    cities=np.array(["Oslo", "Lima", "Pune"] * 30_000, dtype=object),
    favourite=Color.BLUE,
    report=repo.verify(),
)
from stashdb.refs import InvalidRefName  # noqa: E402  (stashdb 0.1.0's place for it)

namespace["refused"] = InvalidRefName("bad name")
repo.commit("names", namespace=namespace)
repo.close()

source = sqlite3.connect(os.path.join(work, ".stashdb", "stash.db"))
source.execute("PRAGMA page_size = 4096")  # small fixture file
source.execute("VACUUM")
source.execute(f"VACUUM INTO '{target}'")
print("wrote", target)
