-- 034: no planner statistics for columns that no statement filters, joins or sorts by.
--
-- tl_analyze_grown (sql/017) analyzes a write-path table each time it about doubles, so a new
-- deployment's first day analyzes events, persons and chain_links many times while it takes
-- its events. Each ANALYZE sorts its 30,000 sampled values of every column for their most
-- common values and histogram, including the event bodies (jsonb, compared field by field),
-- the digests, the persons' ciphertexts and masked forms, and the chain's links: values that
-- are random or unique and that the planner never looks up. Without them, on a benchmark
-- cluster (millions of rows, each ANALYZE twice): events 640-690 → 490-530 ms, persons
-- 500-650 → 300-360 ms, chain_links 565 → 297 ms (docs/PERFORMANCE.md, ninth update).
--
-- Every statement reaches these rows by other columns (ids, HMACs, codes, times); the GIN
-- index on body -> 'tubes' keeps its own statistics. A target of 0 leaves the planner its
-- defaults for these columns, which it only uses for row widths.
ALTER TABLE events ALTER COLUMN body SET STATISTICS 0,
  ALTER COLUMN digest SET STATISTICS 0;
ALTER TABLE persons ALTER COLUMN id_enc SET STATISTICS 0,
  ALTER COLUMN id_masked SET STATISTICS 0,
  ALTER COLUMN name_enc SET STATISTICS 0,
  ALTER COLUMN name_masked SET STATISTICS 0,
  ALTER COLUMN phone_enc SET STATISTICS 0,
  ALTER COLUMN phone_masked SET STATISTICS 0;
ALTER TABLE chain_links ALTER COLUMN link SET STATISTICS 0;
