-- Run once by the postgres image on an empty volume (/docker-entrypoint-initdb.d): the basic-auth
-- app of MLflow keeps its users in a database of its own (its migrations would clash with the
-- tracking store's in one database).
CREATE DATABASE mlflow_auth;
