"""Acquisition: which unlabelled images are worth labelling (pure numpy, no model).

`uncertainty`: per-box measures over full class-score vectors and per-image reductions.
`selection`: strategies mapping (pool ids, budget, rng, scoring callback) to chosen ids.
A new measure goes in uncertainty.MEASURES, a new reduction in REDUCTIONS, a new strategy in
selection.STRATEGIES; config names resolve through those registries.
"""
