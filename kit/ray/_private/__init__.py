"""``ray._private``: the few helpers Ray's tests and programs import from it
(``test_utils``, ``utils``); Ray's internals themselves are not there."""
