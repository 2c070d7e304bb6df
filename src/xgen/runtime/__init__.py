"""The runtime: what turns xgen's library into runs.

The Hydra app and every command line (:mod:`xgen.runtime.cli`), the training job
(:mod:`xgen.runtime.train`), checks of a composed config before any work (:mod:`xgen.runtime.validate`),
run-directory writes (:mod:`xgen.runtime.rundir`), resume (:mod:`xgen.runtime.resume`), signals
(:mod:`xgen.runtime.signals`), speed options (:mod:`xgen.runtime.speed`), ``xgen report``
(:mod:`xgen.runtime.report`) and the human evaluation study (:mod:`xgen.runtime.human_eval`).

The runtime uses only the library's public API; the library (every other package of ``xgen``) never
imports the runtime or Hydra (``.importlinter``, checked by ``tests/core/test_architecture.py``).
"""
