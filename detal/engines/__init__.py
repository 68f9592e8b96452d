"""Scoring engines: where the detector's scoring pass runs (config `scoring.engine`).

- `local`: `detal.detector.Scorer` in this process (no module here: `scoring.make_scorer` builds it);
- `ray`: `ray_scoring.RayScorer`, the same Scorer inside Ray Data actors on a Ray cluster.

Both stream `Prediction`s in input order through the same interface (`names`, `iter_predictions`,
`predict`, `close`), so the round and the strategies never know which engine scored. Ray is imported
only in `ray_scoring`.
"""
