"""One module per source. Each has NAME (output <out>/NAME.jsonl), HUB_ID and SPLIT, `rows(local, cfg)`
yielding the source's raw rows, and `convert(row)` turning one row into a record (raw image value(s)
under "image"; dreamprm.data.SourceWriter saves them). `convert` raises dreamprm.data.Skip for a row
that cannot become a record."""
