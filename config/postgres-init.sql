-- Run by the PostgreSQL image when its data volume is first created (docker-stack.yml):
-- the Prefect server keeps its state in a database of its own, next to AutoFlow's run history.
-- An existing volume does not run it: create the database once by hand,
--   docker exec -it $(docker ps -qf name=autoflow_autoflow_postgres) createdb -U autoflow prefect
CREATE DATABASE prefect OWNER autoflow;
