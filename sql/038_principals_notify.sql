-- 038: a change to what a token's principal is made of is announced, so that the daemons'
-- token caches (lib/api/authcache.h) forget it.
--
-- Every request used to look its token up (the "auth" statement: the token, and the region of
-- its scope from sites, couriers or labs): ~0.05 ms of PostgreSQL and a round trip per request,
-- a query per single scan. The daemons now keep the principals of the tokens they have seen.
-- A revoked token must stop working at once, and a site moved to another township must move
-- its tokens' region, on every daemon: any statement on tokens, sites, couriers or labs
-- NOTIFYs tl_principals at commit (one notification per transaction: PostgreSQL folds equal
-- ones), each daemon LISTENs on a connection of its own and forgets every cached principal.
-- These tables change when an admin acts, not per event.
CREATE FUNCTION tl_notify_principals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('tl_principals', '');
  RETURN NULL;
END $$;

CREATE TRIGGER tokens_principals AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tokens
  FOR EACH STATEMENT EXECUTE FUNCTION tl_notify_principals();
CREATE TRIGGER sites_principals AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sites
  FOR EACH STATEMENT EXECUTE FUNCTION tl_notify_principals();
CREATE TRIGGER couriers_principals AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON couriers
  FOR EACH STATEMENT EXECUTE FUNCTION tl_notify_principals();
CREATE TRIGGER labs_principals AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON labs
  FOR EACH STATEMENT EXECUTE FUNCTION tl_notify_principals();
