# test_ctl.py: the ts2021ctl admin command line against SQLite and the private MariaDB:
# every command, --json parsed, Apache-config discovery, and errors that change nothing.
import json
import os
import re
import sqlite3
import subprocess
import time

import pytest

from conftest import TOP, MYSQL_PARAMS, mysql_exec, mysql_reset

CTL = os.path.join(TOP, "ts2021ctl")
DBNAME = "ts2021_b"
MKEY = "mkey:" + "ab" * 32


@pytest.fixture(scope="module", autouse=True)
def built():
    subprocess.run(["make", "-s", "ts2021ctl"], cwd=TOP, check=True)


class Ctl:
    """One database and the ts2021ctl arguments that reach it."""

    def __init__(self, db, tmp_path):
        self.db = db
        self.tmp = tmp_path
        if db == "sqlite":
            self.driver, self.params = "sqlite3", str(tmp_path / "ts2021.db")
        else:
            mysql_reset(DBNAME)
            self.driver = "mysql"
            self.params = re.sub(r"dbname=\S+", f"dbname={DBNAME}", MYSQL_PARAMS)
        self.dbargs = ["--db-driver", self.driver, "--db-params", self.params]

    def run(self, *args, code=0, dbargs=True):
        r = subprocess.run([CTL] + (self.dbargs if dbargs else []) + list(args),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == code, f"{args}: rc {r.returncode}\n{r.stdout}\n{r.stderr}"
        if code:
            assert r.stderr.startswith("ts2021ctl: ") or "usage:" in r.stderr, r.stderr
        return r

    def json(self, *args):
        return json.loads(self.run(*args, "--json").stdout)

    def sql(self, stmt):
        if self.db == "sqlite":
            with sqlite3.connect(self.params) as c:
                rows = c.execute(stmt).fetchall()
            return [[None if v is None else str(v) for v in r] for r in rows]
        return [[None if v == "NULL" else v for v in r] for r in mysql_exec(stmt, DBNAME)]

    def generation(self):
        return int(self.sql("SELECT generation FROM ts_state")[0][0])

    def fails(self, *args, code=1, match=None):
        """Runs a command that must fail and must not write anything."""
        before = self.generation()
        r = self.run(*args, code=code)
        if match:
            assert re.search(match, r.stderr), r.stderr
        assert self.generation() == before
        return r

    def pending(self, auth_id, node_key, hostname, mkey=MKEY, expires_in=600):
        now = int(time.time() * 1e6)
        self.sql(f"INSERT INTO registration_requests (auth_id, machine_key, node_key, hostinfo, "
                 f"ephemeral, created_at, expires_at, state) VALUES ('{auth_id}', '{mkey}', "
                 f"'{node_key}', '{{\"Hostname\":\"{hostname}\",\"OS\":\"linux\"}}', 0, {now}, "
                 f"{now + expires_in * 1000000}, 'pending')")


def nodekey(n):
    return "nodekey:" + f"{n:064x}"


def auth_id(n):
    return "tsreg-" + f"{n:032x}"


@pytest.fixture
def ctl(db, tmp_path):
    c = Ctl(db, tmp_path)
    c.run("users", "list")          # creates the schema
    return c


def table(stdout):
    """A printed table as a list of dicts keyed by the heading."""
    lines = stdout.rstrip("\n").split("\n")
    heads = list(re.finditer(r"\S+(?: \S+)*", lines[0]))
    out = []
    for line in lines[1:]:
        row = {}
        for i, h in enumerate(heads):
            end = heads[i + 1].start() if i + 1 < len(heads) else None
            row[h.group(0)] = line[h.start():end].strip()
        out.append(row)
    return out


def test_help_and_usage(tmp_path):
    r = subprocess.run([CTL, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "preauthkeys create" in r.stdout and "--apache-config" in r.stdout
    for group, verbs in {"users": ["create", "list", "rename", "delete"],
                         "preauthkeys": ["create", "list", "expire"],
                         "nodes": ["list", "show", "expire", "rename", "delete", "register",
                                   "reject"]}.items():
        r = subprocess.run([CTL, group, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and all(f"{group} {v}" in r.stdout for v in verbs)
        for v in verbs:
            r = subprocess.run([CTL, group, v, "--help"], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            assert r.stdout.startswith(f"usage: ts2021ctl {group} {v}")
    for args in ([], ["users"], ["users", "frob"], ["bogus"], ["users", "list", "--frob"],
                 ["users", "list", "--user"], ["users", "list", "--json=yes"]):
        r = subprocess.run([CTL] + args, capture_output=True, text=True)
        assert r.returncode == 2, args
        assert r.stderr and not r.stdout
    # a database is required, and only one way of naming it
    r = subprocess.run([CTL, "users", "list"], capture_output=True, text=True)
    assert r.returncode == 2 and "no database" in r.stderr
    r = subprocess.run([CTL, "--apache-config", "/x", "--db-driver", "sqlite3", "users", "list"],
                       capture_output=True, text=True)
    assert r.returncode == 2


def test_users(ctl):
    u = ctl.json("users", "create", "alice", "--email", "alice@example.net",
                 "--display-name", "Alice A.")
    assert u["name"] == "alice" and u["email"] == "alice@example.net" and u["id"] > 0
    assert ctl.run("users", "create", "bob").stdout.startswith("user 'bob' created")
    users = ctl.json("users", "list")
    assert [x["name"] for x in users] == ["alice", "bob"]
    assert users[0]["display_name"] == "Alice A." and users[1]["email"] is None
    rows = table(ctl.run("users", "list").stdout)
    assert rows[0]["NAME"] == "alice" and rows[0]["DISPLAY NAME"] == "Alice A."
    assert ctl.json("users", "rename", "bob", "robert")["name"] == "robert"
    ctl.fails("users", "create", "alice", match="already exists")
    ctl.fails("users", "rename", "nobody", "x", match="no user 'nobody'")
    ctl.fails("users", "rename", "alice", "robert", match="already exists")
    ctl.fails("users", "create", "123", code=2, match="number")
    ctl.fails("users", "create", "a", "b", code=2, match="usage")
    ctl.fails("users", "create", "x", "--reusable", code=2, match="no option --reusable")
    ctl.fails("users", "delete", "999", match="no user '999'")
    d = ctl.json("users", "delete", str(users[1]["id"]))
    assert d == {"deleted": users[1]["id"], "name": "robert", "nodes_deleted": 0}
    assert [x["name"] for x in ctl.json("users", "list")] == ["alice"]


def test_preauthkeys(ctl):
    ctl.run("users", "create", "alice")
    k = ctl.json("preauthkeys", "create", "--user", "alice", "--reusable", "--ephemeral",
                 "--expiration", "2h", "--tags", "tag:web,tag:ci", "--description", "ci runners")
    assert re.fullmatch(r"tskey-auth-[a-z0-9]{12}-[0-9a-f]{64}", k["key"])
    assert k["key"].split("-")[2] == k["prefix"]
    assert k["reusable"] and k["ephemeral"] and not k["used"] and k["status"] == "valid"
    assert k["tags"] == ["tag:web", "tag:ci"] and k["user"] == "alice"
    assert k["description"] == "ci runners"
    # only a hash is stored
    secret = k["key"].rsplit("-", 1)[1]
    assert not [r for r in ctl.sql("SELECT prefix, hash FROM pre_auth_keys") if secret in r[1]]
    r = ctl.run("preauthkeys", "create", "--tags", "tag:only", "--expiration", "0")
    assert re.fullmatch(r"tskey-auth-\S+\n", r.stdout) and "shown only this once" in r.stderr
    keys = ctl.json("preauthkeys", "list")
    assert len(keys) == 2 and "key" not in keys[0]
    assert keys[1]["user"] is None and keys[1]["expiration"] is None
    assert [x["id"] for x in ctl.json("preauthkeys", "list", "--user", "alice")] == [k["id"]]
    rows = table(ctl.run("preauthkeys", "list").stdout)
    assert rows[0]["PREFIX"] == k["prefix"] and rows[0]["TAGS"] == "tag:web,tag:ci"
    assert rows[1]["EXPIRATION"] == "never" and rows[1]["USER"] == "-"
    assert ctl.json("preauthkeys", "expire", k["prefix"])["status"] == "expired"
    assert ctl.json("preauthkeys", "expire", str(keys[1]["id"]))["status"] == "expired"
    assert ctl.json("preauthkeys", "expire", k["key"])["status"] == "expired"   # full text too
    ctl.fails("preauthkeys", "create", code=2, match="--user, --tags")
    ctl.fails("preauthkeys", "create", "--user", "alice", "--tags", "web", code=2,
              match="not a tag")
    ctl.fails("preauthkeys", "create", "--user", "alice", "--expiration", "soon", code=2,
              match="not a duration")
    ctl.fails("preauthkeys", "create", "--user", "nobody", match="no user 'nobody'")
    ctl.fails("preauthkeys", "expire", "nosuchprefix", match="no pre-auth key")
    ctl.fails("preauthkeys", "expire", code=2, match="usage")


def test_nodes(ctl):
    ctl.run("users", "create", "alice")
    ctl.run("users", "create", "bob")
    ctl.pending(auth_id(1), nodekey(1), "Client C")
    ctl.pending(auth_id(2), nodekey(2), "client-c", mkey="mkey:" + "cd" * 32)
    n = ctl.json("nodes", "register", auth_id(1), "--user", "alice")
    assert n["name"] == "client-c" and n["hostname"] == "Client C" and n["user"] == "alice"
    assert n["ipv4"] == "100.64.0.1" and n["ipv6"] == "fd7a:115c:a1e0::1"
    assert n["fqdn"] == "client-c.tailnet.internal." and n["expiry"] is None
    assert n["machine_key"] == MKEY and n["node_key"] == nodekey(1)
    assert n["register_method"] == "cli" and not n["expired"]
    # tailnet settings from flags
    r = ctl.run("--ipv4-prefix", "100.96.0.0/12", "--ipv6-prefix", "none", "--base-domain",
                "ts.example", "--node-expiry", "90d", "nodes", "register", auth_id(2),
                "--user", "bob")
    assert re.match(r"node \d+ 'client-c-1' registered for user 'bob' \(100\.96\.0\.1 \)",
                    r.stdout)
    row = ctl.sql(f"SELECT ipv6, expiry FROM nodes WHERE node_key = '{nodekey(2)}'")[0]
    assert row[0] is None and int(row[1]) > (time.time() + 89 * 86400) * 1e6
    assert ctl.sql(f"SELECT state FROM registration_requests WHERE auth_id = '{auth_id(1)}'") \
        == [["approved"]]
    nodes = ctl.json("nodes", "list")
    assert [x["name"] for x in nodes] == ["client-c", "client-c-1"]
    assert [x["name"] for x in ctl.json("nodes", "list", "--user", "bob")] == ["client-c-1"]
    rows = table(ctl.run("nodes", "list").stdout)
    assert rows[0]["NAME"] == "client-c" and rows[0]["USER"] == "alice"
    assert rows[0]["EXPIRY"] == "never" and rows[0]["LAST SEEN"] == "never"
    show = ctl.json("nodes", "show", "client-c")
    assert show["hostinfo"] == {"Hostname": "Client C", "OS": "linux"} and show["routes"] == []
    assert "node_key" in ctl.run("nodes", "show", str(n["id"])).stdout
    assert ctl.json("nodes", "rename", "client-c", "laptop")["name"] == "laptop"
    assert ctl.json("nodes", "expire", "laptop")["expired"] is True
    assert "already expired" in ctl.run("nodes", "expire", "laptop").stdout
    ctl.fails("nodes", "rename", "laptop", "Bad_Name", code=2, match="invalid name")
    ctl.fails("nodes", "rename", "laptop", "client-c-1", match="taken")
    ctl.fails("nodes", "show", "nothing", match="no node 'nothing'")
    ctl.fails("nodes", "register", auth_id(1), "--user", "alice", match="already approved")
    ctl.fails("nodes", "register", auth_id(9), "--user", "alice", match="no registration")
    ctl.fails("nodes", "register", "nodekey:abc", "--user", "alice", code=2,
              match="not a registration id")
    ctl.fails("nodes", "register", auth_id(1), code=2, match="--user")
    ctl.pending(auth_id(3), nodekey(3), "x")
    ctl.fails("nodes", "register", auth_id(3), "--user", "nobody", match="no user")
    ctl.fails("--ipv4-prefix", "10.0.0.0/8", "nodes", "register", auth_id(3), "--user",
              "alice", code=2, match="not inside 100.64.0.0/10")
    ctl.fails("--ip-allocation", "best", "nodes", "list", code=2)
    assert ctl.json("nodes", "reject", auth_id(3), "--reason", "who are you") == \
        {"rejected": auth_id(3)}
    assert ctl.sql(f"SELECT state, error FROM registration_requests WHERE auth_id = "
                   f"'{auth_id(3)}'") == [["rejected", "who are you"]]
    ctl.fails("nodes", "reject", auth_id(3), match="already rejected")
    # a user with nodes is deleted only with --force
    ctl.fails("users", "delete", "bob", match="--force")
    assert ctl.json("users", "delete", "bob", "--force")["nodes_deleted"] == 1
    assert ctl.json("nodes", "delete", "laptop")["name"] == "laptop"
    assert ctl.json("nodes", "list") == []
    ctl.fails("nodes", "delete", "laptop", match="no node")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_apache_config(ctl, tmp_path):
    quoted = f'"{ctl.params}"'
    other = tmp_path / "other.db"
    root = tmp_path / "apache"
    write(root / "conf.d" / "db.conf",
          f"Define DRV {ctl.driver}\nDBDriver ${{DRV}}\nDBDParams {quoted}\n")
    write(root / "sites" / "a.conf",
          "<VirtualHost *:443>\n  ServerName a.example:443\n  TS2021 On\n"
          "  TS2021BaseDomain a.ts\n  TS2021IPv4Prefix \\\n    100.80.0.0/16\n"
          "  TS2021IPv6Prefix none\n</VirtualHost>\n")
    main = write(root / "apache2.conf",
                 "# test\nServerRoot " + str(root) + "\nInclude conf.d/*.conf\n"
                 "IncludeOptional nothing/*.conf\nIncludeOptional sites/\n")
    ctl.run("users", "create", "alice")
    ctl.pending(auth_id(1), nodekey(1), "web")
    n = json.loads(ctl.run("--apache-config", main, "nodes", "register", auth_id(1), "--user",
                           "alice", "--json", dbargs=False).stdout)
    assert n["ipv4"] == "100.80.0.1" and n["ipv6"] is None and n["fqdn"] == "web.a.ts."
    # a second TS2021 host on another database: --vhost chooses
    write(root / "sites" / "b.conf",
          f"<VirtualHost *:443>\n  ServerName b.example\n  ServerAlias b2.example\n"
          f"  TS2021 On\n  DBDriver sqlite3\n  DBDParams {other}\n</VirtualHost>\n")
    r = ctl.run("--apache-config", main, "users", "list", code=2, dbargs=False)
    assert "--vhost" in r.stderr and "a.example" in r.stderr and "b.example" in r.stderr
    names = [u["name"] for u in json.loads(ctl.run("--apache-config", main, "--vhost",
                                                   "a.example", "users", "list", "--json",
                                                   dbargs=False).stdout)]
    assert names == ["alice"]
    assert json.loads(ctl.run("--apache-config", main, "--vhost", "b2.example", "users", "list",
                              "--json", dbargs=False).stdout) == []
    assert os.path.exists(other)
    ctl.run("--apache-config", main, "--vhost", "c.example", "users", "list", code=1,
            dbargs=False)
    bad = write(root / "bad.conf", "Include missing.conf\n")
    r = ctl.run("--apache-config", bad, "users", "list", code=1, dbargs=False)
    assert "missing.conf" in r.stderr
    r = ctl.run("--apache-config", str(tmp_path / "none.conf"), "users", "list", code=1,
                dbargs=False)
    assert "cannot read" in r.stderr
    nodb = write(root / "nodb.conf", "ServerName x\n")
    assert "no DBDriver" in ctl.run("--apache-config", nodb, "users", "list", code=1,
                                    dbargs=False).stderr


def test_database_errors(ctl, tmp_path):
    r = subprocess.run([CTL, "--db-driver", "sqlite3", "--db-params",
                        str(tmp_path / "no" / "such" / "dir.db"), "users", "list"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "cannot open" in r.stderr
    r = subprocess.run([CTL, "--db-driver", "oracle", "--db-params", "x", "users", "list"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "oracle" in r.stderr
    if ctl.db == "mysql":
        params = re.sub(r"pass=\S+", "pass=wrongpassword42", ctl.params)
        r = subprocess.run([CTL, "--db-driver", "mysql", "--db-params", params, "users", "list"],
                           capture_output=True, text=True)
        assert r.returncode == 1 and "cannot open" in r.stderr
        assert "wrongpassword42" not in r.stderr
