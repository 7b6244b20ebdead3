"""``ray._common``: only ``test_utils``, the helpers Ray's tests import."""
