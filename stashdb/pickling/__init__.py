"""Pickling: values to pickle streams and back, which names share objects, and previews.

Above storage (which only sees bytes) and below the workspace layer (which
decides what to pickle). `pickler` chooses the C pickler or dill per value,
`grouping` ties names that share mutable objects, `reducers` stores columns of
repeated strings compactly, `preview` describes a value for browsing.
"""
