"""Database layer: the tables of a store, engines with their pragmas, migrations."""
