"""`make bench`: the pipeline end to end against the emulators, next to a raw floor (docs/SPEC.md §8).

``python -m bench --help`` lists the options; ``bench.raw_floor`` is the plain-script floor.
"""
