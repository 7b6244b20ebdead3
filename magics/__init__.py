"""IPython magics for kit: ``%cluster``, ``%remote`` and ``%%remote``.

``%load_ext kit`` (or ``%load_ext magics``) registers them::

    %cluster start --nodes 2          # a local cluster with two nodes
    %%remote -o total                 # this cell runs as one task
    total = sum(x * x for x in data)  # `data` is shipped from the notebook
    total / len(data)                 # the last expression is the cell's output

The cells run on the current backend (``backends``): kit's runtime, or the Ray
or Dask cluster chosen with ``%cluster connect ray://HOST:PORT`` (``ray:auto``,
``ray:local``) or ``%cluster connect tcp://HOST:PORT`` (``dask:local``).

Layout: ``magic`` (the ``Magics`` subclass: options only), ``cells`` (submit,
wait, bring back), ``analysis`` (free names, compiling; pure), ``shipping``
(how values travel, the put cache), ``output`` (where printed lines go),
``render`` (tables, tracebacks; pure), ``runner`` (the worker
side). This package is imported on workers too (``runner``): importing it
must not import IPython.
"""

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython):
    """Register ``%cluster``, ``%remote`` and ``%%remote`` in ``ipython``.

    Example:
        >>> from IPython.core.interactiveshell import InteractiveShell
        >>> load_ipython_extension(InteractiveShell.instance())  # doctest: +SKIP
    """
    from .magic import KitMagics

    if "KitMagics" not in ipython.magics_manager.registry:  # loading twice keeps the state
        ipython.register_magics(KitMagics)


def unload_ipython_extension(ipython):
    """Nothing to undo: the magics stay until the kernel restarts (IPython cannot drop them)."""


def _register():
    from kit import frontend

    frontend.register("ipython_extension", load_ipython_extension)


_register()
