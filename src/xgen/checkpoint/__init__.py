"""Reading files xgen did not make: checkpoints (:mod:`.safety`: ``weights_only`` loading, digests,
allow-listed targets, finite values; :mod:`.schema`: every entry of a checkpoint checked by type, shape
and range) and run directories (:mod:`.runs`: :class:`~xgen.checkpoint.runs.RunDir`, how tools find a
run's checkpoint)."""
