"""Analysis-ready exports: one pipeline from the database to every format.

    source  (reads the database: rows, no decisions)
      -> asof    (the as-of rules, the one place that decides what was known at the as-of time)
      -> build   (the one builder: every dataset as an Arrow table, built once per export)
      -> writers (csv, xlsx, parquet, xpt, dta, sav: each writes a built dataset)
       + sdtm / define / fhir / programs (standard outputs from the same built data)
      -> run     (one export: files, manifest, reproducible zip, audit, progress)

Only ``source`` touches the database and only ``run`` is called by the web page, the CLI and the
background job runner.
"""
