"""How tests/data/store-rev1.db was made: by stashdb at schema revision 0001.

Kept for the record; running it with a newer stashdb makes a store at the
newest revision instead, which is not what the upgrade tests need.

    python tests/data/make_rev1_store.py tests/data/store-rev1.db
"""

import os
import sqlite3
import sys
import tempfile

import stashdb

target = sys.argv[1]
work = tempfile.mkdtemp()
repo = stashdb.init(work)

shared = [1, 2, 3]
repo.commit("first", namespace={"numbers": shared, "holder": {"k": shared}, "name": "ada"})
repo.tag("v1", message="the first one")


def scale(v):
    return v * factor


factor = 3
repo.commit("second", namespace={"numbers": [4], "scale": scale, "factor": factor, "os": os})
repo.branch("side", "v1")
repo.commit("on side", namespace={"side": True}, branch="side")
repo.close()

source = sqlite3.connect(os.path.join(work, ".stashdb", "stash.db"))
source.execute("PRAGMA page_size = 4096")  # small fixture file
source.execute("VACUUM")
source.execute(f"VACUUM INTO '{target}'")
print("wrote", target)
