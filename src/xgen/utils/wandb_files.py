"""Read the records of an offline W&B run file (``run-<id>.wandb``) without syncing it.

The file is a 7-byte header (``:W&B``, a 2-byte magic, a version byte) followed by records in
LevelDB's log format: 32 KiB blocks of chunks, each chunk a 7-byte header (CRC32, 2-byte
little-endian length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4) and its payload; a record is the
concatenation of its chunks and holds one serialized ``wandb_internal_pb2.Record``.
Used by the tests to check what an offline run logged, and handy to inspect runs on a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

HEADER = 7
BLOCK = 32 * 1024
CHUNK_HEADER = 7


def _payloads(data: bytes) -> Iterator[bytes]:
    if data[:4] != b":W&B":
        raise ValueError("not a W&B run file (missing ':W&B' header)")
    pos, parts = HEADER, []
    while pos + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < CHUNK_HEADER:  # block trailer padding
            pos += left_in_block
            continue
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + CHUNK_HEADER:pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == 0 and length == 0:  # zero padding
            continue
        parts.append(chunk)
        if kind in (1, 4):  # FULL or LAST ends a record
            yield b"".join(parts)
            parts = []


def read_run(path: str | Path) -> dict[str, Any]:
    """Summarise an offline run file: run id, group, job type, config, and metric history."""
    from wandb.proto import wandb_internal_pb2 as pb

    out: dict[str, Any] = {"id": None, "group": None, "job_type": None, "config": {}, "history": []}
    for payload in _payloads(Path(path).read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.update(id=rec.run.run_id, group=rec.run.run_group, job_type=rec.run.job_type)
            out["config"].update({u.key: u.value_json for u in rec.run.config.update})
        elif kind == "config":
            out["config"].update({u.key: u.value_json for u in rec.config.update})
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): i.value_json for i in rec.history.item})
    return out
