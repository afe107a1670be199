"""MLflow tracking, by concern (docs/design.md, "Layout"):

- :mod:`~dynpath.tracking.tracker`: one training run's tracker (``start_tracking``,
  :class:`~dynpath.tracking.tracker.Tracker`: lifecycle, logging, the model and its registration);
- :mod:`~dynpath.tracking.protocol`: what a tracker is (``RunTracker``) and the disabled one
  (``NullTracker``);
- :mod:`~dynpath.tracking.mlflow_run`: the run's experiment and its creation or resumption;
- :mod:`~dynpath.tracking.provenance`: code version, git state, data digests;
- :mod:`~dynpath.tracking.resilience`: the circuit breaker every MLflow call of a run goes through;
- :mod:`~dynpath.tracking.mlflow_env`: tracking/registry URIs, names, HTTP timeouts;
- :mod:`~dynpath.tracking.params`: param flattening and secret redaction;
- :mod:`~dynpath.tracking.models` and :mod:`~dynpath.tracking.pyfunc_model`: the pyfunc model;
- :mod:`~dynpath.tracking.registry`: registration and champion/challenger promotion.

Submodules are imported explicitly: this package imports nothing, so that importing one of them
(the Localizer needs only ``mlflow_env``) never drags in the tracker and its model logging, and
importing it does not import mlflow or torch (the CLI stays fast).
"""
