-- 027: the turnaround percentiles of a stats row in PL/pgSQL, so their plan is made once per
-- session instead of once per row.
--
-- Every stats row the fold writes gets its stored answer from a row trigger (sql/016), and the
-- answer's p50 and p90 come from tl_hist_p50_p90 (sql/013). That was a SQL function with
-- window aggregates, called in a FROM clause inside tl_stats_object: PostgreSQL cannot inline
-- it there, and a SQL function's plan lives only as long as the query that called it, so it
-- was planned again for every row. Measured at 1,000 single scans/s: the fold took 122 ms per
-- run (every 5 s), 80 ms of it in the answer trigger and 63 ms in this function, 0.14 ms per
-- call for histograms of at most 54 minutes (docs/PERFORMANCE.md, sixth update). The fold's
-- CPU is one of the bursts behind a single scan's p99.
--
-- The same nearest-rank percentiles, by the same rule: the smallest minute whose running
-- count, in ascending minutes, reaches ceil(0.5 × total), and likewise for 0.9; NULLs for an
-- empty histogram. tests/db/schema_test.sql holds it to a table of cases.
CREATE OR REPLACE FUNCTION tl_hist_p50_p90(h jsonb) RETURNS int[] LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  minutes int[];
  counts int[];
  total bigint := 0;
  cum bigint := 0;
  p50 int;
  p90 int;
BEGIN
  SELECT array_agg(e.k::int ORDER BY e.k::int), array_agg(e.v::int ORDER BY e.k::int)
    INTO minutes, counts
  FROM jsonb_each_text(h) e(k, v);
  IF minutes IS NULL THEN
    RETURN ARRAY[NULL, NULL]::int[];
  END IF;
  FOR i IN 1 .. cardinality(counts) LOOP
    total := total + counts[i];
  END LOOP;
  FOR i IN 1 .. cardinality(minutes) LOOP
    cum := cum + counts[i];
    IF p50 IS NULL AND cum >= ceil(0.5 * total) THEN p50 := minutes[i]; END IF;
    IF p90 IS NULL AND cum >= ceil(0.9 * total) THEN p90 := minutes[i]; END IF;
    EXIT WHEN p50 IS NOT NULL AND p90 IS NOT NULL;
  END LOOP;
  RETURN ARRAY[p50, p90];
END $$;
