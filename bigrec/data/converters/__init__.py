"""Out-of-core converters from the standard data sets' raw layouts to bigrec Parquet (``bigrec data <name>``).

See ``docs/data.md``. Shared pieces: :mod:`.textio` (streaming text, bad lines),
:mod:`.keys` (raw values -> 64-bit keys), :mod:`.vocab` (vocabularies counted out
of core), :mod:`.options` (per-feature vocab / dense options), :mod:`.output`
(bounded Parquet files, stats, atomic output), :mod:`.tabular` (click logs),
:mod:`.sequences` (per-user histories built by user partition).
"""
