"""The workspace layer: Python namespaces captured into entries, and entries restored into them.

Above pickling and storage, below `Repo`. `names` selects what a snapshot
holds; `capture` pickles and stores it as entries; `tracker` tells what code
could have changed; `loader` and `restore` bring entries back into a
namespace; `environment` records where a snapshot was made; `main_module` and
`dillfiles` are the ``__main__`` modules and dill files users already have.
"""
