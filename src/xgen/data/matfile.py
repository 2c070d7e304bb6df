"""Reader for MATLAB .mat files (v4/v5, as SVHN and Frey Faces ship them) with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from xgen.errors import DataError


def read_mat(path: str | Path, variables: Sequence[str]) -> dict[str, np.ndarray]:
    """Read `variables` from the .mat file at `path`; a corrupt, truncated or unexpected file raises
    DataError naming the file, what was expected and the fix."""
    import scipy.io

    path = Path(path)
    try:
        data = scipy.io.loadmat(path, variable_names=list(variables))
    except NotImplementedError as e:  # MATLAB v7.3 (HDF5) files
        raise DataError(f"{path}: a MATLAB v7.3 (HDF5) file, which this reader does not take ({e}). "
                        "Use the original v5 file from the dataset's site.") from e
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError, OSError, ... on bad bytes
        raise DataError(f"{path}: not a readable MATLAB .mat file ({type(e).__name__}: {e}). "
                        "The file is corrupt or truncated; delete it and download it again.") from e
    absent = [v for v in variables if v not in data]
    if absent:
        found = sorted(k for k in data if not k.startswith("__"))
        raise DataError(f"{path}: variables {absent} are missing (found {found or 'none'}). This is "
                        "not the expected dataset file; delete it and download it again.")
    return {v: np.asarray(data[v]) for v in variables}
