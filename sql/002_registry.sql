-- 002: the registry (DESIGN §2, §5): GB/T 2260 regions, sampling sites, labs, couriers and
-- screening rounds. Codes are checked here as in lib/domain (second line of defence). A
-- region's subtree is every code that starts with its code, so scope checks are prefix tests.
CREATE TABLE regions (
  code    text PRIMARY KEY CHECK (code ~ '^([0-9]{2}|[0-9]{4}|[0-9]{6}|[0-9]{9})$'),
  name    text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  parent  text REFERENCES regions (code),
  level   text NOT NULL GENERATED ALWAYS AS (
            CASE length(code) WHEN 2 THEN 'province' WHEN 4 THEN 'city'
                              WHEN 6 THEN 'county' ELSE 'township' END) STORED,
  -- the parent is the next level up and a prefix of the code (230126101 → 230126 → 2301 → 23)
  CHECK (parent IS NULL OR (left(code, length(parent)) = parent AND
         length(parent) = CASE length(code) WHEN 9 THEN 6 ELSE length(code) - 2 END))
);
CREATE INDEX regions_parent ON regions (parent);

CREATE TABLE sites (
  code      text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9-]{1,32}$'),
  name      text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  township  text NOT NULL REFERENCES regions (code) CHECK (length(township) = 9)
);
CREATE INDEX sites_township ON sites (township);

CREATE TABLE labs (
  code    text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9-]{1,32}$'),
  name    text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  county  text NOT NULL REFERENCES regions (code) CHECK (length(county) = 6)
);

CREATE TABLE couriers (
  code    text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9-]{1,32}$'),
  name    text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  county  text NOT NULL REFERENCES regions (code) CHECK (length(county) = 6)
);

CREATE TABLE rounds (
  code        text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9-]{1,32}$'),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  region      text NOT NULL REFERENCES regions (code),
  day         date NOT NULL,
  pool_size   int  NOT NULL CHECK (pool_size IN (1, 5, 8, 10, 20)),
  created_at  timestamptz NOT NULL DEFAULT now(),
  closed_at   timestamptz
);
CREATE INDEX rounds_region_day ON rounds (region, day);
