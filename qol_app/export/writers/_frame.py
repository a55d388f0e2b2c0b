"""A built dataset as a pandas DataFrame for the Stata and SPSS writers (shared conversions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from qol_app.export.schema import Dataset

if TYPE_CHECKING:
    import pandas as pd


def text_column(values: pa.ChunkedArray) -> pd.Series:
    """Text as an object column of Python strings, missing as "" (Stata and SPSS have no missing
    text); equal texts share one object, so the column costs a pointer per row."""
    import pandas as pd

    encoded = values.combine_chunks().dictionary_encode()
    words = [*encoded.dictionary.to_pylist(), ""]
    indices = encoded.indices.fill_null(len(words) - 1).to_numpy(zero_copy_only=False)
    return pd.Series(pd.array(words, dtype=object)[indices] if len(words) else [], dtype=object)


def number_column(values: pa.ChunkedArray) -> pd.Series:
    """Numbers (integers, floats, booleans) as float64 with NaN for missing."""
    import pandas as pd

    return pd.Series(values.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype="float64")


def empty_frame(dataset: Dataset) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(index=pd.RangeIndex(dataset.num_rows))
