"""The human evaluation study behind ``xgen human-eval`` (:mod:`xgen.runtime.cli.human_eval`): the images a
run contributes (:mod:`.images`), the SQLite store of answers (:mod:`.store`) and the local web page
(:mod:`.server`)."""
