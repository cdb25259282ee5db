-- 021: the write path plans each statement once per session, not once per group.
--
-- tl_load and tl_write run some thirty statements per group commit, most of them over arrays
-- passed as parameters. PostgreSQL's default (plan_cache_mode = auto) plans such a statement
-- afresh for each call while a custom plan looks cheaper than the generic one, and for array
-- parameters it mostly does: planning the anomaly query of tl_refresh (eight UNION arms), the
-- follow-ups and the person statuses costs about as much as running them for a group of 15
-- events. Small groups (single-event requests) paid it per group.
-- The first round measured the opposite (generic plans made for empty tables, finding 3 of
-- docs/PERFORMANCE.md); since sql/017 and sql/019 the statistics follow the data and the
-- person probe has one right index whatever they say, and the pool's DISCARD PLANS (every
-- 30 s) and every ANALYZE make the sessions plan again. Measured with the short benchmark
-- (docs/PERFORMANCE.md, "Second update of 2026-12-06"): single events over 64 connections
-- 1,075 -> 1,509/s, single-scan p99 at 1,000/s 1,263 -> 195 ms, batched ingest unchanged.
-- A function's SET holds for everything it runs, triggers included.

ALTER FUNCTION tl_load(bigint[], uuid[], text[], text[], text[], text[], text[])
  SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION tl_write(jsonb) SET plan_cache_mode = force_generic_plan;
