"""Ray's ``ray.util`` names that tutorials use."""

from . import scheduling_strategies as scheduling_strategies  # noqa: F401
