-- 001: bearer tokens (DESIGN §6). Only the SHA-256 of a token is stored; the token itself is
-- shown once when it is made. Roles other than admin act inside one scope (a site, courier,
-- lab or region code); the registry tables that scopes refer to come with the custody schema.
CREATE TABLE tokens (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  hash        text NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$'),
  role        text NOT NULL CHECK (role IN ('collector', 'courier', 'lab', 'viewer', 'supervisor', 'admin')),
  scope       text CHECK (scope ~ '^[A-Za-z0-9-]{1,32}$'),
  label       text NOT NULL DEFAULT '' CHECK (length(label) <= 200),
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz,
  CHECK ((role = 'admin') = (scope IS NULL))
);
