# test_store_apache.py: the module brings up its schema through mod_dbd when Apache starts,
# on SQLite and on MariaDB, with several children racing on a fresh database.
import os
import sqlite3
import time

from conftest import mysql_exec, MYSQL_PARAMS

TABLES = {"ts_state", "ts_schema_version", "users", "nodes", "node_routes", "pre_auth_keys",
          "api_keys", "policies", "registration_requests", "change_log", "ip_cursors"}
SCHEMA_VERSION = 2      # TS_STORE_SCHEMA_VERSION


def tables_and_version(server):
    if server.db == "sqlite":
        path = os.path.join(server.state, "db", "ts2021.sqlite")
        with sqlite3.connect(path) as db:
            names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            version = db.execute("SELECT MAX(version) FROM ts_schema_version").fetchone()[0] \
                if "ts_schema_version" in names else None
        return names, version
    dbname = [kv.split("=")[1] for kv in server.dbparams.split() if kv.startswith("dbname=")][0]
    names = {r[0] for r in mysql_exec("SHOW TABLES", dbname)}
    version = None
    if "ts_schema_version" in names:
        version = int(mysql_exec("SELECT MAX(version) FROM ts_schema_version", dbname)[0][0])
    return names, version


def wait_for_schema(server, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        names, version = tables_and_version(server)
        if TABLES <= names and version:
            return names, version
        time.sleep(0.2)
    raise AssertionError(f"schema not created: {tables_and_version(server)}\n{server.errlog()}")


def test_schema_created_at_start_by_racing_children(server_factory):
    # Four children with a database pool each start at once on an empty database.
    s = server_factory(extra_args=["--servers", "4", "--threads", "4"])
    names, version = wait_for_schema(s)
    assert version == SCHEMA_VERSION
    assert "database schema not usable" not in s.errlog()
    assert "AH00636" not in s.errlog()   # mod_dbd child init failure
    s.stop()


def test_schema_survives_restart_and_keeps_data(server_factory):
    s = server_factory()
    wait_for_schema(s)
    # A row written between runs must still be there after the schema check runs again.
    if s.db == "sqlite":
        path = os.path.join(s.state, "db", "ts2021.sqlite")
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO users (name, created_at, updated_at, version) "
                       "VALUES ('alice', 1, 1, 1)")
    else:
        mysql_exec("INSERT INTO users (name, created_at, updated_at, version) "
                   "VALUES ('alice', 1, 1, 1)", "ts2021")
    s.stop()
    s.start()
    names, version = wait_for_schema(s)
    assert version == SCHEMA_VERSION
    if s.db == "sqlite":
        with sqlite3.connect(os.path.join(s.state, "db", "ts2021.sqlite")) as db:
            assert db.execute("SELECT name FROM users").fetchall() == [("alice",)]
    else:
        assert mysql_exec("SELECT name FROM users", "ts2021") == [["alice"]]
    s.stop()


def test_unreachable_database_is_reported_and_key_still_served(server_factory, db, tmp_path):
    if db == "sqlite":
        # A database path in a directory that does not exist.
        s = server_factory(start=False)
        s.dbparams = "/nonexistent-dir/ts2021.sqlite"
    else:
        s = server_factory(start=False)
        s.dbparams = MYSQL_PARAMS.replace("pass=", "pass=wrong")
    assert s.start()
    st, _, body = s.request("GET", "/key?v=145")
    assert st == 200
    deadline = time.time() + 10
    while "TS2021: no database connection" not in s.errlog() and time.time() < deadline:
        time.sleep(0.2)
    assert "TS2021: no database connection" in s.errlog()
    s.stop()


INFO_CONF = """    <Location "/ts2021-info">
        SetHandler ts2021-info
    </Location>
"""


def set_generation(server, g):
    sql = f"UPDATE ts_state SET generation = {g} WHERE id = 1"
    if server.db == "sqlite":
        with sqlite3.connect(os.path.join(server.state, "db", "ts2021.sqlite")) as db:
            db.execute(sql)
    else:
        mysql_exec(sql, "ts2021")


def test_store_from_a_request_and_from_a_module_thread(server_factory, tmp_path):
    """A request reads through its own handle (ap_dbd_acquire); a request inside Noise is
    served on the worker pool, which opens and closes a handle (ap_dbd_open/close)."""
    import json
    from test_transport import connect
    extra = tmp_path / "info.conf"
    extra.write_text(INFO_CONF + "    TS2021TestEndpoints On\n")
    s = server_factory(extra_args=["--extra-conf", str(extra)])
    wait_for_schema(s)
    for g in (0, 42, 43):
        set_generation(s, g)
        st, headers, body = s.request("GET", "/ts2021-info")
        assert st == 200 and headers["content-type"] == "application/json"
        info = json.loads(body)
        assert info == {"driver": "sqlite3" if s.db == "sqlite" else "mysql",
                        "schemaVersion": SCHEMA_VERSION, "generation": g}
        c = connect(s)
        r = c.request("GET", "/ts2021-test/db")
        assert r.status == 200 and json.loads(bytes(r.body)) == {"generation": g}
        c.close()
    st, _, _ = s.request("POST", "/ts2021-info", body=b"x")
    assert st == 405
    s.stop()
