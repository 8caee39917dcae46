-- Run once by the SETUP of examples/pg_demo, inside the fixture VM.
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
INSERT INTO items (name) VALUES ('seeded');
