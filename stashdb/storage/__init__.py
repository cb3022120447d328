"""Storage: rows and bytes of a store, and nothing above them.

Chunks, objects, manifests, commits and refs in SQLite or PostgreSQL (the
format is docs/format.md). Nothing here imports pickle, dill or
`stashdb.pickling`: the storage layer never turns bytes into objects.
`Store` (`stashdb.storage.store`) is the way in.
"""
