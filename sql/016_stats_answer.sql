-- 016: each stats row carries its answer, made when the row changes, not at every read.
--
-- A county's stats answer is its row and its children's rows (41 here) turned into DESIGN §5's
-- objects. Measured at 5 M samples on a quiet machine, the SQL took ~7 ms of the ~8 ms a read
-- costs: 2.3 ms for the turnaround percentiles of 41 histograms and the rest for building the
-- nested objects, again for every read although the rows change at most once a second (at a
-- fold). Now a row trigger stores tl_stats_object(row) in `answer` whenever a row is written
-- (by the fold, the re-count or the rebuild), and a one-round answer only aggregates the stored
-- objects; answers over several rounds (a day with more than one round) are summed and built
-- as before. The fold pays once per changed row per second instead.

ALTER TABLE stats ADD COLUMN answer jsonb;

CREATE FUNCTION tl_stats_answer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.answer := tl_stats_object(NEW);
  RETURN NEW;
END $$;
CREATE TRIGGER stats_answer BEFORE INSERT OR UPDATE ON stats
  FOR EACH ROW EXECUTE FUNCTION tl_stats_answer();

UPDATE stats SET answer = NULL;  -- the trigger fills it in

-- As sql/013, with the stored answers for a single round (and the new column in the row
-- built for several rounds).
CREATE OR REPLACE FUNCTION tl_stats_folded(p_code text, p_rounds text[]) RETURNS jsonb LANGUAGE sql STABLE AS $$
  WITH me AS (
    SELECT r.code, r.name, r.level FROM regions r WHERE r.code = p_code
    UNION ALL SELECT s.code, s.name, 'site' FROM sites s WHERE s.code = p_code
  ), kids AS (
    SELECT r.code, r.name, r.level FROM regions r WHERE r.parent = p_code
    UNION ALL SELECT s.code, s.name, 'site' FROM sites s WHERE s.township = p_code
  ), mine AS (
    SELECT s.* FROM stats s WHERE s.round = ANY (p_rounds) AND s.code = p_code
    UNION ALL
    SELECT s.* FROM stats s WHERE s.round = ANY (p_rounds) AND s.parent = p_code
  ), summed AS (
    SELECT m.code, m::stats AS st FROM mine m WHERE cardinality(p_rounds) = 1
    UNION ALL
    SELECT m.code,
      ROW(NULL, m.code, NULL, NULL, sum(persons_sampled)::int, sum(persons_returned)::int,
          sum(tubes_open)::int, sum(tubes_sealed)::int, sum(tubes_in_transit)::int,
          sum(tubes_received)::int, sum(tubes_resulted)::int, sum(tubes_rejected)::int,
          sum(results_negative)::int, sum(results_positive)::int, sum(results_invalid)::int,
          sum(overdue)::int, sum(anomalies_open)::int, sum(followups_open)::int,
          tl_hist_sum(tat), tl_hist_sum(hourly), NULL, NULL)::stats
    FROM mine m WHERE cardinality(p_rounds) > 1
    GROUP BY m.code
  )
  SELECT jsonb_build_object(
    'region', jsonb_build_object('code', me.code, 'name', me.name, 'level', me.level),
    'totals', coalesce((SELECT (su.st).answer FROM summed su WHERE su.code = me.code),
                       tl_stats_object((SELECT st FROM summed WHERE code = me.code))),
    'children', (SELECT coalesce(jsonb_agg(jsonb_build_object('code', k.code, 'name', k.name, 'level', k.level)
                                           || coalesce((su.st).answer, tl_stats_object(su.st)) ORDER BY k.code), '[]')
                 FROM kids k LEFT JOIN summed su ON su.code = k.code))
  FROM me
$$;
